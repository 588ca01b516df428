//! The real binary, as an operator runs it: SIGTERM stops it cleanly, and whatever was
//! accepted before a stop (graceful or `kill -9`) is processed after the restart.

use crate::helpers::*;
use crate::processes::{signal, start_node, terminate, Node};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

async fn start(dir: &Path) -> Node {
    start_node(
        &["serve"],
        dir,
        [("SATCHEL_API_TOKENS", TOKEN), ("SATCHEL_WORKERS", "1")],
    )
    .await
}

pub async fn upload_photos(server: &Node, n: usize) -> Vec<String> {
    crate::processes::upload_many(server, n, "photo.jpg", "jpg").await
}

pub async fn assert_all_ready(server: &Node, ids: &[String]) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in ids {
        loop {
            let media: Value = client
                .get(format!("{}/v1/media/{id}", server.base))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if media["status"] == "ready" {
                break;
            }
            assert_eq!(media["status"], "processing", "{media}");
            assert!(Instant::now() < deadline, "{id} never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_accepted_uploads_are_processed_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path()).await;
    let ids = upload_photos(&server, 6).await;
    let status = terminate(&mut server).await;
    assert!(status.success(), "exit status {status}");
    drop(server);

    let server = start(dir.path()).await;
    assert_all_ready(&server, &ids).await;
}

#[tokio::test]
async fn after_kill_9_the_jobs_it_held_run_again_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let ids = upload_photos(&server, 6).await;
    signal(&server, "KILL");
    drop(server);

    let server = start(dir.path()).await;
    assert_all_ready(&server, &ids).await;
    let leftovers = walk(&dir.path().join("tmp"));
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
