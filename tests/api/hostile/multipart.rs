//! Review finding 1: a `multipart/form-data` body with a 300 MiB preamble grew the server by
//! as much before it answered. Everything the multipart reader buffers is bounded: the
//! preamble, each part's header block, every part that is not the file; the whole body
//! counts against `max_upload_bytes`, and the idle timeout covers all of it.

use super::peak_rss_kib;
use crate::helpers::TOKEN;
use crate::processes::{start_node, Node};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;
/// What the server may grow by while it refuses an attack (its own buffers, the runtime).
const GROWTH_KIB: u64 = 32 * 1024;
const BOUNDARY: &str = "satchel-test-boundary";

async fn serve(extra: &[(&str, &str)]) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![("SATCHEL_API_TOKENS", TOKEN), ("SATCHEL_WORKERS", "1")];
    env.extend_from_slice(extra);
    let node = start_node(&["serve"], dir.path(), env).await;
    node.add_member("c1", "u1").await;
    (node, dir)
}

/// What a body stream sends after its head.
enum Then {
    /// `n` bytes of `x`, then the tail, then the end of the body.
    Filler(u64, Vec<u8>),
    /// Nothing more, without ending the body.
    Stall,
}

/// POSTs a multipart upload whose body is `head` and then what `then` says, over a raw
/// connection that keeps writing while it reads (an HTTP client library stops at the first
/// failed write and drops the answer); returns the answer's status and JSON, and how long it
/// took.
async fn attack(node: &Node, head: &str, then: Then) -> (StatusCode, Value, Duration) {
    let addr = node.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let length = head.len() as u64
        + match &then {
            Then::Filler(n, tail) => n + tail.len() as u64,
            Then::Stall => 1 << 30,
        };
    let request = format!(
        "POST /v1/chats/c1/media?user=u1 HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {TOKEN}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n{head}"
    );
    let started = Instant::now();
    let sending = tokio::spawn(async move {
        writer.write_all(request.as_bytes()).await?;
        match then {
            Then::Filler(n, tail) => {
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = n;
                while left > 0 {
                    let take = left.min(chunk.len() as u64) as usize;
                    writer.write_all(&chunk[..take]).await?;
                    left -= take as u64;
                }
                writer.write_all(&tail).await?;
            }
            Then::Stall => std::future::pending::<()>().await,
        }
        std::io::Result::Ok(writer)
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut answer));
    // The server may close (or reset) once it has answered.
    let _ = read.await.expect("the server answers within a minute");
    let took = started.elapsed();
    sending.abort();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (StatusCode::from_u16(status).unwrap(), json, took)
}

fn part(name: &str, filename: Option<&str>) -> String {
    let filename = filename.map_or(String::new(), |f| format!("; filename=\"{f}\""));
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n")
}

/// Runs `attack` against a fresh server and checks it was refused with `status`/`code`
/// without the server's peak RSS growing by more than [`GROWTH_KIB`].
async fn refused_with_flat_memory(head: &str, then: Then, status: StatusCode, code: &str) {
    let (node, dir) = serve(&[]).await;
    let pid = node.child.id();
    let before = peak_rss_kib(pid);
    let (got, body, took) = attack(&node, head, then).await;
    let after = peak_rss_kib(pid);
    eprintln!("peak RSS {before} KiB before the attack, {after} KiB after, answered in {took:?}");
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert!(
        after - before < GROWTH_KIB,
        "the server's peak RSS grew from {before} KiB to {after} KiB"
    );
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
    let originals = crate::helpers::walk(&dir.path().join("objects"));
    assert!(originals.is_empty(), "stored: {originals:?}");
}

#[tokio::test]
async fn a_300_mib_preamble_is_refused_without_growing_the_server() {
    refused_with_flat_memory(
        "",
        Then::Filler(300 * MIB, Vec::new()),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn a_part_header_block_that_never_ends_is_refused_without_growing_the_server() {
    let head = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\nX-Pad: ");
    refused_with_flat_memory(
        &head,
        Then::Filler(300 * MIB, Vec::new()),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn a_300_mib_part_that_is_not_the_file_is_refused_without_growing_the_server() {
    refused_with_flat_memory(
        &part("caption", None),
        Then::Filler(300 * MIB, Vec::new()),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn the_whole_multipart_body_counts_against_max_upload_bytes() {
    let (node, dir) = serve(&[("SATCHEL_MAX_UPLOAD_BYTES", "1048576")]).await;
    // Small parts before the file, each within the part limit, together far over the framing
    // a file may come with.
    let mut head = String::new();
    for i in 0..200 {
        head.push_str(&part(&format!("note{i}"), None));
        head.push_str(&"n".repeat(4000));
        head.push_str("\r\n");
    }
    head.push_str(&part("file", Some("a.bin")));
    let tail = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
    let (status, body, _) = attack(&node, &head, Then::Filler(MIB - 1000, tail.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "too_large");
    assert!(crate::helpers::walk(&dir.path().join("objects")).is_empty());

    // The file alone at the limit, with its framing, is taken.
    let (status, body, _) =
        attack(&node, &part("file", Some("b.bin")), Then::Filler(MIB, tail)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["size"], MIB);
    assert_eq!(body["filename"], "b.bin");
}

#[tokio::test]
async fn a_multipart_body_that_stalls_anywhere_times_out() {
    let (node, _dir) = serve(&[("SATCHEL_UPLOAD_IDLE_TIMEOUT_SECONDS", "1")]).await;
    let heads = [
        // In the preamble, in a part's headers, in a part that is not the file, in the file.
        "preamble".to_owned(),
        format!("--{BOUNDARY}\r\nContent-Disposition: form-da"),
        format!("{}some text", part("caption", None)),
        format!("{}some bytes", part("file", Some("a.bin"))),
    ];
    for head in heads {
        let (status, body, took) = attack(&node, &head, Then::Stall).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{head:?}: {body}");
        assert_eq!(body["error"]["code"], "upload_timeout");
        assert!(
            took < Duration::from_secs(10),
            "{head:?}: answered after {took:?}"
        );
    }
}
