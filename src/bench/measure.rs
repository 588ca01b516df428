//! Timing one child process from spawn to exit, with its peak memory from the kernel.
//!
//! satchel's own transforms run as `satchel process` children too, so that satchel and the
//! peers are measured the same way: wall time including start-up, and the peak memory of the
//! process itself, not of the bench.
//!
//! Peak memory is the child's `VmHWM`, sampled every few milliseconds while it runs, not
//! `ru_maxrss` from wait4: std spawns with vfork, and Linux folds the high-water mark of the
//! parent's address space, borrowed until exec, into the child's `ru_maxrss`, so every small
//! child would report the bench's own size.

use anyhow::{bail, Context};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Run {
    pub wall: Duration,
    pub peak_rss_bytes: u64,
    pub stdout: String,
}

pub fn run_once(command: &mut Command) -> anyhow::Result<Run> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", show(command)))?;
    // Both pipes are drained on threads of their own so that a chatty child never blocks.
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped")));
    let stderr = read(Box::new(child.stderr.take().expect("piped")));
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                // Gone once reaped: the last value read stands.
                match peak_rss_of(Some(pid)) {
                    Some(p) => peak = peak.max(p),
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let status = child.wait();
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let peak_rss_bytes = sampler.join().unwrap_or(0);
    let status = status.with_context(|| format!("waiting for {}", show(command)))?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        bail!("{} failed ({status}): {tail}", show(command));
    }
    Ok(Run {
        wall,
        peak_rss_bytes,
        stdout,
    })
}

/// The command line as a person would type it.
pub fn show(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains([' ', '(', ')', '[', ']']) {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// This process's own peak resident memory (`VmHWM`), or that of `pid`.
pub fn peak_rss_of(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".into(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Starts a new peak for `pid` (writing 5 to clear_refs resets VmHWM), so that each workload
/// reports its own peak rather than the largest since the process started.
pub fn reset_peak_rss(pid: Option<u32>) -> bool {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/clear_refs"),
        None => "/proc/self/clear_refs".into(),
    };
    std::fs::write(path, "5").is_ok()
}
