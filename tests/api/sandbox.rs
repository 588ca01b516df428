//! Review finding 6 of issue 12: the transform child runs FFmpeg's C decoders on hostile bytes,
//! so it holds no secret and reaches nothing but its input file and its output directory.
//! `satchel sandbox-probe` spawns a child by the very code a job uses and has it try what a
//! subverted decoder would; every fixture kind still transforms in such a child.

use satchel::domain::sniff;
use satchel::jobs::isolate::{Ended, Isolation, Report};
use serde_json::Value;
use std::net::TcpListener;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// In the worker's environment, as a deployment configures it.
const SECRETS: [(&str, &str); 4] = [
    ("SATCHEL_API_TOKENS", "probe-token-0123456789"),
    ("SATCHEL_LINK_SECRET", "probe-link-secret-0123456789abcdef"),
    ("SATCHEL_S3_SECRET_ACCESS_KEY", "probe-s3-secret-key"),
    (
        "SATCHEL_DATABASE_URL",
        "postgres://satchel:hunter2@127.0.0.1:1/satchel",
    ),
];

/// All that a child's environment may hold: how to log, and the allocator's arena count.
const CHILD_ENV: [&str; 5] = [
    "SATCHEL_LOG",
    "SATCHEL_LOG_FORMAT",
    "MALLOC_ARENA_MAX",
    "RUST_BACKTRACE",
    // Set by every satchel process for itself at start-up (no backtraces in logged errors).
    "RUST_LIB_BACKTRACE",
];

/// The descriptor number under which the worker holds an inherited, non-close-on-exec file.
const LEAKED_FD: i32 = 7;

struct Probed {
    report: Value,
    secret: String,
    listener: TcpListener,
    _data: tempfile::TempDir,
}

/// Runs `satchel sandbox-probe` in both kinds of host, an FFmpeg one and a stills one.
fn probes() -> [Probed; 2] {
    [probe(false), probe(true)]
}

