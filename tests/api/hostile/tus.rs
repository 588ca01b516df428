//! A resumable upload's chunks are streamed into the store, never held: a 200 MiB `PATCH`
//! grows the server by no more than its fixed buffers (an S3 part being filled and one being
//! sent), and the completion that reads the staged bytes back through the upload use case by
//! no more than a `POST` of the same file does (on S3, `s3_upload_concurrency` + 1 parts in
//! flight). The real pass runs it on Garage, the embedded one on the filesystem.

use super::peak_rss_kib;
use crate::helpers::{real_backend, s3_test_vars, TOKEN};
use crate::processes::{start_node, Node};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Instant;

const MIB: u64 = 1 << 20;
/// A PATCH: an 8 MiB part being filled and one being sent, the runtime's own.
const PATCH_GROWTH_KIB: u64 = 24 * 1024;
/// The completion on S3: the upload path's own parts in flight (4 + 1 of 8 MiB) besides.
const COMPLETION_GROWTH_KIB: u64 = 56 * 1024;

async fn create(client: &reqwest::Client, url: &str, length: u64) {
    let r = client
        .post(url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// One `PATCH` of all of [`generated`]`(length)` but its last byte.
async fn all_but_the_last_byte(client: &reqwest::Client, url: &str, length: u64) {
    let r = client
        .patch(url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(generated(length - 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// The last byte of [`generated`]`(length)`.
fn last_byte(length: u64) -> Vec<u8> {
    vec![((length - 1) / (256 * 1024) % 251) as u8]
}

/// A ticket for `u1` (made a member of `c1`) from the node; its upload URL.
async fn ticket_on(node: &Node) -> String {
    node.add_member("c1", "u1").await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chats/c1/upload-tickets", node.base))
        .bearer_auth(TOKEN)
        .json(&json!({"user": "u1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["upload_url"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `len` bytes, made as they are sent, in 256 KiB pieces.
fn generated(len: u64) -> reqwest::Body {
    let piece = 256 * 1024u64;
    let pieces = futures_util::stream::iter((0..len.div_ceil(piece)).map(move |i| {
        let n = piece.min(len - i * piece) as usize;
        Ok::<_, std::io::Error>(vec![(i % 251) as u8; n])
    }));
    reqwest::Body::wrap_stream(pieces)
}

#[tokio::test]
async fn a_200_mib_chunk_and_its_completion_stream_through_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = vec![
        ("SATCHEL_API_TOKENS".into(), TOKEN.into()),
        ("SATCHEL_WORKERS".into(), "1".into()),
        ("SATCHEL_MAX_UPLOAD_BYTES".into(), (400 * MIB).to_string()),
    ];
    if real_backend() {
        env.extend(s3_test_vars());
    }
    let node = start_node(
        &["serve"],
        dir.path(),
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .await;
    let client = reqwest::Client::new();
    let url = ticket_on(&node).await;
    let length = 200 * MIB;
    create(&client, &url, length).await;

    let pid = node.child.id();
    let before = peak_rss_kib(pid);
    let started = Instant::now();
    all_but_the_last_byte(&client, &url, length).await;
    let streamed = started.elapsed();
    let patched = peak_rss_kib(pid);
    // The last byte: the completion reads all 200 MiB back into the original.
    let started = Instant::now();
    let r = client
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", (length - 1).to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(last_byte(length))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let completed = started.elapsed();
    assert!(r.headers().contains_key("satchel-media-id"));
    let after = peak_rss_kib(pid);
    eprintln!(
        "200 MiB PATCH in {streamed:.2?} ({:.0} MiB/s), completion (read back, hash, store) \
         in {completed:.2?}; peak RSS {before} KiB before, {patched} KiB after the PATCH, \
         {after} KiB after the completion",
        200.0 / streamed.as_secs_f64()
    );
    assert!(
        patched - before < PATCH_GROWTH_KIB,
        "the PATCH grew the server's peak RSS from {before} KiB to {patched} KiB"
    );
    assert!(
        after - before < COMPLETION_GROWTH_KIB,
        "the completion grew the server's peak RSS from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn a_node_killed_mid_chunk_lets_go_of_the_upload_when_it_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SATCHEL_API_TOKENS", TOKEN), ("SATCHEL_WORKERS", "1")];
    let node = start_node(&["serve"], dir.path(), env).await;
    let client = reqwest::Client::new();
    let url = ticket_on(&node).await;
    let path = url.strip_prefix(&node.base).unwrap().to_owned();
    let r = client
        .post(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "100000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A PATCH that sends half and waits: the node holds the upload when it dies.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tx.send(Ok(vec![7u8; 50_000])).await.unwrap();
    let pending = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .patch(&url)
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Offset", "0")
                .header("Content-Type", "application/offset+octet-stream")
                .header("Content-Length", "100000")
                .body(crate::tus::held_body(rx))
                .send()
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    crate::processes::signal(&node, "KILL");
    drop(node);
    let _ = pending.await;
    drop(tx);
    // Restarted on the same data directory, the node lets go of what it held: the client
    // goes on at once, not after the lease (30 s) runs out.
    let node = start_node(&["serve"], dir.path(), env).await;
    let url = format!("{}{path}", node.base);
    let started = Instant::now();
    let r = client
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(vec![7u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    assert!(r.headers().contains_key("satchel-media-id"));
    assert!(started.elapsed().as_secs() < 5);
}

#[tokio::test]
async fn a_node_killed_while_the_last_byte_becomes_a_media_finishes_it_at_the_next_head() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SATCHEL_API_TOKENS", TOKEN),
        ("SATCHEL_WORKERS", "1"),
        ("SATCHEL_MAX_UPLOAD_BYTES", "419430400"),
    ];
    let node = start_node(&["serve"], dir.path(), env).await;
    let client = reqwest::Client::new();
    let url = ticket_on(&node).await;
    let path = url.strip_prefix(&node.base).unwrap().to_owned();
    let length = 200 * MIB;
    create(&client, &url, length).await;
    all_but_the_last_byte(&client, &url, length).await;
    // The last byte is recorded at once; reading 200 MiB back into the original takes about
    // a second, and the node dies in the middle of it.
    let last = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .patch(&url)
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Offset", (length - 1).to_string())
                .header("Content-Type", "application/offset+octet-stream")
                .body(last_byte(length))
                .send()
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    crate::processes::signal(&node, "KILL");
    drop(node);
    assert!(
        last.await.unwrap().is_err(),
        "the node died before it answered"
    );

    let node = start_node(&["serve"], dir.path(), env).await;
    let usage = |node: &Node| {
        let url = format!("{}/v1/chats/c1/usage", node.base);
        let client = client.clone();
        async move {
            let r = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
            r.json::<Value>().await.unwrap()["media"].as_u64().unwrap()
        }
    };
    assert_eq!(
        usage(&node).await,
        0,
        "the media was not made before the kill"
    );
    // Every byte is in: the next HEAD (on any node) makes the media, once.
    let url = format!("{}{path}", node.base);
    let head = || client.head(&url).header("Tus-Resumable", "1.0.0").send();
    let r = head().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["upload-offset"], length.to_string().as_str());
    let id = r.headers()["satchel-media-id"].to_str().unwrap().to_owned();
    let again = head().await.unwrap();
    assert_eq!(again.headers()["satchel-media-id"].to_str().unwrap(), id);
    assert_eq!(usage(&node).await, 1);
    let media: Value = client
        .get(format!("{}/v1/media/{id}", node.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(media["size"], length);
}
