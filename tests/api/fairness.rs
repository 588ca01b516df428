//! Fair scheduling across chats (issue 14, part 3): one chat's flood of photos must not make
//! another chat's voice note, or its photo, wait for the whole flood. Every test runs on both
//! passes: the embedded queue's fair claim, and RabbitMQ's relay, which admits a chat's jobs
//! into the broker a few at a time.

use crate::helpers::*;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// How many of `ids` are no longer processing.
async fn done(app: &TestApp, ids: &[String]) -> usize {
    let mut n = 0;
    for id in ids {
        let media: serde_json::Value = app.media(id).await.json().await.unwrap();
        if media["status"] != "processing" {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn a_flood_in_one_chat_delays_another_chats_voice_note_by_at_most_a_round_of_jobs() {
    let workers = 2;
    let app = spawn_app_with(&[("SATCHEL_WORKERS", "2")]).await;
    app.add_member("flood", "u1").await;
    app.add_member("quiet", "u2").await;
    let mut flood = Vec::new();
    for i in 0..24 {
        let r = app
            .upload("flood", "u1", &format!("{i}.jpg"), fixture("photo.jpg"))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        flood.push(
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let voice = app
        .upload_ok("quiet", "u2", "v.ogg", fixture("voice.ogg"))
        .await;
    let uploaded = Instant::now();
    let before = done(&app, &flood).await;
    let voice = app.wait_processed(voice["id"].as_str().unwrap()).await;
    let waited = uploaded.elapsed();
    let after = done(&app, &flood).await;
    assert_eq!(voice["status"], "ready", "{voice}");
    // The jobs running when it arrived finish first, and perhaps one more round: not the
    // rest of the flood.
    assert!(
        after - before <= 2 * workers,
        "{} flood jobs finished while the voice note waited {waited:?} ({before} were done when it arrived)",
        after - before
    );
    assert!(
        after < flood.len(),
        "the flood was over before the voice note: no contest"
    );
}

/// The most transform children seen at once while `ids` are processed.
async fn most_at_once(app: &TestApp, ids: &[String]) -> usize {
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while done(app, ids).await < ids.len() {
        most = most.max(crate::processes::transform_children(std::process::id()).len());
        assert!(Instant::now() < deadline, "the flood never finished");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    most
}

async fn flood(app: &TestApp, chat: &str, n: usize) -> Vec<String> {
    app.add_member(chat, "u1").await;
    let mut ids = Vec::new();
    for i in 0..n {
        let r = app
            .upload(chat, "u1", &format!("{i}.jpg"), fixture("photo.jpg"))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        ids.push(
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids
}

#[tokio::test]
async fn a_photo_of_a_quiet_chat_overtakes_another_chats_flood_of_photos() {
    let app = spawn_app_with(&[("SATCHEL_WORKERS", "2")]).await;
    let flood = flood(&app, "flood", 24).await;
    let quiet = app
        .upload_ok("quiet", "u2", "q.jpg", fixture("photo.jpg"))
        .await;
    let before = done(&app, &flood).await;
    app.wait_processed(quiet["id"].as_str().unwrap()).await;
    let after = done(&app, &flood).await;
    // At most the flood's window (4) was ahead of it, and one job of the other worker may
    // finish while the quiet photo's own job runs; first come, first served would be ~20.
    assert!(
        after - before <= 4 + 1,
        "{} flood jobs went first",
        after - before
    );
}

#[tokio::test]
async fn max_jobs_in_flight_per_chat_caps_what_one_chat_runs_at_once() {
    let app = spawn_app_with(&[("SATCHEL_WORKERS", "2")]).await;
    let ids = flood(&app, "c1", 8).await;
    assert_eq!(
        most_at_once(&app, &ids).await,
        2,
        "without a cap both workers take the chat's jobs"
    );

    let app = spawn_app_with(&[
        ("SATCHEL_WORKERS", "2"),
        ("SATCHEL_MAX_JOBS_IN_FLIGHT_PER_CHAT", "1"),
    ])
    .await;
    let ids = flood(&app, "c1", 8).await;
    assert_eq!(most_at_once(&app, &ids).await, 1);
}
