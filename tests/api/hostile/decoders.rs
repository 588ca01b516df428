use crate::helpers::*;
use reqwest::StatusCode;

async fn failed_with(app: &TestApp, fixture_name: &str, code: &str) -> String {
    let bytes = fixture(fixture_name);
    let media = app.upload_ok("c1", "u1", fixture_name, bytes.clone()).await;
    assert_eq!(media["kind"], "image");
    let id = media["id"].as_str().unwrap().to_owned();
    let done = app.wait_processed(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], code, "{done}");
    assert!(done["variants"].as_object().unwrap().is_empty());
    // The original stays stored and downloadable: the bytes as stored (truncated.jpg's GPS
    // IFD is zeroed at ingest), as sent under `uploaded_sha256`.
    let link = app.link(&id, "u1", "original").await;
    let r = app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.bytes().await.unwrap();
    assert_eq!(sha256_hex(&body), done["sha256"]);
    assert_eq!(done["uploaded_sha256"], sha256_hex(&bytes));
    id
}

#[tokio::test]
async fn a_pixel_flood_fails_with_too_many_pixels_and_the_service_stays_healthy() {
    let app = spawn_app().await;
    failed_with(&app, "pixel-flood.png", "too_many_pixels").await;
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let leftovers: Vec<_> = walk(&app.dir.path().join("work"));
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
}

#[tokio::test]
async fn a_truncated_jpeg_fails_with_decode_failed() {
    let app = spawn_app().await;
    failed_with(&app, "truncated.jpg", "decode_failed").await;
}

#[tokio::test]
async fn a_variant_of_a_failed_image_is_not_ready() {
    let app = spawn_app().await;
    let id = failed_with(&app, "pixel-flood.png", "too_many_pixels").await;
    let r = app
        .links(
            &id,
            serde_json::json!({"user": "u1", "variants": ["thumbnail"]}),
        )
        .await;
    assert_error(r, StatusCode::CONFLICT, "variant_not_ready").await;
}

/// A mono 16-bit PCM WAV of `seconds` of a 440 Hz tone at 8 kHz.
pub(crate) fn long_wav(seconds: u32) -> Vec<u8> {
    let rate = 8000u32;
    let samples = rate * seconds;
    let mut wav = Vec::with_capacity(44 + 2 * samples as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + 2 * samples).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(2 * samples).to_le_bytes());
    for n in 0..samples {
        let t = n as f32 / rate as f32;
        let v = (t * 440.0 * std::f32::consts::TAU).sin() * 8000.0;
        wav.extend_from_slice(&(v as i16).to_le_bytes());
    }
    wav
}

/// The default presets with `max_job_seconds` of `section` (`[audio]`, `[image.animation]`)
/// set to `seconds`, written into `dir`; its path.
pub(crate) fn presets_with_budget(dir: &std::path::Path, section: &str, seconds: u32) -> String {
    let default =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/presets/default.toml"))
            .unwrap();
    let start = default.find(section).unwrap();
    let at = start + default[start..].find("max_job_seconds = 120").unwrap();
    let edited = format!(
        "{}max_job_seconds = {seconds}{}",
        &default[..at],
        &default[at + "max_job_seconds = 120".len()..]
    );
    let path = dir.join("presets.toml");
    std::fs::write(&path, edited).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_job_over_its_time_budget_is_killed_and_fails_with_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let presets = presets_with_budget(dir.path(), "[audio]", 1);
    let app = spawn_app_with(&[
        ("SATCHEL_JOB_TIMEOUT_SECONDS", "1"),
        ("SATCHEL_PRESETS", &presets),
    ])
    .await;
    // Ten minutes of audio: well within the preset's limits, far more than a second of work.
    let media = app.upload_ok("c1", "u1", "long.wav", long_wav(600)).await;
    assert_eq!(media["kind"], "audio");
    let id = media["id"].as_str().unwrap();
    let done = app.wait_processed(id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "timed_out", "{done}");
    // Killed, not left running in the background.
    let running = crate::processes::transform_children(std::process::id());
    assert!(running.is_empty(), "transforms still running: {running:?}");
}

/// Finding 11: the job's budget is the larger of `job_timeout_seconds` and the preset's own
/// `max_job_seconds`; a short global timeout killed every long voice note and video.
#[tokio::test]
async fn a_preset_budget_longer_than_job_timeout_gives_the_job_its_time() {
    let app = spawn_app_with(&[("SATCHEL_JOB_TIMEOUT_SECONDS", "1")]).await;
    // Fifteen minutes of audio: several seconds of work, within the preset's 120 s.
    let media = app.upload_ok("c1", "u1", "long.wav", long_wav(900)).await;
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert!(done["variants"]["voice"].is_object(), "{done}");
}

#[tokio::test]
async fn a_decoder_that_dies_on_its_memory_ceiling_fails_the_job_and_the_service_lives_on() {
    // 64 MiB for each transform; decoding this PNG needs 108 MB, so its child aborts on
    // every attempt. Two attempts: one retry after a 2 s backoff.
    let app = spawn_app_with(&[
        ("SATCHEL_JOB_MEMORY_LIMIT_MIB", "64"),
        ("SATCHEL_JOB_MAX_ATTEMPTS", "2"),
    ])
    .await;
    let media = app.upload_ok("c1", "u1", "huge.png", flat_png(6000)).await;
    let id = media["id"].as_str().unwrap();
    let done = app.wait_processed(id).await;
    assert_eq!(done["status"], "failed", "{done}");
    // The embedded queue counts the attempts itself; RabbitMQ counts deliveries and
    // dead-letters the job (README, "Error codes").
    let code = if real_backend() {
        "dead_lettered"
    } else {
        "worker_crashed"
    };
    assert_eq!(done["error"]["code"], code, "{done}");

    let photo = app
        .upload_ok("c1", "u1", "photo.jpg", fixture("photo.jpg"))
        .await;
    let done = app.wait_processed(photo["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ready", "{done}");
}
