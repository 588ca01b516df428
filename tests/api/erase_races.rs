//! Unsend and chat erase racing a running job (security review, finding 2): whatever moment
//! the erase lands at (before the job fetches the original, while it transforms, between
//! variant puts, before it records the outcome), nothing of the media stays in the store.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};

/// One upload of each processed kind, erased after each delay.
const DELAYS_MS: [u64; 4] = [0, 150, 400, 900];
const INPUTS: [(&str, &str); 3] = [
    ("clip.mp4", "video"),
    ("photo.jpg", "image"),
    ("voice.mp3", "audio"),
];

/// Waits until the store holds nothing, then a while longer: a job that stored a variant late
/// would show up in that time.
async fn assert_store_stays_empty(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !app.stored_files().is_empty() {
        assert!(
            Instant::now() < deadline,
            "left in the store: {:?}",
            app.stored_files()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.stored_files(), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn unsend_at_any_moment_of_a_job_leaves_nothing_stored() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let mut erasers = Vec::new();
    for delay in DELAYS_MS {
        for (fixture_name, kind) in INPUTS {
            let media = app
                .upload_ok("c1", "u1", fixture_name, fixture(fixture_name))
                .await;
            assert_eq!(media["kind"], kind);
            let id = media["id"].as_str().unwrap().to_owned();
            let request = app.api(Method::DELETE, &format!("/v1/media/{id}"));
            erasers.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let r = request.send().await.unwrap();
                assert_eq!(r.status(), StatusCode::NO_CONTENT);
            }));
        }
    }
    for e in erasers {
        e.await.unwrap();
    }
    assert_store_stays_empty(&app).await;
}

#[tokio::test]
async fn a_chat_erased_while_its_jobs_run_leaves_nothing_stored() {
    let app = spawn_app().await;
    for (fixture_name, _) in INPUTS {
        app.upload_ok("c1", "u1", fixture_name, fixture(fixture_name))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.erase_chat("c1").await;
    assert_store_stays_empty(&app).await;
    assert_eq!(app.bucket_count(), 0);
}

/// Review finding 8: deletions that fail forever (here: a store that cannot remove a media's
/// objects) must not starve the ones after them. Each garbage row backs off on its own.
#[tokio::test]
async fn garbage_that_keeps_failing_never_blocks_later_deletions() {
    // More failing rows than one garbage round takes (100).
    const BAD: usize = 105;
    let app = spawn_app_with(&FILESYSTEM_STORE).await;
    app.add_member("c1", "u1").await;
    let mut ids = Vec::new();
    for n in 0..BAD {
        let media = app
            .upload_ok("c1", "u1", "f.txt", format!("file {n}").into_bytes())
            .await;
        ids.push(media["id"].as_str().unwrap().to_owned());
    }
    let bucket = std::fs::read_dir(app.dir.path().join("objects"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for id in &ids {
        // A plain file where the media's directory was: removing it fails every time.
        let dir = bucket.join(id);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, b"undeletable").unwrap();
        let r = app
            .api(Method::DELETE, &format!("/v1/media/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let good = app.upload_ok("c1", "u1", "g.txt", b"good".to_vec()).await;
    let good = bucket.join(good["id"].as_str().unwrap());
    assert!(good.is_dir());
    let r = app
        .api(
            Method::DELETE,
            &format!("/v1/media/{}", good.file_name().unwrap().to_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(10);
    while good.exists() {
        assert!(Instant::now() < deadline, "the good deletion was starved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = crate::processes::metrics(&app.client, &app.url("")).await;
    let failures: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("satchel_garbage_failures_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(failures >= BAD as u64, "{failures}");
}

/// Review finding 3: a chat erased while one of its uploads streams. The erase answers at
/// once; the late upload is refused (`410 gone`) with nothing of it stored; and the chat's
/// next members, in a chat re-created meanwhile, never see it.
#[tokio::test]
async fn an_upload_that_outlives_its_chat_is_refused_and_never_seen_again() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let late = tokio::spawn(app.upload_request("c1", "u1", "late.bin").body(body).send());
    tx.send(Ok(vec![7u8; 256 * 1024])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    app.erase_chat("c1").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the erase waited for the upload"
    );

    // The chat is used again, by someone else, before the late upload ends.
    let next = app
        .upload_ok("c1", "u2", "next.bin", b"next".to_vec())
        .await;
    tx.send(Ok(vec![8u8; 256 * 1024])).await.unwrap();
    drop(tx);
    let r = late.await.unwrap().unwrap();
    assert_error(r, StatusCode::GONE, "gone").await;

    assert_eq!(app.stored_originals(), 1, "{:?}", app.stored_files());
    let files = app.stored_files();
    let next_id = next["id"].as_str().unwrap();
    assert!(
        files.iter().all(|f| f.to_string_lossy().contains(next_id)),
        "{files:?}"
    );
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
