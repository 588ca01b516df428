//! What the three transform workloads share: timing satchel's `satchel process` and the peer
//! commands the same way, and timing the same input through the HTTP API to `ready`.

use super::client::{Api, Outcome};
use super::measure::{self, Run};
use super::peers::Peer;
use super::report::{Better, Figures, Role, Row, Status, Workload, MIB};
use super::stats;
use super::{progress, Ctx};
use anyhow::bail;
use bytes::Bytes;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One thing to time: one or more commands run one after another (a peer that needs two
/// invocations to make what satchel makes in one job is billed for both).
pub struct Job {
    pub subject: String,
    pub role: Role,
    pub commands: Vec<Command>,
    /// Set when the tool is not installed: the row is reported as missing.
    pub missing: Option<String>,
}

impl Job {
    pub fn satchel(
        subject: &str,
        exe: &Path,
        input: &Path,
        out: &Path,
        preset: Option<&Path>,
    ) -> Self {
        let mut c = Command::new(exe);
        c.arg("process").arg(input).arg("--out").arg(out);
        if let Some(p) = preset {
            c.arg("--preset").arg(p);
        }
        c.env("SATCHEL_LOG", "warn");
        Job {
            subject: subject.into(),
            role: Role::Satchel,
            commands: vec![c],
            missing: None,
        }
    }

    /// A peer job; `args` lists the arguments of each invocation of `peer`.
    pub fn peer(subject: &str, peer: &Peer, args: Vec<Vec<String>>) -> Self {
        match &peer.path {
            Some(bin) => Job {
                subject: subject.into(),
                role: Role::Peer,
                commands: args
                    .into_iter()
                    .map(|a| {
                        let mut c = Command::new(bin);
                        c.args(a);
                        c
                    })
                    .collect(),
                missing: None,
            },
            None => Job {
                subject: subject.into(),
                role: Role::Peer,
                commands: Vec::new(),
                missing: Some(peer.missing_note()),
            },
        }
    }
}

/// The timed runs of one job, or why there are none.
pub struct Timed {
    pub job: Job,
    pub runs: Vec<Run>,
    pub error: Option<String>,
}

/// Runs every job `runs` times, interleaved (a, b, c, a, b, c, ...) so that drift in the
/// machine's load is spread over all of them rather than landing on one.
pub async fn time_jobs(jobs: Vec<Job>, runs: usize, pb: &ProgressBar) -> Vec<Timed> {
    let mut timed: Vec<Timed> = jobs
        .into_iter()
        .map(|job| Timed {
            job,
            runs: Vec::new(),
            error: None,
        })
        .collect();
    let live = timed.iter().filter(|t| t.job.missing.is_none()).count();
    pb.set_length((live * runs) as u64);
    for _ in 0..runs {
        for t in timed.iter_mut() {
            if t.job.missing.is_some() || t.error.is_some() {
                continue;
            }
            pb.set_message(t.job.subject.clone());
            let mut commands = std::mem::take(&mut t.job.commands);
            let result = tokio::task::spawn_blocking(move || {
                let mut total = Run {
                    wall: Duration::ZERO,
                    peak_rss_bytes: 0,
                    stdout: String::new(),
                };
                for c in commands.iter_mut() {
                    let run = measure::run_once(c)?;
                    total.wall += run.wall;
                    total.peak_rss_bytes = total.peak_rss_bytes.max(run.peak_rss_bytes);
                    total.stdout.push_str(&run.stdout);
                }
                anyhow::Ok((commands, total))
            })
            .await;
            match result {
                Ok(Ok((commands, run))) => {
                    t.job.commands = commands;
                    t.runs.push(run);
                }
                Ok(Err(e)) => t.error = Some(format!("{e:#}")),
                Err(e) => t.error = Some(e.to_string()),
            }
            pb.inc(1);
        }
    }
    timed
}

impl Timed {
    pub fn command_line(&self) -> Option<String> {
        if self.job.commands.is_empty() {
            return None;
        }
        Some(
            self.job
                .commands
                .iter()
                .map(measure::show)
                .collect::<Vec<_>>()
                .join(" && "),
        )
    }

    pub fn row(&self) -> Row {
        let command = self.command_line();
        if let Some(note) = &self.job.missing {
            return Row::unmeasured(&self.job.subject, self.job.role, Status::Missing, note);
        }
        if let Some(e) = &self.error {
            return Row::unmeasured(&self.job.subject, self.job.role, Status::Failed, e)
                .with_command(command);
        }
        let walls: Vec<f64> = self.runs.iter().map(|r| r.wall.as_secs_f64()).collect();
        let peak = self
            .runs
            .iter()
            .map(|r| r.peak_rss_bytes)
            .max()
            .unwrap_or(0);
        let mut f = wall_figures(&walls);
        // Zero when the child exited before its memory could be sampled.
        if peak > 0 {
            f.set("peak_rss_mib", peak as f64 / MIB);
        }
        Row::measured(&self.job.subject, self.job.role, f).with_command(command)
    }

    /// A row for one of satchel's named steps (`step transcode 1234.5 ms` in its output).
    pub fn step_row(&self, step: &str, subject: &str) -> Option<Row> {
        let seconds: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| step_ms(&r.stdout, step))
            .map(|ms| ms / 1e3)
            .collect();
        if seconds.is_empty() {
            return None;
        }
        let mut row = Row::measured(subject, Role::Satchel, wall_figures(&seconds));
        row.note = Some(format!("the `{step}` step as `satchel process` reports it"));
        Some(row)
    }
}

