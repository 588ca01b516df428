//! Issue 15: the service's `satchel` binary does not link FFmpeg (about 170 shared libraries,
//! ~40 ms of CPU at every start); `satchel-transform`, installed beside it, does, and every job
//! runs there. What could go wrong with the split: the service loading FFmpeg after all (the
//! start-up cost back, silently), `satchel process` failing on what needs FFmpeg instead of
//! handing it over, and a worker without its transform binary taking jobs only to fail them.

use crate::helpers::TOKEN;
use crate::processes::{program_of, settled, start_node, transform_hosts, upload_many};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Whether process `pid` has FFmpeg's codec library mapped.
fn loads_ffmpeg(pid: u32) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("maps of {pid}: {e}"));
    maps.contains("/libavcodec.so")
}

/// The page faults of `pid`'s children that it has reaped (`cminflt`): a host's grow with every
/// job child it forks and reaps, by hundreds for the smallest transform.
fn reaped_faults(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // Field 11 of proc(5), counted from the state, field 3.
    fields[11 - 3].parse().unwrap()
}

/// The faults reaped by each of `hosts` since `before`.
fn grown(hosts: &[u32], before: &[u64]) -> Vec<u64> {
    hosts
        .iter()
        .zip(before)
        .map(|(&h, &b)| reaped_faults(h) - b)
        .collect()
}

/// A still runs in a host of `satchel` itself (no FFmpeg mapped: forking it is cheaper), audio
/// and what a still's child finds animated in one of `satchel-transform`, and the service
/// never maps FFmpeg.
#[tokio::test]
async fn the_service_never_loads_ffmpeg_and_only_its_ffmpeg_hosts_do() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SATCHEL_WORKERS", "2"), ("SATCHEL_API_TOKENS", TOKEN)];
    let node = start_node(&["serve"], dir.path(), env).await;
    let pid = node.child.id();
    // The pool warms, of each kind, one host per job it may run at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (stills, av): (Vec<u32>, Vec<u32>) = loop {
        let hosts = transform_hosts(pid);
        let (av, stills): (Vec<u32>, Vec<u32>) = hosts.iter().partition(|&&h| loads_ffmpeg(h));
        if stills.len() == 2 && av.len() == 2 {
            break (stills, av);
        }
        assert!(Instant::now() < deadline, "hosts not up: {hosts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!loads_ffmpeg(pid), "`satchel serve` has FFmpeg mapped");
    for host in &stills {
        assert!(
            program_of(*host).ends_with("/satchel"),
            "{}",
            program_of(*host)
        );
    }
    for host in &av {
        let program = program_of(*host);
        assert!(program.ends_with("/satchel-transform"), "{program}");
    }
    let faults = |hosts: &[u32]| hosts.iter().map(|&h| reaped_faults(h)).collect::<Vec<_>>();

    // A photo: a stills host's child, and no FFmpeg host's.
    let (stills_before, av_before) = (faults(&stills), faults(&av));
    let id = upload_many(&node, 1, "photo.jpg", "jpg").await.remove(0);
    assert_eq!(settled(&node, &id).await["status"], "ready");
    let (s, a) = (grown(&stills, &stills_before), grown(&av, &av_before));
    assert!(
        s.iter().sum::<u64>() > 100,
        "no stills host ran the photo: {s:?}"
    );
    assert_eq!(a, [0, 0], "an FFmpeg host ran a child for a photo");

    // An animated GIF: its still child finds the animation, an FFmpeg host's child encodes it.
    let (stills_before, av_before) = (faults(&stills), faults(&av));
    let id = upload_many(&node, 1, "anim.gif", "gif").await.remove(0);
    let media = settled(&node, &id).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert!(media["variants"]["animation"].is_object(), "{media}");
    let (s, a) = (grown(&stills, &stills_before), grown(&av, &av_before));
    assert!(
        s.iter().sum::<u64>() > 100,
        "no stills host saw the GIF: {s:?}"
    );
    assert!(
        a.iter().sum::<u64>() > 100,
        "no FFmpeg host encoded it: {a:?}"
    );

    // A voice note goes straight to an FFmpeg host.
    let (stills_before, av_before) = (faults(&stills), faults(&av));
    let id = upload_many(&node, 1, "voice.mp3", "mp3").await.remove(0);
    assert_eq!(settled(&node, &id).await["status"], "ready");
    let (s, a) = (grown(&stills, &stills_before), grown(&av, &av_before));
    assert_eq!(s, [0, 0], "a stills host ran a child for audio");
    assert!(
        a.iter().sum::<u64>() > 100,
        "no FFmpeg host ran the voice note: {a:?}"
    );
    assert!(
        !loads_ffmpeg(pid),
        "`satchel serve` loaded FFmpeg for a job"
    );
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn process(exe: &Path, file: &Path) -> (Output, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(exe)
        .arg("process")
        .arg(file)
        .arg("--out")
        .arg(out.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("satchel runs");
    (output, out)
}

#[test]
fn satchel_process_hands_what_needs_ffmpeg_to_satchel_transform() {
    let exe = Path::new(env!("CARGO_BIN_EXE_satchel"));
    for (name, variant) in [
        ("voice.mp3", "voice"),
        ("clip.mp4", "video"),
        ("anim.gif", "animation"),
        ("photo.jpg", "preview"),
    ] {
        let (output, out) = process(exe, &fixture(name));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("  {variant} ")),
            "{name}: {stdout}"
        );
        let written: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
        assert!(!written.is_empty(), "{name}: nothing written");
    }
}

/// A copy of the `satchel` binary alone in a directory: no `satchel-transform` beside it.
fn lonely_satchel() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("satchel");
    let built = Path::new(env!("CARGO_BIN_EXE_satchel"));
    if std::fs::hard_link(built, &exe).is_err() {
        std::fs::copy(built, &exe).unwrap();
    }
    (dir, exe)
}

#[test]
fn without_satchel_transform_stills_process_and_a_worker_does_not_start() {
    let (bin, exe) = lonely_satchel();
    // A still needs nothing of FFmpeg.
    let (output, _out) = process(&exe, &fixture("photo.jpg"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // What does says what is missing, and writes nothing.
    for name in ["voice.mp3", "anim.gif"] {
        let (output, out) = process(&exe, &fixture(name));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{} is missing",
                bin.path().join("satchel-transform").display()
            )),
            "{name}: {stderr}"
        );
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "{name}");
    }
    // An embedded node runs workers: it refuses to start rather than fail every job.
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(&exe)
        .arg("serve")
        .env("SATCHEL_LISTEN", "127.0.0.1:0")
        .env("SATCHEL_DATA_DIR", data.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("the transform binary") && stderr.contains("satchel-transform"),
        "{stderr}"
    );
}
