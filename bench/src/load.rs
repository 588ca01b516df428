//! Workload 5: N concurrent clients uploading a realistic mix, as a chat's users would.

use super::client::Outcome;
use super::inputs::{self, Rng};
use super::report::{Figures, Role, Row, Workload, MIB};
use super::{measure, progress, server, stats, Ctx};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Item {
    Photo,
    Voice,
    Video,
    File,
}

impl Item {
    const ALL: [Item; 4] = [Item::Photo, Item::Voice, Item::Video, Item::File];

    fn name(self) -> &'static str {
        match self {
            Item::Photo => "photo",
            Item::Voice => "voice note",
            Item::Video => "short video",
            Item::File => "file",
        }
    }
}

/// Out of every 20 uploads: 10 photos, 5 voice notes, 2 short videos, 3 files, in an order
/// shuffled by the seed.
fn mix(seed: u64, count: usize) -> Vec<Item> {
    let mut cycle: Vec<Item> = [
        (Item::Photo, 10),
        (Item::Voice, 5),
        (Item::Video, 2),
        (Item::File, 3),
    ]
    .into_iter()
    .flat_map(|(item, n)| std::iter::repeat_n(item, n))
    .collect();
    let mut rng = Rng::new(seed.wrapping_add(5));
    for i in (1..cycle.len()).rev() {
        cycle.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    (0..count).map(|i| cycle[i % cycle.len()]).collect()
}

struct Done {
    item: Item,
    upload_ms: Option<f64>,
    /// Upload start to `ready`; a file is ready when its upload is answered.
    ready_ms: Option<f64>,
    ready_at: Option<Instant>,
    error: Option<String>,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Workload> {
    let plan = &ctx.plan;
    let mut work = Workload::new("load", "End-to-end load: concurrent clients, realistic mix");
    let pb = progress::spinner("generating the mix's inputs (cached)");
    let (pw, ph) = plan.mix_photo;
    let photo = inputs::photo(&ctx.cache, pw, ph, ctx.seed + 1)?;
    let voice = match ctx.peers.ffmpeg.path {
        Some(_) => inputs::voice_note(
            &ctx.cache,
            plan.mix_voice_seconds,
            ctx.seed + 1,
            &ctx.peers.ffmpeg,
        )?,
        None => inputs::voice_wav(&ctx.cache, plan.mix_voice_seconds, ctx.seed + 1)?,
    };
    let video = inputs::video(&ctx.cache, plan.mix_video, &ctx.peers.ffmpeg);
    let file = inputs::blob(&ctx.cache, plan.mix_file_bytes, ctx.seed + 1)?;
    progress::finish(&pb, "the mix's inputs");
    let mut bodies: Vec<(Item, &'static str, Bytes)> = vec![
        (
            Item::Photo,
            "photo.jpg",
            Bytes::from(std::fs::read(&photo)?),
        ),
        (
            Item::Voice,
            if voice.extension().is_some_and(|e| e == "m4a") {
                "voice.m4a"
            } else {
                "voice.wav"
            },
            Bytes::from(std::fs::read(&voice)?),
        ),
        (
            Item::File,
            "attachment.bin",
            Bytes::from(std::fs::read(&file)?),
        ),
    ];
    match &video {
        Ok(path) => bodies.push((Item::Video, "clip.mp4", Bytes::from(std::fs::read(path)?))),
        Err(e) => work
            .notes
            .push(format!("short videos left out of the mix: {e:#}")),
    }
    for (item, _, body) in &bodies {
        work.inputs.push(format!(
            "{}: {:.2} MB",
            item.name(),
            body.len() as f64 / 1e6
        ));
    }
    let bodies = Arc::new(bodies);

    let total = plan.load_clients * plan.load_uploads_per_client;
    let items: Vec<Item> = mix(ctx.seed, total)
        .into_iter()
        .filter(|i| bodies.iter().any(|(b, _, _)| b == i))
        .collect();
    let chat = ctx.api.new_chat("bench").await?;
    let server_pid = ctx.target.server_pid();
    measure::reset_peak_rss(server_pid);
    measure::reset_peak_rss(None);
    let tree = server_pid.map(measure::TreeSampler::start);

    let pb = progress::bar(
        items.len() as u64,
        format!("{} clients uploading", plan.load_clients),
    );
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..plan.load_clients {
        let mine: Vec<Item> = items
            .iter()
            .skip(c)
            .step_by(plan.load_clients)
            .copied()
            .collect();
        let (api, chat, bodies, pb) = (ctx.api.clone(), chat.clone(), bodies.clone(), pb.clone());
        clients.push(tokio::spawn(async move {
            let mut watchers = Vec::new();
            for item in mine {
                let (_, filename, body) =
                    bodies.iter().find(|(i, _, _)| *i == item).expect("a body");
                let t = Instant::now();
                let uploaded = api.upload(&chat, "bench", filename, body.clone()).await;
                let upload_ms = t.elapsed().as_secs_f64() * 1e3;
                let api = api.clone();
                let pb = pb.clone();
                // Watching runs beside the next uploads: a client does not wait for processing.
                watchers.push(tokio::spawn(async move {
                    let done = match uploaded {
                        Err(e) => Done {
                            item,
                            upload_ms: None,
                            ready_ms: None,
                            ready_at: None,
                            error: Some(format!("upload: {e:#}")),
                        },
                        Ok(_) if item == Item::File => Done {
                            item,
                            upload_ms: Some(upload_ms),
                            ready_ms: Some(upload_ms),
                            ready_at: Some(Instant::now()),
                            error: None,
                        },
                        Ok(id) => match api
                            .wait_done(&id, Duration::from_millis(50), Duration::from_secs(600))
                            .await
                        {
                            Outcome::Ready => Done {
                                item,
                                upload_ms: Some(upload_ms),
                                ready_ms: Some(t.elapsed().as_secs_f64() * 1e3),
                                ready_at: Some(Instant::now()),
                                error: None,
                            },
                            Outcome::Failed(code) => Done {
                                item,
                                upload_ms: Some(upload_ms),
                                ready_ms: None,
                                ready_at: None,
                                error: Some(format!("job failed: {code}")),
                            },
                            Outcome::TimedOut => Done {
                                item,
                                upload_ms: Some(upload_ms),
                                ready_ms: None,
                                ready_at: None,
                                error: Some("not ready within 600 s".into()),
                            },
                        },
                    };
                    pb.inc(1);
                    done
                }));
            }
            let mut done = Vec::new();
            for w in watchers {
                if let Ok(d) = w.await {
                    done.push(d);
                }
            }
            done
        }));
    }
    let mut done = Vec::new();
    for c in clients {
        done.extend(c.await?);
    }
    let wall = started.elapsed().as_secs_f64();
    progress::finish(
        &pb,
        format!("{} uploads by {} clients", done.len(), plan.load_clients),
    );
    let server_peak = server::server_peak(&ctx.target);
    let tree = tree.map(measure::TreeSampler::stop);
    let bench_peak = measure::peak_rss_of(None);
    ctx.api.delete_chat(&chat).await;

    let pick = |want: Option<Item>, f: fn(&Done) -> Option<f64>| -> Vec<f64> {
        done.iter()
            .filter(|d| want.is_none_or(|w| d.item == w))
            .filter_map(f)
            .collect()
    };
    let errors: Vec<&str> = done.iter().filter_map(|d| d.error.as_deref()).collect();
    let processed_ready: Vec<Instant> = done
        .iter()
        .filter(|d| d.item != Item::File)
        .filter_map(|d| d.ready_at)
        .collect();
    let last = processed_ready
        .iter()
        .max()
        .map_or(wall, |t| t.duration_since(started).as_secs_f64());

    let mut all = Figures::default();
    all.set("uploads", done.len() as f64)
        .set("errors", errors.len() as f64);
    latency_figures(
        &mut all,
        &pick(None, |d| d.upload_ms),
        &pick(None, |d| d.ready_ms),
        true,
    );
    all.set("uploads_per_s", done.len() as f64 / wall)
        .set("jobs_per_s", processed_ready.len() as f64 / last.max(1e-9))
        .set("wall_s", wall);
    work.rows.push(Row::measured(
        format!("all uploads ({} clients)", plan.load_clients),
        Role::Satchel,
        all,
    ));
    for item in Item::ALL {
        let uploads = pick(Some(item), |d| d.upload_ms);
        if done.iter().all(|d| d.item != item) {
            continue;
        }
        let mut f = Figures::default();
        f.set(
            "uploads",
            done.iter().filter(|d| d.item == item).count() as f64,
        )
        .set(
            "errors",
            done.iter()
                .filter(|d| d.item == item && d.error.is_some())
                .count() as f64,
        );
        latency_figures(&mut f, &uploads, &pick(Some(item), |d| d.ready_ms), false);
        work.rows.push(Row::measured(item.name(), Role::Satchel, f));
    }
    let peak_row = |name: &str, peak: Option<u64>, why: &str| match peak {
        Some(b) => {
            let mut f = Figures::default();
            f.set("peak_rss_mib", b as f64 / MIB);
            Row::measured(name, Role::Process, f)
        }
        None => Row::unmeasured(
            name,
            Role::Process,
            super::report::Status::NotApplicable,
            why,
        ),
    };
    work.rows.push(peak_row(
        "process: satchel serve",
        server_peak,
        "a remote deployment: measure its memory on its own hosts",
    ));
    // Jobs run in `satchel transform` children of the server (where the build does so).
    if let Some(tree) = tree.filter(|t| t.children > 0) {
        let mut child = peak_row(
            "process: satchel transform (largest of the job children)",
            Some(tree.child_peak_bytes),
            "",
        );
        child.figures.set("processes", tree.children as f64);
        work.rows.push(child);
        work.rows.push(peak_row(
            "processes: satchel serve + its children (largest sum at one instant)",
            Some(tree.total_peak_bytes),
            "",
        ));
    }
    work.rows.push(peak_row(
        "process: satchel bench (all clients)",
        bench_peak,
        "no /proc on this system",
    ));
    if !errors.is_empty() {
        let mut distinct: Vec<&str> = errors.clone();
        distinct.sort();
        distinct.dedup();
        work.notes.push(format!("errors: {}", distinct.join("; ")));
    }
    work.samples_ms
        .insert("upload_latency".into(), pick(None, |d| d.upload_ms));
    work.samples_ms
        .insert("time_to_ready".into(), pick(None, |d| d.ready_ms));
    work.notes.push(
        "No peer: no off-the-shelf tool serves this API. The transform workloads above compare \
         the work each job does with the tools ops would otherwise script."
            .into(),
    );
    work.method = format!(
        "{} clients upload {} files in all, each client one after another without waiting for \
         processing; each processed upload is polled every 50 ms until `ready`. Time to ready \
         runs from the upload's first byte. jobs/s counts processed uploads that became ready, \
         over the time to the last of them. Peak memory is each process's VmHWM over this \
         workload only; job children are sampled every 10 ms.",
        plan.load_clients,
        items.len()
    );
    Ok(work)
}

fn latency_figures(f: &mut Figures, upload_ms: &[f64], ready_ms: &[f64], p95: bool) {
    if let Some(s) = stats::summarize(upload_ms) {
        f.set("upload_p50_ms", s.p50);
        if p95 {
            f.set("upload_p95_ms", s.p95);
        }
        f.set("upload_p99_ms", s.p99);
    }
    if let Some(s) = stats::summarize(ready_ms) {
        f.set("ready_p50_ms", s.p50).set("ready_p99_ms", s.p99);
    }
}
