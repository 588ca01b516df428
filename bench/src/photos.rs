//! Workload 7: small photos end to end, against libvips kept alive in a server.
//!
//! For a 640x480 and a 1600x1200 photo: satchel's jobs/s from upload to `ready` (every
//! variant and placeholder) with 8 clients uploading, against the photos/s of one
//! long-lived pyvips process per core doing the same transforms in memory (no HTTP, no
//! storage); and satchel's per-job overhead: the CPU of the server's whole process tree per
//! job minus the CPU of the transform alone on the same photo.

use super::client::Api;
use super::inputs;
use super::report::{Better, Figures, Role, Row, Status, Workload, MIB};
use super::transform::scratch;
use super::{measure, progress, pyvips, stats, Ctx};
use bytes::Bytes;
use satchel_workers::MediaKind;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time between two status polls of one upload.
const POLL: Duration = Duration::from_millis(50);
/// GETs of a ready media timed on their own, to tell the polling's share of the overhead.
const POLL_PROBES: usize = 300;

fn size_name((w, h): (u32, u32)) -> String {
    format!("{w}×{h}")
}

fn satchel_row(size: &str, clients: usize) -> String {
    format!("satchel, {size}: upload → ready ({clients} clients)")
}

fn peer_row(size: &str, processes: usize) -> String {
    format!("pyvips, {size}: {processes} persistent processes (transforms only)")
}

fn transform_row(size: &str) -> String {
    format!("satchel transform alone, {size} (in-process)")
}

