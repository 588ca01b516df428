//! The `satchel` binary as a newcomer meets it: configuration mistakes, its logs, and
//! `satchel process`.

use crate::helpers::TOKEN;
use crate::processes::start_node_logging;
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `satchel ARGS` with `env` on top of a fresh data directory, run to its exit (killed after
/// 60 s: a server that starts when it should not does not hang the suite).
pub fn satchel(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_satchel"))
        .args(args)
        .env("SATCHEL_LISTEN", "127.0.0.1:0")
        .env("SATCHEL_DATA_DIR", dir.path())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("satchel runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Asserts that `satchel serve` refuses to start and says `expected` on stderr.
fn refuses_to_start(env: &[(&str, &str)], expected: &str) {
    let out = satchel(&["serve"], env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with {env:?}: {stderr}");
    assert!(stderr.contains(expected), "{env:?}: {stderr}");
}

#[test]
fn an_unknown_variable_is_named_with_the_key_it_likely_meant() {
    refuses_to_start(
        &[("SATCHEL_WEBHOOKURL", "x")],
        "SATCHEL_WEBHOOKURL is not a known setting (did you mean SATCHEL_WEBHOOK_URL?)",
    );
}

#[test]
fn a_value_of_the_wrong_type_says_what_was_expected_in_words() {
    refuses_to_start(
        &[("SATCHEL_MAX_UPLOAD_BYTES", "2GB")],
        "SATCHEL_MAX_UPLOAD_BYTES must be a whole number of bytes",
    );
    refuses_to_start(
        &[("SATCHEL_S3_PATH_STYLE", "yes")],
        "SATCHEL_S3_PATH_STYLE must be true or false",
    );
}

#[test]
fn urls_are_checked_at_start_up() {
    for var in [
        "SATCHEL_PUBLIC_URL",
        "SATCHEL_WEBHOOK_URL",
        "SATCHEL_S3_ENDPOINT",
    ] {
        refuses_to_start(
            &[(var, "media.example.com")],
            &format!("{var} must be an http:// or https:// URL"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("satchel.toml");
    std::fs::write(&file, "webhook_url = \"ftp://chat.example.com/hooks\"\n").unwrap();
    let out = satchel(&["serve", "--config", file.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("`webhook_url` must be an http:// or https:// URL"),
        "{stderr}"
    );
}

/// The log of `satchel serve` with `env`, from start until it is ready.
pub async fn start_up_log(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut vars = vec![
        ("SATCHEL_API_TOKENS", TOKEN),
        ("SATCHEL_WORKERS", "2"),
        ("SATCHEL_LOG", "info"),
    ];
    vars.extend_from_slice(env);
    let data = dir.path().join("data");
    let node = start_node_logging(&["serve"], &data, vars, log).await;
    drop(node);
    std::fs::read_to_string(&log_path).unwrap()
}

#[tokio::test]
async fn logs_to_a_pipe_have_no_colours_and_the_start_up_line_prints_values() {
    let log = start_up_log(&[]).await;
    assert!(!log.contains("\x1b["), "ANSI escapes in {log}");
    let serving = log
        .lines()
        .find(|l| l.contains("satchel is serving"))
        .unwrap_or_else(|| panic!("no start-up line in {log}"));
    assert!(
        serving.contains(r#"workers="image,audio,video x2""#),
        "{serving}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let log = start_up_log(&[("SATCHEL_LOG_FORMAT", "json")]).await;
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let serving = lines
        .iter()
        .find(|l| l["fields"]["message"] == "satchel is serving")
        .unwrap_or_else(|| panic!("no start-up line in {log}"));
    assert_eq!(serving["fields"]["workers"], "image,audio,video x2");
    assert_eq!(serving["level"], "INFO");
}

#[test]
fn process_help_describes_its_arguments() {
    let out = satchel(&["process", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for words in [
        "The media file to process",
        "A preset TOML file",
        "The directory to write the variants into",
    ] {
        assert!(help.contains(words), "{words:?} missing from {help}");
    }
}

#[test]
fn process_prints_numbers() {
    let out_dir = tempfile::tempdir().unwrap();
    let photo = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/photo.jpg");
    let out = satchel(
        &["process", photo, "--out", out_dir.path().to_str().unwrap()],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("metadata: width=480 height=640 duration_ms=none waveform=0"),
        "{stdout}"
    );
    assert!(!stdout.contains("Some("), "{stdout}");
}

/// Review finding 4: an empty or short shared secret would make links (or webhook signatures)
/// forgeable; start-up refuses it, naming the key.
#[test]
fn a_shared_secret_under_32_bytes_refuses_start_up() {
    for short in ["", "x", "0123456789abcdef0123456789abcde"] {
        refuses_to_start(
            &[
                ("SATCHEL_API_TOKENS", TOKEN),
                ("SATCHEL_LINK_SECRET", short),
            ],
            "link_secret (SATCHEL_LINK_SECRET) must be at least 32 bytes",
        );
        refuses_to_start(
            &[
                ("SATCHEL_API_TOKENS", TOKEN),
                ("SATCHEL_WEBHOOK_SECRET", short),
            ],
            "webhook_secret (SATCHEL_WEBHOOK_SECRET) must be at least 32 bytes",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("link-secret");
    std::fs::write(&file, "short\n").unwrap();
    refuses_to_start(
        &[
            ("SATCHEL_API_TOKENS", TOKEN),
            ("SATCHEL_LINK_SECRET_FILE", file.to_str().unwrap()),
        ],
        "at least 32 bytes",
    );
}

/// Asserts that `satchel serve` refuses to start with a one-line error saying each of `said`.
fn refuses_to_start_saying(env: &[(&str, &str)], said: &[&str]) {
    // As an operator sees it: no backtrace (the test runner may ask for them).
    let mut env = env.to_vec();
    env.extend([("RUST_BACKTRACE", "0"), ("RUST_LIB_BACKTRACE", "0")]);
    let out = satchel(&["serve"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with {env:?}: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{env:?}: {stderr}");
    for words in said {
        assert!(
            stderr.contains(words),
            "{words:?} missing, {env:?}: {stderr}"
        );
    }
}

/// Review finding 5: the webhook secrets (one, a rotation list, or a file) are held to the
/// same 32 bytes as the link secret, each named in the one-line refusal.
#[test]
fn webhook_secrets_under_32_bytes_refuse_start_up() {
    let good = "0123456789abcdef0123456789abcdef";
    let short = "0123456789abcdef0123456789abcde";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhook-secret");
    std::fs::write(&file, format!("{good}\n{short}\n")).unwrap();
    let rotation = format!("{good},{short}");
    for (var, value, named) in [
        (
            "SATCHEL_WEBHOOK_SECRETS",
            rotation.as_str(),
            "webhook_secrets (SATCHEL_WEBHOOK_SECRETS) ",
        ),
        (
            "SATCHEL_WEBHOOK_SECRET_FILE",
            file.to_str().unwrap(),
            "webhook_secret_file (SATCHEL_WEBHOOK_SECRET_FILE): ",
        ),
    ] {
        refuses_to_start_saying(
            &[("SATCHEL_API_TOKENS", TOKEN), (var, value)],
            &[named, "must be at least 32 bytes, not 31"],
        );
    }
    refuses_to_start_saying(
        &[
            ("SATCHEL_API_TOKENS", TOKEN),
            ("SATCHEL_WEBHOOK_SECRET", good),
            ("SATCHEL_WEBHOOK_SECRETS", good),
        ],
        &["set webhook_secret or webhook_secrets, not both"],
    );
}

/// Review finding 12: the bucket key, or its file, under 32 bytes refuses start-up.
#[test]
fn a_bucket_key_under_32_bytes_refuses_start_up() {
    let short = "0123456789abcdef0123456789abcde";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bucket-key");
    std::fs::write(&file, format!("{short}\n")).unwrap();
    for (var, value, named) in [
        (
            "SATCHEL_S3_BUCKET_KEY",
            short,
            "s3_bucket_key (SATCHEL_S3_BUCKET_KEY) ",
        ),
        (
            "SATCHEL_S3_BUCKET_KEY_FILE",
            file.to_str().unwrap(),
            "s3_bucket_key_file (SATCHEL_S3_BUCKET_KEY_FILE): ",
        ),
    ] {
        refuses_to_start_saying(
            &[("SATCHEL_API_TOKENS", TOKEN), (var, value)],
            &[named, "must be at least 32 bytes, not 31"],
        );
    }
}