/// Runs `satchel sandbox-probe` as a worker with secrets in its environment and, as from a
/// careless supervisor, the data directory's `link-secret` open without close-on-exec; in a
/// stills host (`satchel` itself) with `stills`, else in `satchel-transform`.
fn probe(stills: bool) -> Probed {
    let data = tempfile::tempdir().unwrap();
    let secret = data.path().join("link-secret");
    std::fs::write(&secret, "probe-link-secret-0123456789abcdef\n").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let leaked = std::fs::File::open(&secret).unwrap();
    let leaked_fd = leaked.as_raw_fd();
    let mut command = Command::new(env!("CARGO_BIN_EXE_satchel"));
    command
        .arg("sandbox-probe")
        .arg("--open")
        .arg(&secret)
        .args(["--connect", &addr])
        .args(stills.then_some("--stills"))
        .env("SATCHEL_DATA_DIR", data.path())
        .envs(SECRETS)
        .stdin(Stdio::null());
    // SAFETY: dup2 is async-signal-safe; the new descriptor has no close-on-exec flag.
    unsafe {
        command.pre_exec(move || match libc::dup2(leaked_fd, LEAKED_FD) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let out = command.output().expect("satchel runs");
    drop(leaked);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sandbox-probe failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("probe: {report}");
    Probed {
        report,
        secret: secret.display().to_string(),
        listener,
        _data: data,
    }
}

#[test]
fn a_confined_child_still_reads_its_input_and_writes_its_output_dir() {
    for p in probes() {
        assert_eq!(p.report["input"], "ok", "{}", p.report);
        assert_eq!(p.report["output"], "ok", "{}", p.report);
    }
}

#[test]
fn a_transform_child_sees_no_secret_and_holds_no_inherited_descriptor() {
    for p in probes() {
        let names: Vec<&str> = p.report["env"]
            .as_array()
            .expect("env is a list of names")
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        for (secret, _) in SECRETS {
            assert!(!names.contains(&secret), "{secret} in the child: {names:?}");
        }
        for name in &names {
            assert!(CHILD_ENV.contains(name), "{name} in the child: {names:?}");
        }
        assert_eq!(
            p.report["fds"],
            serde_json::json!([0, 1, 2]),
            "{}",
            p.report
        );
        // Its stdin is /dev/null: not the host's request pipe, which would hand it the next job.
        assert_eq!(p.report["stdin"], "eof", "{}", p.report);
    }
}

/// The filesystem store links a job's original into its scratch directory instead of copying
/// it: the child may read its input but never write it, or a subverted decoder could rewrite
/// the stored original that every member of the chat downloads.
#[test]
fn a_transform_child_cannot_write_its_input() {
    for p in probes() {
        let written = p.report["input_write"]
            .as_str()
            .expect("the open was tried");
        assert!(
            written.contains("Permission denied"),
            "its input opened for writing: {written} ({})",
            p.report
        );
    }
}

/// What a job starts dies with it: a process it forked that sleeps on, still in the job's
/// process group, is killed when the job ends; else it could go on writing an output after the
/// store has moved the file into place.
#[test]
fn nothing_a_transform_child_starts_outlives_its_job() {
    for p in probes() {
        let pid = p.report["left_behind"].as_i64().expect("a pid");
        assert!(pid > 0, "the probe could not fork: {}", p.report);
        // sandbox-probe has returned, so its job has ended.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => break,
                Ok(stat) => stat,
            };
            // A zombie nobody has reaped yet is dead too.
            let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
            if state.starts_with('Z') {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the job's sleeper is still running: {stat}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A job's process is forked from a long-lived host that may reach the whole scratch
/// directory; the job itself reaches only its own files, not another job's beside them.
#[test]
fn a_transform_child_cannot_read_another_jobs_files() {
    for p in probes() {
        let neighbour = p.report["neighbour"].as_str().expect("the read was tried");
        assert!(
            neighbour.contains("Permission denied"),
            "another job's input: {neighbour} ({})",
            p.report
        );
    }
}

#[test]
fn a_transform_child_cannot_open_the_data_dir_or_reach_the_network() {
    for p in probes() {
        let r = &p.report;
        let confinement = r["confinement"].as_str().unwrap_or_default();
        let opened = r["open"][&p.secret].as_str().expect("the open was tried");
        assert!(
            opened.contains("Permission denied"),
            "{} opened ({confinement}): {r}",
            p.secret
        );
        let environ = r["parent_environ"].as_str().unwrap();
        assert!(
            environ.contains("Permission denied"),
            "the worker's /proc/PID/environ ({confinement}): {r}"
        );
        for net in ["connect", "udp", "unix"] {
            let outcome = r[net].as_str().unwrap();
            assert!(
                outcome.contains("Permission denied"),
                "{net} ({confinement}): {r}"
            );
        }
        // Nothing it starts leaves the process group that is killed with the job.
        if confinement.contains("seccomp on") {
            let left = r["leave_group"].as_str().unwrap();
            assert!(left.contains("Permission denied"), "setsid: {r}");
        }
        // Landlock's scopes (ABI 6, Linux 6.12) also keep it from signalling the worker.
        if confinement.contains("scopes") {
            let signal = r["signal_parent"].as_str().unwrap();
            assert!(signal.contains("Operation not permitted"), "signal: {r}");
        }
        let accepted = p.listener.accept();
        assert!(
            accepted
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
            "the listener accepted a connection: {accepted:?}"
        );
    }
}

/// What each fixture gives in a child, as it did before the sandbox: `Ok(())` for a
/// transform that produced variants, else the worker's code.
const FIXTURES: [(&str, Result<(), &str>); 25] = [
    ("photo.jpg", Ok(())),
    ("photo.png", Ok(())),
    ("photo.webp", Ok(())),
    ("anim.gif", Ok(())),
    ("anim.webp", Ok(())),
    ("anim.apng", Ok(())),
    ("frame-bomb.gif", Err("too_many_pixels")),
    ("cmyk.jpg", Ok(())),
    ("gray.jpg", Ok(())),
    ("truncated.jpg", Err("decode_failed")),
    ("pixel-flood.png", Err("too_many_pixels")),
    ("voice.wav", Ok(())),
    ("voice.flac", Ok(())),
    ("voice.mp3", Ok(())),
    ("voice.ogg", Ok(())),
    ("voice.opus", Ok(())),
    ("voice.m4a", Ok(())),
    ("empty-audio.wav", Err("empty_media")),
    ("clip.mp4", Ok(())),
    ("clip.webm", Ok(())),
    ("clip-rotated.mp4", Ok(())),
    ("clip-noaudio.mp4", Ok(())),
    ("audio-only.mp4", Ok(())),
    ("truncated.mp4", Err("decode_failed")),
    ("absurd-dims.mp4", Err("too_many_pixels")),
];

/// Every kind of input the decoders take still transforms in a confined child started as a
/// job starts it (`Isolation::run`): nothing they need at run time is refused. One host runs
/// them all, one after the other, as a worker's host does: a failed or crashed job before
/// leaves nothing behind for the next.
#[tokio::test]
async fn every_fixture_kind_transforms_in_a_confined_child() {
    let root = tempfile::tempdir().unwrap();
    let isolation = Isolation::new(
        env!("CARGO_BIN_EXE_satchel-transform").into(),
        None,
        2 << 30,
        root.path().to_path_buf(),
    )
    .unwrap();
    let mut wrong = Vec::new();
    for (name, expected) in FIXTURES {
        let bytes = crate::helpers::fixture(name);
        let kind = sniff(&bytes[..bytes.len().min(8192)])
            .kind
            .pipeline()
            .unwrap_or_else(|| panic!("{name} is not processed"));
        let scratch = tempfile::tempdir_in(root.path()).unwrap();
        let input = scratch.path().join("original");
        std::fs::write(&input, &bytes).unwrap();
        let out_dir = scratch.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let ended = isolation
            .run(kind, &input, &out_dir, Duration::from_secs(120))
            .await
            .unwrap();
        let got = match &ended {
            Ended::Reported(Report::Done(output)) => {
                let stored = output
                    .variants
                    .iter()
                    .all(|v| v.path.parent() == Some(out_dir.as_path()) && is_file(&v.path));
                // Animations are also encoded to H.264 in the child: libx264 and the MP4
                // muxer (its faststart pass reads the file back) need nothing else.
                let animated = name.starts_with("anim.");
                let has_animation = output.variants.iter().any(|v| v.name == "animation");
                match !output.variants.is_empty() && stored {
                    true if animated != has_animation => Err("animation variant wrong"),
                    true => Ok(()),
                    false => Err("variants missing"),
                }
            }
            Ended::Reported(Report::Failed { code, .. }) => Err(code.as_str()),
            _ => Err("crashed or timed out"),
        };
        if got != expected {
            wrong.push(format!("{name}: expected {expected:?}, got {ended:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

fn is_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// The start-up line of a node with workers says what confinement this kernel gives, and it
/// is what a child got.
#[tokio::test]
async fn the_start_up_line_says_what_confinement_a_child_gets() {
    let log = crate::cli::start_up_log(&[]).await;
    let serving = log
        .lines()
        .find(|l| l.contains("satchel is serving"))
        .unwrap_or_else(|| panic!("no start-up line in {log}"));
    for p in probes() {
        let confinement = p.report["confinement"].as_str().unwrap().to_owned();
        assert!(
            serving.contains(&format!("sandbox=\"{confinement}\"")),
            "{confinement:?} not in {serving}"
        );
    }
}