fn overhead_row(size: &str) -> String {
    format!("satchel per-job overhead, {size}")
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Workload> {
    let plan = &ctx.plan;
    let mut work = Workload::new(
        "photos",
        "Photos end to end, against libvips kept alive in a server",
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = scratch(&ctx.work, "photos")?;
    let server_pid = ctx.target.server_pid();
    let mut goals = Vec::new();
    for (&(w, h), &jobs) in plan.photos_sizes.iter().zip(&plan.photos_jobs) {
        let size = size_name((w, h));
        let photo = inputs::photo(&ctx.cache, w, h, ctx.seed + 2)?;
        let body = Bytes::from(std::fs::read(&photo)?);
        work.inputs.push(format!(
            "{} ({size}, {:.0} KB, quality 90, seed {})",
            photo.display(),
            body.len() as f64 / 1e3,
            ctx.seed + 2
        ));

        // satchel, end to end.
        let pb = progress::bar(
            jobs as u64,
            format!("{size}: {} clients uploading", plan.photos_clients),
        );
        let e2e = end_to_end(&ctx.api, server_pid, &body, plan.photos_clients, jobs, &pb).await?;
        progress::finish(
            &pb,
            format!("{size}: {} uploads to ready", e2e.ready_ms.len()),
        );
        let satchel = satchel_row(&size, plan.photos_clients);
        let mut f = Figures::default();
        f.set("jobs", e2e.ready_ms.len() as f64)
            .set("errors", e2e.errors.len() as f64)
            .set(
                "jobs_per_s",
                e2e.ready_ms.len() as f64 / e2e.span_s.max(1e-9),
            );
        if let Some(s) = stats::summarize(&e2e.ready_ms) {
            f.set("ready_p50_ms", s.p50).set("ready_p99_ms", s.p99);
        }
        let cpu_per_job_ms = e2e
            .cpu_s
            .filter(|_| !e2e.ready_ms.is_empty())
            .map(|c| c * 1e3 / e2e.ready_ms.len() as f64);
        if let Some(ms) = cpu_per_job_ms {
            f.set("cpu_per_job_ms", ms);
        }
        f.set(
            "polls_per_job",
            e2e.polls as f64 / e2e.ready_ms.len().max(1) as f64,
        )
        .set("wall_s", e2e.span_s);
        if let Some(n) = e2e.processes {
            f.set("processes", n as f64);
        }
        work.rows
            .push(Row::measured(satchel.as_str(), Role::Satchel, f));
        work.samples_ms
            .insert(format!("time_to_ready {size}"), e2e.ready_ms.clone());
        if !e2e.errors.is_empty() {
            let mut distinct = e2e.errors.clone();
            distinct.sort();
            distinct.dedup();
            work.notes
                .push(format!("{size} errors: {}", distinct.join("; ")));
        }

        // The transform alone, in this process.
        let pb = progress::spinner(format!("{size}: the transform alone, in-process"));
        let (input, presets, out, runs) = (
            photo.clone(),
            ctx.presets.clone(),
            scratch(&dir, &format!("satchel-{w}x{h}"))?,
            plan.photos_transform_runs,
        );
        // The spinner's ticking thread would be billed to the transform: stopped first.
        progress::finish(&pb, format!("{size}: timing the transform alone"));
        let alone =
            tokio::task::spawn_blocking(move || transform_alone(&input, &presets, &out, runs))
                .await??;
        let transform = transform_row(&size);
        let cpu = stats::summarize(&alone.cpu_ms).expect("at least one run");
        let wall = stats::summarize(&alone.wall_ms).expect("at least one run");
        let mut f = Figures::default();
        f.set("runs", cpu.n as f64)
            .set("cpu_per_job_ms", cpu.p50)
            .set("cpu_min_ms", cpu.min)
            .set("wall_median_ms", wall.p50);
        let mut row = Row::measured(transform.as_str(), Role::Reference, f);
        row.note = Some(
            "`satchel_workers::process(Image, …)` as the job's child calls it, warm; CPU of \
             all its threads (getrusage RUSAGE_SELF)"
                .into(),
        );
        work.rows.push(row);

        // The per-job overhead: everything the server tree spends per job beyond that.
        let overhead = overhead_row(&size);
        match (cpu_per_job_ms, e2e.poll_cpu_ms) {
            (Some(e2e_ms), poll_ms) => {
                let over = e2e_ms - cpu.p50;
                let pct = 100.0 * over / cpu.p50;
                let mut f = Figures::default();
                f.set("overhead_cpu_ms", over).set("overhead_pct", pct);
                if let Some(poll_ms) = poll_ms {
                    let polling = poll_ms * e2e.polls as f64 / e2e.ready_ms.len().max(1) as f64;
                    f.set("of_which_polling_ms", polling)
                        .set("overhead_without_polling_ms", over - polling)
                        .set(
                            "overhead_without_polling_pct",
                            100.0 * (over - polling) / cpu.p50,
                        );
                }
                work.rows
                    .push(Row::measured(overhead.as_str(), Role::Satchel, f));
                if (w, h) == (1600, 1200) {
                    goals.push(format!(
                        "per-job overhead at {size}: {over:.1} ms = {pct:.0} % of the transform's \
                         CPU (goal ≤ 20 %: {})",
                        if pct <= 20.0 { "met" } else { "not met" }
                    ));
                }
            }
            (None, _) => work.rows.push(Row::unmeasured(
                overhead.as_str(),
                Role::Satchel,
                Status::NotApplicable,
                "a remote deployment: its process tree is not on this machine",
            )),
        }

        // The peer, on the same bytes, after satchel.
        let peer = peer_row(&size, cores);
        match ctx.peers.pyvips.as_ref().and_then(|p| p.path.as_ref()) {
            None => {
                let note = ctx
                    .peers
                    .pyvips
                    .as_ref()
                    .map_or("not set up".into(), |p| p.missing_note());
                work.rows.push(Row::unmeasured(
                    peer.as_str(),
                    Role::Peer,
                    Status::Missing,
                    note,
                ));
            }
            Some(python) => {
                let pb = progress::spinner(format!("{size}: pyvips, {cores} processes"));
                let (python, out, photo, seconds, preset) = (
                    python.clone(),
                    scratch(&dir, &format!("pyvips-{w}x{h}"))?,
                    photo.clone(),
                    plan.photos_peer_seconds,
                    ctx.presets.image.clone(),
                );
                let measured = tokio::task::spawn_blocking(move || {
                    pyvips::run(&python, &out, &photo, cores, seconds, &preset)
                })
                .await?;
                progress::finish(&pb, format!("{size}: pyvips timed"));
                match measured {
                    Ok(m) => {
                        let mut f = Figures::default();
                        f.set("photos", m.photos as f64)
                            .set("photos_per_s", m.photos as f64 / m.seconds.max(1e-9))
                            .set(
                                "cpu_per_photo_ms",
                                m.cpu_seconds * 1e3 / m.photos.max(1) as f64,
                            )
                            .set("wall_s", m.seconds)
                            .set("processes", m.processes as f64);
                        if m.peak_rss_bytes > 0 {
                            f.set("peak_rss_mib", m.peak_rss_bytes as f64 / MIB);
                        }
                        if m.late > 0 {
                            work.notes.push(format!(
                                "{size}: {} pyvips process(es) were not warm by the common \
                                 start and measured from later",
                                m.late
                            ));
                        }
                        work.rows.push(
                            Row::measured(peer.as_str(), Role::Peer, f)
                                .with_command(Some(m.command)),
                        );
                    }
                    Err(e) => work.rows.push(Row::unmeasured(
                        peer.as_str(),
                        Role::Peer,
                        Status::Failed,
                        format!("{e:#}"),
                    )),
                }
            }
        }
        work.compare_figures(
            "jobs_per_s",
            "photos_per_s",
            &satchel,
            &peer,
            Better::Higher,
        );
        work.compare_figures(
            "cpu_per_job_ms",
            "cpu_per_photo_ms",
            &satchel,
            &peer,
            Better::Lower,
        );
        work.compare_figures(
            "cpu_per_job_ms",
            "cpu_per_photo_ms",
            &transform,
            &peer,
            Better::Lower,
        );
        let ratio = work
            .comparisons
            .iter()
            .find(|c| c.satchel == satchel && c.metric == "jobs_per_s")
            .and_then(|c| c.ratio);
        if let Some(r) = ratio {
            goals.push(format!(
                "{size}: satchel ÷ pyvips = {r:.2}× in jobs/s against photos/s (goal ≥ 1.0×: {})",
                if r >= 1.0 { "met" } else { "not met" }
            ));
        }
    }
    work.notes.extend(goals);
    work.notes.push(
        "The peer makes the three WebP files only (thumbnail_buffer to the thumbnail and \
         preview edges, the blurred one with gaussblur at its small size); satchel's job also \
         sniffs, stores the original and every variant, computes BlurHash and ThumbHash, and \
         records the media. The bench's own client runs on the same cores as satchel, taking \
         CPU from it; the peer has no client."
            .into(),
    );
    work.method = format!(
        "For each photo in turn: {clients} clients upload it {jobs} times in all to the server \
         under test, each client uploading its next photo once the last is ready (at most one \
         waiting per client), and \
         each upload is polled every {poll} ms until `ready` with its thumbnail, preview, \
         blurred variant and both placeholders. jobs/s counts the ready ones over the time from \
         the first upload to the last ready. CPU per job is the CPU of `satchel serve` and all \
         its descendants (utime + stime + cutime + cstime from /proc/<pid>/stat over the \
         process tree, found by parent pid, so long-lived job children count as well as \
         short-lived reaped ones), sampled before the first upload and {settle} ms after the \
         last ready, divided by the jobs. The transform alone is `satchel_workers::process` \
         on the same file in the bench's own process, one warm-up then {runs} timed runs \
         (median): what a job child runs, without its start-up, its IPC or anything of the \
         server, which is what the overhead is to show; `satchel process` minus a measured \
         start-up would be the difference of two noisy figures. Per-job overhead = CPU per job \
         end to end − the transform's median CPU, in ms and in % of the latter; the part of it \
         spent answering the bench's own status polls is estimated from {probes} GETs of a \
         ready media timed the same way. Then the peer: {cores} pyvips processes (one per \
         core, VIPS_CONCURRENCY=1, libvips' operation cache off), each started and warmed up \
         before a common start, then repeating thumbnail + preview + blurred for {secs} s on \
         the same bytes; photos/s is their sum over the time from the first start to the last \
         end, CPU per photo from their getrusage.",
        clients = plan.photos_clients,
        jobs = plan.photos_jobs.map(|j| j.to_string()).join(" / "),
        poll = POLL.as_millis(),
        settle = SETTLE.as_millis(),
        runs = plan.photos_transform_runs,
        probes = POLL_PROBES,
        secs = plan.photos_peer_seconds,
    );
    Ok(work)
}

/// After the last job is ready, time for the server to finish its bookkeeping (events,
/// removing a job's directory, reaping its child) before the CPU is sampled.
const SETTLE: Duration = Duration::from_millis(300);

struct EndToEnd {
    ready_ms: Vec<f64>,
    errors: Vec<String>,
    span_s: f64,
    /// CPU seconds of the server's process tree over the uploads, when it is local.
    cpu_s: Option<f64>,
    processes: Option<usize>,
    polls: u64,
    /// Server CPU per status GET, measured after the uploads.
    poll_cpu_ms: Option<f64>,
}

async fn end_to_end(
    api: &Api,
    server_pid: Option<u32>,
    body: &Bytes,
    clients: usize,
    jobs: usize,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<EndToEnd> {
    let chat = api.new_chat("bench").await?;
    let polls = Arc::new(AtomicU64::new(0));
    let before = server_pid.and_then(measure::tree_cpu);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mine = (c..jobs).step_by(clients).count();
        let (api, chat, body, pb, polls) = (
            api.clone(),
            chat.clone(),
            body.clone(),
            pb.clone(),
            polls.clone(),
        );
        // Closed loop: each client uploads its next photo once the last one is ready, as a
        // chat client does, so that the queue holds at most one photo per client and the
        // status polls stay a few per job rather than piling up behind a backlog.
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for _ in 0..mine {
                let t = Instant::now();
                let result = match api.upload(&chat, "bench", "photo.jpg", body.clone()).await {
                    Err(e) => Err(format!("upload: {e:#}")),
                    Ok(id) => watch(&api, &id, &polls)
                        .await
                        .map(|()| (t.elapsed().as_secs_f64() * 1e3, Instant::now(), id)),
                };
                pb.inc(1);
                done.push(result);
            }
            done
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.extend(t.await?);
    }
    let last = done
        .iter()
        .filter_map(|d| d.as_ref().ok().map(|(_, at, _)| *at))
        .max()
        .unwrap_or_else(Instant::now);
    let span_s = last.duration_since(started).as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let after = server_pid.and_then(measure::tree_cpu);
    let cpu_s = before.zip(after).map(|(b, a)| a.seconds - b.seconds);
    let processes = after.map(|a| a.processes);

    // The server's CPU per status GET, on a ready media with nothing else running.
    let probe_id = done
        .iter()
        .find_map(|d| d.as_ref().ok().map(|(_, _, id)| id.clone()));
    let mut poll_cpu_ms = None;
    if let (Some(pid), Some(id)) = (server_pid, probe_id) {
        let b = measure::tree_cpu(pid);
        let mut ok = 0usize;
        for _ in 0..POLL_PROBES {
            ok += usize::from(api.status(&id).await.is_ok());
        }
        let a = measure::tree_cpu(pid);
        if let (Some(b), Some(a)) = (b, a) {
            poll_cpu_ms = Some((a.seconds - b.seconds) * 1e3 / ok.max(1) as f64);
        }
    }
    api.delete_chat(&chat).await;
    let (mut ready_ms, mut errors) = (Vec::new(), Vec::new());
    for d in done {
        match d {
            Ok((ms, _, _)) => ready_ms.push(ms),
            Err(e) => errors.push(e),
        }
    }
    Ok(EndToEnd {
        ready_ms,
        errors,
        span_s,
        cpu_s,
        processes,
        polls: polls.load(Ordering::Relaxed),
        poll_cpu_ms,
    })
}

/// Polls until the media is `ready` with every variant and placeholder of a photo.
async fn watch(api: &Api, id: &str, polls: &AtomicU64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        polls.fetch_add(1, Ordering::Relaxed);
        match api.status(id).await {
            Ok(m) if m["status"] == "ready" => {
                let missing: Vec<&str> = ["thumbnail", "preview", "blurred"]
                    .into_iter()
                    .filter(|v| m["variants"][v].is_null())
                    .chain(
                        ["blurhash", "thumbhash"]
                            .into_iter()
                            .filter(|p| !m["placeholder"][p].is_string()),
                    )
                    .collect();
                return if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("ready without {}", missing.join(", ")))
                };
            }
            Ok(m) if m["status"] == "failed" => {
                return Err(format!(
                    "job failed: {}",
                    m["error"]["code"].as_str().unwrap_or("?")
                ))
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
    Err("not ready within 600 s".into())
}

struct Alone {
    cpu_ms: Vec<f64>,
    wall_ms: Vec<f64>,
}

/// The image pipeline alone, in this process: one warm-up, then `runs` timed runs, each
/// into an empty directory. CPU is the whole process's (the pipeline works on scoped threads
/// of its own), taken while the bench does nothing else.
fn transform_alone(
    input: &Path,
    presets: &satchel_workers::Presets,
    out: &Path,
    runs: usize,
) -> anyhow::Result<Alone> {
    let mut alone = Alone {
        cpu_ms: Vec::new(),
        wall_ms: Vec::new(),
    };
    for i in 0..=runs.max(1) {
        let dir = scratch(out, &format!("run{i}"))?;
        let (cpu, t) = (measure::self_cpu_seconds(), Instant::now());
        satchel_workers::process(MediaKind::Image, input, presets, &dir, None)
            .map_err(|e| anyhow::anyhow!("the image pipeline: {e}"))?;
        let (wall, cpu) = (t.elapsed(), measure::self_cpu_seconds() - cpu);
        if i > 0 {
            alone.cpu_ms.push(cpu * 1e3);
            alone.wall_ms.push(wall.as_secs_f64() * 1e3);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(alone)
}
