//! Issue 15: the service's `satchel` binary does not link FFmpeg (about 170 shared libraries,
//! ~40 ms of CPU at every start); `satchel-transform`, installed beside it, does, and every job
//! runs there. What could go wrong with the split: the service loading FFmpeg after all (the
//! start-up cost back, silently), `satchel process` failing on what needs FFmpeg instead of
//! handing it over, and a worker without its transform binary taking jobs only to fail them.

use crate::helpers::TOKEN;
use crate::processes::{start_node, transform_hosts, upload_many};
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Whether process `pid` has FFmpeg's codec library mapped.
fn loads_ffmpeg(pid: u32) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("maps of {pid}: {e}"));
    maps.contains("/libavcodec.so")
}

fn program_of(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap();
    String::from_utf8_lossy(argv0).into_owned()
}

#[tokio::test]
async fn the_service_never_loads_ffmpeg_and_its_transform_hosts_do() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SATCHEL_WORKERS", "2"), ("SATCHEL_API_TOKENS", TOKEN)];
    let node = start_node(&["serve"], dir.path(), env).await;
    let pid = node.child.id();
    // The pool warms one host per job it may run at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let hosts = loop {
        let hosts = transform_hosts(pid);
        if hosts.len() == 2 && hosts.iter().all(|&h| loads_ffmpeg(h)) {
            break hosts;
        }
        assert!(Instant::now() < deadline, "hosts not up: {hosts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!loads_ffmpeg(pid), "`satchel serve` has FFmpeg mapped");
    for host in hosts {
        assert!(
            program_of(host).ends_with("/satchel-transform"),
            "{}",
            program_of(host)
        );
    }
    // Nor after a voice note has been processed.
    let id = upload_many(&node, 1, "voice.mp3", "mp3").await.remove(0);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .get(format!("{}/v1/media/{id}", node.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let media: serde_json::Value = r.json().await.unwrap();
        if media["status"] != "processing" {
            assert_eq!(media["status"], "ready", "{media}");
            break;
        }
        assert!(Instant::now() < deadline, "still processing: {media}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
