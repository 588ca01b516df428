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

/// CPU seconds a process tree has used so far: `pid`'s own and its reaped children's
/// (`utime + stime + cutime + cstime` of `/proc/<pid>/stat`), plus the same of every live
/// descendant, found by walking `/proc/*/stat` by parent pid. Live descendants (a server's
/// long-lived job children) are in their own figures until reaped, and then in their
/// parent's `cutime`/`cstime`, so at any instant each CPU second is counted once, and the
/// difference of two samples is what the tree used between them, short-lived children
/// included.
#[derive(Debug, Clone, Copy)]
pub struct TreeCpu {
    pub seconds: f64,
    /// Processes of the tree alive at the sample, `pid` included.
    pub processes: usize,
}

pub fn tree_cpu(pid: u32) -> Option<TreeCpu> {
    let ticks = clock_ticks()?;
    let mut all: Vec<(u32, u32, u64)> = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((ppid, t)) = stat_times(p) {
            all.push((p, ppid, t));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            all.iter()
                .filter(|(_, ppid, _)| *ppid == parent)
                .map(|(p, _, _)| *p),
        );
        i += 1;
    }
    let own = all.iter().find(|(p, _, _)| *p == pid)?;
    let total: u64 = own.2
        + all
            .iter()
            .filter(|(p, _, _)| *p != pid && tree.contains(p))
            .map(|(_, _, t)| t)
            .sum::<u64>();
    Some(TreeCpu {
        seconds: total as f64 / ticks,
        processes: tree.len(),
    })
}

/// Parent pid and `utime + stime + cutime + cstime` in clock ticks. The fields are counted
/// after the command name's closing parenthesis, since the name may hold spaces.
fn stat_times(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    // After the name: state (field 3 of stat(5)) is 0, ppid 1, utime 11 .. cstime 14.
    let ppid = fields.get(1)?.parse().ok()?;
    let times: u64 = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<i64>().unwrap_or(0).max(0) as u64)
        .sum();
    Some((ppid, times))
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf only reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (t > 0).then_some(t as f64)
}

/// CPU seconds (user + system) this whole process has used so far, every thread included.
pub fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_counts_its_children_live_and_reaped() {
        let me = std::process::id();
        let before = tree_cpu(me).unwrap();
        // A child that burns CPU and is reaped: its time lands in our cutime.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let after = tree_cpu(me).unwrap();
        assert!(after.seconds > before.seconds, "{before:?} {after:?}");
        assert!(after.processes >= 1);
    }
}
