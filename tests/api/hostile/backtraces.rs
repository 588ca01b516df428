//! Review finding 7: with `RUST_BACKTRACE=1` (common in containers) the first logged error
//! resolved a backtrace against the binary's debug info, RSS 61 → 373 MiB after one S3 503,
//! for good. Errors are logged and printed with their causes, never with a backtrace.

use super::peak_rss_kib;
use crate::cli::satchel;
use crate::helpers::TOKEN;
use crate::processes::{free_port, Node};
use reqwest::StatusCode;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn a_start_up_error_is_one_line_with_its_causes_even_with_rust_backtrace_set() {
    let out = satchel(
        &["serve"],
        &[
            ("RUST_BACKTRACE", "1"),
            ("SATCHEL_LINK_SECRET_FILE", "/nonexistent/link-secret"),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(
            "link_secret_file (SATCHEL_LINK_SECRET_FILE): cannot read /nonexistent/link-secret"
        ),
        "{stderr}"
    );
}

/// An S3 endpoint that answers every request `503 Service Unavailable`.
async fn failing_s3() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 16 * 1024];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\
                          Connection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_storage_outage_is_logged_without_a_backtrace_and_costs_no_memory() {
    let endpoint = failing_s3().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("satchel.log");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_satchel"))
        .arg("serve")
        .env("RUST_BACKTRACE", "1")
        .env("SATCHEL_LISTEN", format!("127.0.0.1:{port}"))
        .env("SATCHEL_DATA_DIR", dir.path().join("data"))
        .env("SATCHEL_API_TOKENS", TOKEN)
        .env("SATCHEL_S3_ENDPOINT", &endpoint)
        .env("SATCHEL_S3_ACCESS_KEY_ID", "test")
        .env("SATCHEL_S3_SECRET_ACCESS_KEY", "test-secret")
        .env("SATCHEL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let node = Node {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{}/healthz", node.base))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "satchel did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.add_member("c1", "u1").await;

    let before = peak_rss_kib(node.child.id());
    for _ in 0..3 {
        let r = client
            .post(format!("{}/v1/chats/c1/media?user=u1", node.base))
            .bearer_auth(TOKEN)
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "storage_unavailable");
    }
    let after = peak_rss_kib(node.child.id());
    eprintln!("peak RSS {before} KiB before three storage errors, {after} KiB after");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("request failed"), "{logged}");
    assert!(
        !logged.contains("acktrace") && !logged.contains(" at /"),
        "a backtrace was logged: {logged}"
    );
    assert!(
        after - before < 24 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB over three storage errors"
    );
}
