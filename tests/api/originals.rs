//! Originals and their metadata (`original_metadata`): a phone photo's original loses its
//! location at ingest without its pixels being re-encoded; `sha256`, `size` and the `ETag`
//! describe what is stored, `uploaded_sha256` what was sent. Checked with exiftool and by
//! decoding both files.

use crate::helpers::*;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Map, Value};

/// exiftool's reading of `bytes`, every tag with its group (`-G1`), numbers as numbers.
fn exiftool(bytes: &[u8]) -> Map<String, Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("exiftool")
        .args(["-j", "-G1", "-n", "-a"])
        .arg(&path)
        .output()
        .expect("exiftool (Debian: libimage-exiftool-perl; scripts/install-deps.sh --test)");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json[0].as_object().unwrap().clone()
}

fn has_tag(tags: &Map<String, Value>, name: &str) -> bool {
    tags.keys()
        .any(|k| k.rsplit(':').next().unwrap_or(k).starts_with(name))
}

fn pixels(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes).unwrap().to_rgba8()
}

async fn download(app: &TestApp, id: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let r = app
        .client
        .get(app.link(id, "u1", "original").await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let headers = r.headers().clone();
    (headers, r.bytes().await.unwrap().to_vec())
}

/// Uploads `name` into `app`; returns its Media object and the downloaded original, checked
/// to be what `sha256`, `size` and the `ETag` describe.
async fn stored(app: &TestApp, name: &str) -> (Value, Vec<u8>) {
    let sent = fixture(name);
    let media = app.upload_ok("c1", "u1", name, sent.clone()).await;
    assert_eq!(media["uploaded_sha256"], sha256_hex(&sent));
    let (headers, original) = download(app, media["id"].as_str().unwrap()).await;
    assert_eq!(media["sha256"], sha256_hex(&original));
    assert_eq!(media["size"], original.len());
    assert_eq!(
        headers["etag"].to_str().unwrap(),
        format!("\"{}\"", sha256_hex(&original))
    );
    (media, original)
}

async fn location_is_stripped(name: &str) {
    let app = spawn_app().await;
    let sent = fixture(name);
    let before = exiftool(&sent);
    assert!(
        has_tag(&before, "GPS") && has_tag(&before, "City"),
        "{before:?}"
    );
    let (media, original) = stored(&app, name).await;
    assert_ne!(media["sha256"], media["uploaded_sha256"]);
    let after = exiftool(&original);
    let gps: Vec<&String> = after.keys().filter(|k| k.contains("GPS")).collect();
    assert!(gps.is_empty(), "{name} keeps {gps:?}");
    assert!(!has_tag(&after, "City"), "{after:?}");
    assert!(!after.contains_key("ExifTool:Warning"), "{after:?}");
    assert_eq!(after["IFD0:Orientation"], 6, "{after:?}");
    assert_eq!(after["IFD0:Make"], "SatchelCam", "only the location goes");
    // An XMP packet that names a place goes whole (its creator with it); EXIF loses only GPS.
    assert!(!has_tag(&after, "Creator"), "{after:?}");
    assert_eq!(after["ExifIFD:DateTimeOriginal"], "2024:01:02 03:04:05");
    assert!(has_tag(&after, "ProfileClass"), "the ICC profile stays");
    assert!(
        pixels(&original) == pixels(&sent),
        "{name}: the pixels changed"
    );
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["uploaded_sha256"], media["uploaded_sha256"]);
}

#[tokio::test]
async fn a_jpeg_original_loses_its_location_but_not_its_pixels_or_orientation() {
    location_is_stripped("photo-gps.jpg").await;
}

#[tokio::test]
async fn a_png_original_loses_its_location_but_not_its_pixels_or_orientation() {
    location_is_stripped("photo-gps.png").await;
}

#[tokio::test]
async fn a_webp_original_loses_its_location_but_not_its_pixels_or_orientation() {
    location_is_stripped("photo-gps.webp").await;
}

