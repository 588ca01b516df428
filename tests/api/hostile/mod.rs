//! The standing adversarial suite: each test is an attack, tried the way an attacker would,
//! through the public surface. Where the attack is about resources, the test measures them
//! (the server's peak RSS, VmHWM, or the time to an answer).

mod backtraces;
mod decoders;
mod hosts;
mod multipart;
mod mutations;
mod originals;
mod sigterm;
mod tus;

/// The peak resident set of process `pid` so far (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}
