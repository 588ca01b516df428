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
    let pid = pid.unwrap_or_else(std::process::id);
    Some(status_kib(pid, "VmHWM:")? * 1024)
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

/// Peak memory of a server and of the `satchel transform` children it starts for each job,
/// sampled every 10 ms while a workload runs: the server's own VmHWM leaves the children out.
pub struct TreeSampler {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<TreePeaks>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct TreePeaks {
    /// Distinct child processes seen.
    pub children: usize,
    /// The largest VmHWM of any one child.
    pub child_peak_bytes: u64,
    /// The largest sum of the server's and its children's resident memory at one instant.
    pub total_peak_bytes: u64,
}

impl TreeSampler {
    pub fn start(pid: u32) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            let mut peaks = TreePeaks::default();
            let mut seen = std::collections::HashSet::new();
            while !flag.load(Ordering::Relaxed) {
                let mut total = status_kib(pid, "VmRSS:").unwrap_or(0) * 1024;
                for child in children_of(pid) {
                    seen.insert(child);
                    total += status_kib(child, "VmRSS:").unwrap_or(0) * 1024;
                    let hwm = status_kib(child, "VmHWM:").unwrap_or(0) * 1024;
                    peaks.child_peak_bytes = peaks.child_peak_bytes.max(hwm);
                }
                peaks.total_peak_bytes = peaks.total_peak_bytes.max(total);
                std::thread::sleep(Duration::from_millis(10));
            }
            peaks.children = seen.len();
            peaks
        });
        TreeSampler { done, thread }
    }

    pub fn stop(self) -> TreePeaks {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
