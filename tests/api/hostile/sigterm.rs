//! SIGTERM under load loses nothing: uploads stream in on many connections and jobs run when
//! the signal comes. Every upload that was answered `201` is there after a restart and is
//! processed; every other one left nothing behind; nothing is stored twice.

use crate::helpers::{fixture, walk, TOKEN};
use crate::process_lifecycle::{assert_all_ready, upload_photos};
use crate::processes::{start_node, terminate};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test]
async fn sigterm_during_concurrent_uploads_and_jobs_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SATCHEL_API_TOKENS", TOKEN),
        ("SATCHEL_WORKERS", "2"),
        ("SATCHEL_SHUTDOWN_GRACE_SECONDS", "10"),
    ];
    let mut server = start_node(&["serve"], dir.path(), env).await;
    let client = reqwest::Client::new();
    // Jobs in the queue and running when the signal comes.
    let mut accepted: BTreeSet<String> = upload_photos(&server, 4).await.into_iter().collect();
    // Sixteen uploads trickling in: each sends a photo in 16 pieces over about 1.6 s.
    let photo = Bytes::from(fixture("photo.jpg"));
    let uploads: Vec<_> = (0..16)
        .map(|i| {
            let photo = photo.clone();
            let url = format!(
                "{}/v1/chats/c1/media?user=u1&filename=s{i}.jpg",
                server.base
            );
            let client = client.clone();
            tokio::spawn(async move {
                let step = photo.len().div_ceil(16);
                let pieces: Vec<Bytes> = (0..photo.len())
                    .step_by(step)
                    .map(|at| photo.slice(at..(at + step).min(photo.len())))
                    .collect();
                let body = futures_util::stream::iter(pieces).then(|piece| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, std::io::Error>(piece)
                });
                let r = client
                    .post(url)
                    .bearer_auth(TOKEN)
                    .body(reqwest::Body::wrap_stream(body))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let media: Value = r.json().await.unwrap();
                        Some(media["id"].as_str().unwrap().to_owned())
                    }
                    // Refused or cut off by the shutdown: the client knows it was not taken.
                    _ => None,
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let status = terminate(&mut server).await;
    assert!(status.success(), "exit status {status}");
    let mut answered = 0;
    for upload in uploads {
        if let Some(id) = upload.await.unwrap() {
            answered += 1;
            accepted.insert(id);
        }
    }
    drop(server);

    // Uploads in flight are drained, not dropped: they had time to finish.
    assert_eq!(
        answered, 16,
        "in-flight uploads answered 201 before the exit"
    );
    let server = start_node(&["serve"], dir.path(), env).await;
    assert_all_ready(&server, &accepted.iter().cloned().collect::<Vec<_>>()).await;
    // One original per accepted upload, and nothing else.
    let originals: BTreeSet<String> = walk(&dir.path().join("objects"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "original"))
        .map(|p| {
            let id = p.parent().unwrap().file_name().unwrap();
            id.to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(originals, accepted);
    assert!(walk(&dir.path().join("tmp")).is_empty());
}