#[tokio::test]
async fn strip_all_keeps_only_the_orientation_and_the_colour_profile() {
    let app = spawn_app_with(&[("SATCHEL_ORIGINAL_METADATA", "strip_all")]).await;
    for name in ["photo-gps.jpg", "photo-gps.png", "photo-gps.webp"] {
        let (_, original) = stored(&app, name).await;
        let tags = exiftool(&original);
        let metadata: Vec<&String> = tags
            .keys()
            .filter(|k| {
                let group = k.split(':').next().unwrap_or_default();
                let allowed = ["SourceFile", "ExifTool", "System", "File", "Composite", "JFIF"]
                    .contains(&group)
                    || group.starts_with("ICC")
                    // The format's own structure (dimensions, bit depth, the VP8 header) and
                    // iCCP's profile name.
                    || ["PNG", "RIFF"].contains(&group);
                !allowed && k.as_str() != "IFD0:Orientation"
            })
            .collect();
        assert!(metadata.is_empty(), "{name} keeps {metadata:?}");
        assert_eq!(tags["IFD0:Orientation"], 6, "{name}: {tags:?}");
        assert!(has_tag(&tags, "ProfileClass"), "{name}: {tags:?}");
        assert!(!tags.contains_key("ExifTool:Warning"), "{name}: {tags:?}");
        assert!(
            pixels(&original) == pixels(&fixture(name)),
            "{name}: pixels"
        );
    }
}

#[tokio::test]
async fn keep_stores_the_bytes_as_sent() {
    let app = spawn_app_with(&[("SATCHEL_ORIGINAL_METADATA", "keep")]).await;
    let sent = fixture("photo-gps.jpg");
    let (media, original) = stored(&app, "photo-gps.jpg").await;
    assert_eq!(original, sent);
    assert_eq!(media["sha256"], media["uploaded_sha256"]);
}

#[tokio::test]
async fn a_file_is_never_touched_even_with_a_photo_inside() {
    let app = spawn_app_with(&[("SATCHEL_ORIGINAL_METADATA", "strip_all")]).await;
    let mut sent = b"an end-to-end encrypted blob, say\n".to_vec();
    sent.extend_from_slice(&fixture("photo-gps.jpg"));
    let media = app.upload_ok("c1", "u1", "blob.bin", sent.clone()).await;
    assert_eq!(media["kind"], "file");
    let (_, original) = download(&app, media["id"].as_str().unwrap()).await;
    assert_eq!(original, sent);
    assert_eq!(media["sha256"], media["uploaded_sha256"]);
    // Nor is a photo without anything to strip.
    let (media, original) = stored(&app, "photo.webp").await;
    assert_eq!(original, fixture("photo.webp"));
    assert_eq!(media["sha256"], media["uploaded_sha256"]);
}

#[tokio::test]
async fn content_digest_and_idempotency_keys_name_the_body_as_received() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let sent = fixture("photo-gps.jpg");
    let digest = |b: &[u8]| {
        use sha2::Digest;
        let d = sha2::Sha256::digest(b);
        let b64 = base64::engine::general_purpose::STANDARD.encode(d);
        format!("sha-256=:{b64}:")
    };
    let send = |digest: String| {
        app.upload_request("c1", "u1", "a.jpg")
            .header("content-digest", digest)
            .header("idempotency-key", "msg-1")
            .body(sent.clone())
            .send()
    };
    let r = send(digest(&sent)).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let first: Value = r.json().await.unwrap();
    assert_ne!(first["sha256"], first["uploaded_sha256"]);
    let r = send(digest(&sent)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a retry of the same body");
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let r = send(digest(b"other bytes")).await.unwrap();
    assert_error(r, StatusCode::CONFLICT, "idempotency_conflict").await;
}

#[tokio::test]
async fn the_storage_usage_counts_the_stored_bytes() {
    // photo-gps.png loses its XMP chunk: what the chat holds is the smaller stored file.
    let sent = fixture("photo-gps.png");
    let app = spawn_app().await;
    let (media, original) = stored(&app, "photo-gps.png").await;
    assert!(original.len() < sent.len());
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    let variants: u64 = done["variants"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["size"].as_u64().unwrap())
        .sum();
    let usage: Value = app
        .api(reqwest::Method::GET, "/v1/chats/c1/usage")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["bytes"], original.len() as u64 + variants, "{usage}");
}
