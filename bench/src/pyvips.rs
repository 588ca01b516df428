//! The photos workload's peer: libvips kept alive in long-lived processes, as an image server
//! such as imgproxy keeps it, through `pyvips` with the libvips of `pyvips-binary` (8.18).
//!
//! The bench sets it up itself: a Python virtual environment (by default in the input cache,
//! so it is made once) with `python3 -m venv` and pip from PyPI. When it cannot be made (no
//! `python3`, no network) the peer is reported missing with the reason, never faked.

use super::measure;
use super::peers::{self, Peer};
use anyhow::{bail, Context};
use satchel_workers::preset::ImagePreset;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the peer's processes run; written to the scratch directory for each run.
pub const SCRIPT: &str = include_str!("pyvips_peer.py");

/// The packages pip installs: libvips 8.18 as the issue measures it.
const PACKAGES: [&str; 2] = ["pyvips>=3,<4", "pyvips-binary==8.18.*"];

const NAME: &str = "pyvips";

/// The environment's python when it imports pyvips, after making the environment if need be.
pub fn setup(venv: &Path) -> Peer {
    let python = venv.join("bin").join("python");
    if let Some(version) = version_of(&python) {
        return ready(python, version);
    }
    match make(venv, &python) {
        Ok(()) => match version_of(&python) {
            Some(version) => ready(python, version),
            None => Peer::missing(
                NAME,
                format!("{} was made but does not import pyvips", venv.display()),
            ),
        },
        Err(e) => {
            // Half an environment would be taken for a whole one next time.
            let _ = std::fs::remove_dir_all(venv);
            Peer::missing(NAME, format!("{e:#}"))
        }
    }
}

fn ready(python: PathBuf, version: String) -> Peer {
    Peer {
        name: NAME,
        path: Some(python),
        version: Some(version),
        note: None,
    }
}

fn make(venv: &Path, python: &Path) -> anyhow::Result<()> {
    let Some(python3) = peers::any_on_path("python3") else {
        bail!("python3 is not installed (it makes the pyvips virtual environment)");
    };
    let _ = std::fs::remove_dir_all(venv);
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)?;
    }
    quiet(Command::new(&python3).arg("-m").arg("venv").arg(venv))
        .context("python3 -m venv (Debian: apt-get install python3-venv)")?;
    quiet(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            // No network: fail in seconds rather than retry for minutes.
            .args(["--timeout", "20", "--retries", "1"])
            .args(PACKAGES),
    )
    .context("pip install pyvips pyvips-binary (needs PyPI)")
}

fn quiet(command: &mut Command) -> anyhow::Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", measure::show(command)))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        bail!(
            "{} failed ({}): {}",
            measure::show(command),
            out.status,
            tail[tail.len().saturating_sub(2)..].join(" | ")
        );
    }
    Ok(())
}

fn version_of(python: &Path) -> Option<String> {
    if !python.exists() {
        return None;
    }
    let out = Command::new(python)
        .args([
            "-c",
            "import pyvips; print('pyvips %s, libvips %d.%d.%d' % \
             ((pyvips.__version__,) + tuple(pyvips.version(i) for i in range(3))))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !line.is_empty()).then_some(line)
}

/// What the peer's processes did together in one measured period.
#[derive(Debug)]
pub struct Measured {
    pub processes: usize,
    pub photos: u64,
    /// From the first process's start of measuring to the last one's end.
    pub seconds: f64,
    /// CPU of the peer's processes over the measured period, summed.
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    /// Processes that were not warm by the common start (they started measuring late).
    pub late: usize,
    /// One process's command line.
    pub command: String,
}

/// Runs `processes` peer processes on `photo` side by side: each loads libvips and the
/// photo, warms up (writing its outputs under `out`), waits for a common start, then repeats
/// the job for `seconds` and reports its count. libvips runs one thread in each
/// (`VIPS_CONCURRENCY=1`): the processes, one per core, are the parallelism.
pub fn run(
    python: &Path,
    scratch: &Path,
    photo: &Path,
    processes: usize,
    seconds: f64,
    preset: &ImagePreset,
) -> anyhow::Result<Measured> {
    let script = scratch.join("pyvips_peer.py");
    std::fs::write(&script, SCRIPT)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    // Time enough to import pyvips and warm up on two busy cores.
    let start_at = now + 3.0;
    let command = |i: usize| {
        let mut c = Command::new(python);
        c.arg(&script)
            .arg(photo)
            .arg(scratch.join(format!("p{i}-")))
            .arg(format!("{start_at:.3}"))
            .arg(seconds.to_string())
            .args(
                [
                    preset.thumbnail.max_edge,
                    preset.thumbnail.quality.into(),
                    preset.preview.max_edge,
                    preset.preview.quality.into(),
                    preset.blurred.max_edge,
                    preset.blurred.quality.into(),
                ]
                .map(|v| v.to_string()),
            )
            .arg(preset.blurred.blur_sigma.to_string())
            .env("VIPS_CONCURRENCY", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let shown = format!("VIPS_CONCURRENCY=1 {}", measure::show(&command(0)));
    let mut children = Vec::new();
    for i in 0..processes {
        let child = command(i)
            .spawn()
            .with_context(|| format!("cannot start {shown}"))?;
        let pid = child.id();
        children.push((pid, std::thread::spawn(move || child.wait_with_output())));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds + 120.0);
    while children.iter().any(|(_, t)| !t.is_finished()) {
        if Instant::now() > deadline {
            for (pid, t) in &children {
                if !t.is_finished() {
                    // SAFETY: a child this function started and has not reaped.
                    unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut reports = Vec::new();
    for (_, t) in children {
        let out = t
            .join()
            .map_err(|_| anyhow::anyhow!("a peer process's waiter panicked"))??;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            bail!("{shown} failed ({}): {}", out.status, tail.join(" | "));
        }
        let line = stdout.lines().last().unwrap_or_default();
        let report: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("the peer's report {line:?}"))?;
        reports.push(report);
    }
    let num = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    let began = reports
        .iter()
        .map(|r| num(r, "began"))
        .fold(f64::INFINITY, f64::min);
    let ended = reports.iter().map(|r| num(r, "ended")).fold(0.0, f64::max);
    Ok(Measured {
        processes,
        photos: reports.iter().map(|r| num(r, "photos") as u64).sum(),
        seconds: ended - began,
        cpu_seconds: reports.iter().map(|r| num(r, "cpu_s")).sum(),
        peak_rss_bytes: reports
            .iter()
            .map(|r| num(r, "peak_rss_kib") as u64 * 1024)
            .max()
            .unwrap_or(0),
        late: reports.iter().filter(|r| r["late"] == true).count(),
        command: shown,
    })
}