pub fn wall_figures(seconds: &[f64]) -> Figures {
    let mut f = Figures::default();
    if let Some(s) = stats::summarize(seconds) {
        f.set("runs", s.n as f64)
            .set("wall_median_s", s.p50)
            .set("wall_min_s", s.min)
            .set("wall_max_s", s.max);
    }
    f
}

fn step_ms(stdout: &str, step: &str) -> Option<f64> {
    stdout.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("step"), Some(name), Some(ms)) if name == step => ms.parse().ok(),
            _ => None,
        }
    })
}

/// Times the same input through the HTTP API (upload to `ready`) and adds its row, or a note
/// saying why it failed.
pub async fn add_api_row(ctx: &Ctx, work: &mut Workload, input: &Path, filename: &str, what: &str) {
    let label = format!("{what} through the HTTP API");
    let pb = progress::spinner(label.as_str());
    let measured = via_api(
        &ctx.api,
        ctx.target.server_pid(),
        input,
        filename,
        ctx.plan.api_runs,
        &pb,
    )
    .await;
    match measured {
        Ok(row) => work.rows.push(row),
        Err(e) => work.notes.push(format!("through the API: failed: {e:#}")),
    }
    progress::finish(&pb, label);
}

/// Uploads `input` `runs` times through the API and times each from the first byte sent
/// to `ready` seen by polling every 25 ms (so up to 25 ms of each figure is polling).
pub async fn via_api(
    api: &Api,
    server_pid: Option<u32>,
    input: &Path,
    filename: &str,
    runs: usize,
    pb: &ProgressBar,
) -> anyhow::Result<Row> {
    let body = Bytes::from(tokio::fs::read(input).await?);
    let chat = api.new_chat("bench").await?;
    measure::reset_peak_rss(server_pid);
    let tree = server_pid.map(measure::TreeSampler::start);
    let result = async {
        let mut seconds = Vec::new();
        for _ in 0..runs {
            pb.set_message(format!("{filename} through the API"));
            let started = Instant::now();
            let id = api.upload(&chat, "bench", filename, body.clone()).await?;
            match api
                .wait_done(&id, Duration::from_millis(25), Duration::from_secs(900))
                .await
            {
                Outcome::Ready => seconds.push(started.elapsed().as_secs_f64()),
                Outcome::Failed(code) => bail!("the job failed: {code}"),
                Outcome::TimedOut => bail!("not ready within 900 s"),
            }
        }
        Ok(seconds)
    }
    .await;
    let server_peak = server_pid.and_then(|pid| measure::peak_rss_of(Some(pid)));
    let tree = tree.map(measure::TreeSampler::stop);
    api.delete_chat(&chat).await;
    let mut figures = wall_figures(&result?);
    // The server's own peak while it did these jobs, and its job child's (embedded runs).
    if let Some(peak) = server_peak {
        figures.set("peak_rss_mib", peak as f64 / MIB);
    }
    if let Some(tree) = tree.filter(|t| t.children > 0) {
        figures.set("transform_peak_rss_mib", tree.child_peak_bytes as f64 / MIB);
    }
    let mut row = Row::measured(
        "satchel via HTTP API (upload → ready)",
        Role::Satchel,
        figures,
    );
    row.note = Some(
        "timed by the client: upload, queue, job, storing every variant; peak memory is \
         `satchel serve`'s own, transform peak its job child's"
            .into(),
    );
    Ok(row)
}

/// Adds a wall-time and a peak-memory comparison of `satchel` with each of `peers`.
pub fn compare_all(w: &mut Workload, satchel: &str, peers: &[&str]) {
    for peer in peers {
        w.compare("wall_median_s", satchel, peer, Better::Lower);
    }
    for peer in peers {
        w.compare("peak_rss_mib", satchel, peer, Better::Lower);
    }
}

/// A scratch directory for one job's outputs, emptied first.
pub fn scratch(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
