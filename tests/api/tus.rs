//! Resumable uploads through upload tickets (tus 1.0.0), driven by hand-made requests: what a
//! well-behaved client gets, and what a hostile one (wrong offsets, lying checksums, bytes past
//! the length, tampered or spent tickets, a member who left, an erased chat, a quota filled
//! meanwhile, two requests at once, a connection cut mid-chunk, thousands of tiny chunks)
//! cannot do. Both passes: the filesystem store and SQLite, then Garage and PostgreSQL.
//! The off-the-shelf clients are in `tus_clients.rs`.

use crate::helpers::*;
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

pub const OCTETS: &str = "application/offset+octet-stream";

/// `n` bytes that sniff as nothing in particular (kind `file`, ready at once).
pub fn blob(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ 0x5a).collect()
}

/// Issues a ticket for `user` (made a member of `chat` first) with `extra` fields; its URL.
pub async fn ticket(app: &TestApp, chat: &str, user: &str, extra: Value) -> String {
    app.add_member(chat, user).await;
    let mut body = json!({"user": user});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let r = app
        .api(Method::POST, &format!("/v1/chats/{chat}/upload-tickets"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let body: Value = r.json().await.unwrap();
    assert!(body["expires_at"].is_string());
    body["upload_url"].as_str().unwrap().to_owned()
}

/// A body that sends what arrives on `rx`, and ends when its sender is dropped.
pub fn held_body(
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn tus(client: &reqwest::Client, method: Method, url: &str) -> reqwest::RequestBuilder {
    client.request(method, url).header("Tus-Resumable", "1.0.0")
}

/// A creation `POST` with this `Upload-Length` and nothing else, as the server answers it.
async fn create_with(client: &reqwest::Client, url: &str, length: &str) -> Response {
    tus(client, Method::POST, url)
        .header("Upload-Length", length)
        .send()
        .await
        .unwrap()
}

/// Creates the upload of `length` bytes; the `201`'s headers.
pub async fn create(client: &reqwest::Client, url: &str, length: usize) -> HeaderMap {
    let r = tus(client, Method::POST, url)
        .header("Upload-Length", length.to_string())
        .header("Upload-Metadata", "filename bm90ZXMuYmlu") // notes.bin
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    assert_eq!(r.headers()["location"].to_str().unwrap(), url);
    assert!(r.headers().contains_key("upload-expires"));
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    r.headers().clone()
}

pub async fn patch(client: &reqwest::Client, url: &str, offset: usize, bytes: &[u8]) -> Response {
    tus(client, Method::PATCH, url)
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", OCTETS)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

/// A `PATCH` whose body has no `Content-Length`: `bytes` in pieces of `piece`, so the
/// server learns its size only as it streams.
async fn patch_chunked(
    client: &reqwest::Client,
    url: &str,
    offset: u64,
    bytes: Vec<u8>,
    piece: usize,
) -> Response {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(piece).map(|c| Ok(c.to_vec())).collect();
    tus(client, Method::PATCH, url)
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", OCTETS)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap()
}

pub async fn head(client: &reqwest::Client, url: &str) -> Response {
    tus(client, Method::HEAD, url).send().await.unwrap()
}

pub fn header_u64(r: &Response, name: &str) -> u64 {
    r.headers()[name].to_str().unwrap().parse().unwrap()
}

/// The media an answer's `Satchel-Media-Id` names, as `GET /v1/media/{id}` has it.
pub async fn made(app: &TestApp, r: &Response) -> Value {
    let id = r
        .headers()
        .get("satchel-media-id")
        .unwrap_or_else(|| panic!("no Satchel-Media-Id: {}", r.status()))
        .to_str()
        .unwrap();
    app.media(id).await.json().await.unwrap()
}

/// The server's offset for the upload.
pub async fn offset(client: &reqwest::Client, url: &str) -> u64 {
    let r = head(client, url).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    header_u64(&r, "upload-offset")
}

fn status_of(r: &Response) -> (StatusCode, Option<String>) {
    let code = r
        .headers()
        .get("satchel-media-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status(), code)
}

async fn assert_code(r: Response, status: StatusCode, code: &str) {
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_error(r, status, code).await;
}

/// Paths of staged resumable-upload bytes in the store (files or S3 objects and uploads).
fn staged(app: &TestApp) -> Vec<String> {
    app.stored_files()
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.contains("tus/"))
        .collect()
}

/// Waits until the store holds no staged bytes (the sweeper collects them as garbage).
async fn staged_bytes_go(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !staged(app).is_empty() {
        assert!(
            Instant::now() < deadline,
            "staged bytes stay: {:?}",
            staged(app)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn chat_usage(app: &TestApp, chat: &str) -> Value {
    let r = app
        .api(Method::GET, &format!("/v1/chats/{chat}/usage"))
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

#[tokio::test]
async fn tickets_need_the_token_and_a_member_and_the_tus_route_answers_any_origin() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/v1/chats/c1/upload-tickets"))
        .json(&json!({"user": "u1"}))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = app
        .api(Method::POST, "/v1/chats/c1/upload-tickets")
        .json(&json!({"user": "stranger"}))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "not_a_member").await;
    app.add_member("c1", "u1").await;
    for bad in [
        json!({"user": "u1", "ttl_seconds": 0}),
        json!({"user": "u1", "max_bytes": 0}),
        json!({"user": "u1", "ttl_seconds_media": 0}),
    ] {
        let r = app
            .api(Method::POST, "/v1/chats/c1/upload-tickets")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    // The bearer endpoint answers no CORS, not even its preflight.
    let r = app
        .client
        .request(Method::OPTIONS, app.url("/v1/chats/c1/upload-tickets"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    let url = ticket(&app, "c1", "u1", json!({})).await;
    assert!(url.starts_with(&app.url("/v1/tus/")), "{url}");
    let r = app
        .client
        .request(Method::OPTIONS, &url)
        .header("Origin", "https://web.example")
        .header("Access-Control-Request-Method", "PATCH")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let h = r.headers();
    assert_eq!(h["tus-version"], "1.0.0");
    assert_eq!(
        h["tus-extension"],
        "creation,creation-with-upload,expiration,checksum,termination"
    );
    assert_eq!(h["tus-checksum-algorithm"], "sha1,sha256");
    assert!(h["tus-max-size"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    assert_eq!(h["access-control-allow-origin"], "*");
    let allowed = h["access-control-allow-methods"].to_str().unwrap();
    for m in ["POST", "HEAD", "PATCH", "DELETE", "OPTIONS"] {
        assert!(allowed.contains(m), "{allowed}");
    }
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for name in [
        "Upload-Offset",
        "Upload-Checksum",
        "Tus-Resumable",
        "Upload-Metadata",
    ] {
        assert!(allowed.contains(name), "{allowed}");
    }
    // Errors of the tus route are readable cross-origin too.
    let r = head(&app.client, &url).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "not created yet");
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    for name in [
        "Location",
        "Upload-Offset",
        "Upload-Length",
        "Upload-Expires",
        "Tus-Resumable",
        "Tus-Version",
        "Tus-Extension",
        "Tus-Max-Size",
        "Tus-Checksum-Algorithm",
        "Satchel-Media-Id",
        "Retry-After",
        "RateLimit",
        "RateLimit-Policy",
    ] {
        assert!(exposed.contains(name), "{exposed}");
    }
}

#[tokio::test]
async fn an_upload_in_chunks_becomes_the_media_a_post_would_make() {
    let app = spawn_app().await;
    let photo = fixture("photo.jpg");
    let url = ticket(&app, "c1", "u1", json!({})).await;
    create(&app.client, &url, photo.len()).await;
    assert_eq!(offset(&app.client, &url).await, 0);

    // One byte, then a chunk with a SHA-1 checksum, then the rest with a SHA-256 one.
    let r = patch(&app.client, &url, 0, &photo[..1]).await;
    assert_eq!(status_of(&r), (StatusCode::NO_CONTENT, None));
    assert_eq!(header_u64(&r, "upload-offset"), 1);
    let cut = photo.len() / 2;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sha1 = {
        use sha1::Digest;
        b64.encode(sha1::Sha1::digest(&photo[1..cut]))
    };
    let r = tus(&app.client, Method::PATCH, &url)
        .header("Upload-Offset", "1")
        .header("Content-Type", OCTETS)
        .header("Upload-Checksum", format!("sha1 {sha1}"))
        .body(photo[1..cut].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&r, "upload-offset"), cut as u64);
    let sha256 = {
        use sha2::Digest;
        b64.encode(sha2::Sha256::digest(&photo[cut..]))
    };
    let r = tus(&app.client, Method::PATCH, &url)
        .header("Upload-Offset", cut.to_string())
        .header("Content-Type", OCTETS)
        .header("Upload-Checksum", format!("sha256 {sha256}"))
        .body(photo[cut..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&r, "upload-offset"), photo.len() as u64);
    let id = r.headers()["satchel-media-id"].to_str().unwrap().to_owned();

    let media = app.wait_processed(&id).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert_eq!(media["chat_id"], "c1");
    assert_eq!(media["uploader"], "u1");
    assert_eq!(media["filename"], "notes.bin", "Upload-Metadata's filename");
    assert_eq!(media["uploaded_sha256"], sha256_hex(&photo));
    // The same bytes through POST /media: the same media, but for its id.
    let direct = app.upload_ok("c1", "u1", "notes.bin", photo.clone()).await;
    let direct = app.wait_processed(direct["id"].as_str().unwrap()).await;
    for field in [
        "kind",
        "mime",
        "size",
        "sha256",
        "uploaded_sha256",
        "metadata",
    ] {
        assert_eq!(media[field], direct[field], "{field}");
    }
    let names = |m: &Value| {
        m["variants"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&media), names(&direct));
    assert!(!names(&media).is_empty());

    // A finished upload keeps answering HEAD, with its media; it takes no more bytes.
    let r = head(&app.client, &url).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_u64(&r, "upload-offset"), photo.len() as u64);
    assert_eq!(r.headers()["satchel-media-id"].to_str().unwrap(), id);
    let r = patch(&app.client, &url, photo.len(), b"x").await;
    assert_code(r, StatusCode::CONFLICT, "offset_mismatch").await;
    staged_bytes_go(&app).await;
}

#[tokio::test]
async fn creation_with_upload_of_the_whole_body_answers_the_media_and_the_ticket_wins_the_name() {
    let app = spawn_app().await;
    let url = ticket(
        &app,
        "c1",
        "u1",
        json!({"filename": "named-by-backend.bin"}),
    )
    .await;
    let bytes = blob(70_000);
    let r = tus(&app.client, Method::POST, &url)
        .header("Upload-Length", bytes.len().to_string())
        .header("Upload-Metadata", "filename Y2xpZW50LmJpbg==")
        .header("Content-Type", OCTETS)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header_u64(&r, "upload-offset"), bytes.len() as u64);
    let media = made(&app, &r).await;
    assert_eq!(media["filename"], "named-by-backend.bin");
    assert_eq!(media["sha256"], sha256_hex(&bytes));
    assert_eq!(media["status"], "ready");
    // A ticket is for one upload.
    let r = create_with(&app.client, &url, "10").await;
    assert_code(r, StatusCode::CONFLICT, "upload_exists").await;
}

#[tokio::test]
async fn hostile_chunks_change_nothing() {
    let app = spawn_app_with(&[("SATCHEL_MAX_UPLOAD_BYTES", "1000000")]).await;
    let url = ticket(&app, "c1", "u1", json!({"max_bytes": 500_000})).await;
    // Over the ticket's max_bytes, over max_upload_bytes: refused before anything exists.
    for length in ["500001", "1000001"] {
        let r = create_with(&app.client, &url, length).await;
        assert_code(r, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    }
    let r = app
        .client
        .post(&url)
        .header("Upload-Length", "10")
        .send()
        .await
        .unwrap();
    assert_code(
        r,
        StatusCode::PRECONDITION_FAILED,
        "unsupported_tus_version",
    )
    .await;
    let r = create_with(&app.client, &url, "-5").await;
    assert_code(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let bytes = blob(100_000);
    create(&app.client, &url, bytes.len()).await;
    patch(&app.client, &url, 0, &bytes[..40_000]).await;

    // The wrong offset, either way.
    for wrong in [0, 39_999, 40_001] {
        let r = patch(&app.client, &url, wrong, &bytes[wrong..wrong + 10]).await;
        assert_code(r, StatusCode::CONFLICT, "offset_mismatch").await;
    }
    // A checksum that lies: the chunk is discarded.
    let r = tus(&app.client, Method::PATCH, &url)
        .header("Upload-Offset", "40000")
        .header("Content-Type", OCTETS)
        .header("Upload-Checksum", "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")
        .body(bytes[40_000..60_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_code(
        r,
        reqwest::StatusCode::from_u16(460).unwrap(),
        "checksum_mismatch",
    )
    .await;
    assert_eq!(offset(&app.client, &url).await, 40_000);
    // An unknown algorithm.
    let r = tus(&app.client, Method::PATCH, &url)
        .header("Upload-Offset", "40000")
        .header("Content-Type", OCTETS)
        .header("Upload-Checksum", "md5 AAAAAAAAAAAAAAAAAAAAAA==")
        .body(bytes[40_000..60_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_code(r, StatusCode::BAD_REQUEST, "bad_request").await;
    // Past Upload-Length: announced, and chunked (known only as it streams).
    let r = patch(&app.client, &url, 40_000, &blob(60_001)).await;
    assert_code(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = patch_chunked(&app.client, &url, 40000, blob(60_001), 4096).await;
    assert_code(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(offset(&app.client, &url).await, 40_000, "nothing appended");
    // Not the tus content type.
    let r = tus(&app.client, Method::PATCH, &url)
        .header("Upload-Offset", "40000")
        .header("Content-Type", "application/octet-stream")
        .body(bytes[40_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_code(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    // A ticket tampered with (another chat, a larger max_bytes) or cut short.
    let (payload, mac) = url.rsplit_once('/').unwrap().1.split_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    claims["chat"] = json!("c2");
    let forged = format!(
        "{}/v1/tus/{}.{mac}",
        app.url(""),
        b64.encode(serde_json::to_vec(&claims).unwrap())
    );
    let truncated = &url[..url.len() - 3];
    for bad in [forged.as_str(), truncated, &app.url("/v1/tus/nonsense")] {
        let r = patch(&app.client, bad, 40_000, &bytes[40_000..]).await;
        assert_code(r, StatusCode::NOT_FOUND, "invalid_ticket").await;
        let r = create_with(&app.client, bad, "10").await;
        assert_code(r, StatusCode::NOT_FOUND, "invalid_ticket").await;
    }

    // After all that, the honest rest completes, with exactly the honest bytes.
    let r = patch(&app.client, &url, 40_000, &bytes[40_000..]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let media = made(&app, &r).await;
    assert_eq!(media["sha256"], sha256_hex(&bytes));
}

#[tokio::test]
async fn an_expired_ticket_creates_nothing_but_a_created_upload_outlives_its_ticket() {
    let app = spawn_app().await;
    let late = ticket(&app, "c1", "u1", json!({"ttl_seconds": 1})).await;
    let early = ticket(&app, "c1", "u1", json!({"ttl_seconds": 2})).await;
    let bytes = blob(10_000);
    create(&app.client, &early, bytes.len()).await;
    patch(&app.client, &early, 0, &bytes[..5000]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = create_with(&app.client, &late, "10").await;
    assert_code(r, StatusCode::NOT_FOUND, "invalid_ticket").await;
    // Upload-Expires governs the created upload, not the ticket.
    let r = patch(&app.client, &early, 5000, &bytes[5000..]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().contains_key("satchel-media-id"));
    // Finished, it answers HEAD only while its ticket lasts.
    let r = head(&app.client, &early).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_upload_not_finished_in_time_expires_with_its_bytes() {
    let app = spawn_app_with(&[("SATCHEL_TUS_EXPIRY_SECONDS", "2")]).await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    create(&app.client, &url, 10_000).await;
    patch(&app.client, &url, 0, &blob(4000)).await;
    assert!(!staged(&app).is_empty(), "bytes are staged");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = patch(&app.client, &url, 4000, &blob(6000)).await;
    assert_code(r, StatusCode::GONE, "upload_expired").await;
    staged_bytes_go(&app).await;
    let r = head(&app.client, &url).await;
    assert_eq!(r.status(), StatusCode::GONE);
}

#[tokio::test]
async fn termination_removes_the_bytes_and_spends_the_ticket() {
    let app = spawn_app().await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    create(&app.client, &url, 50_000).await;
    patch(&app.client, &url, 0, &blob(20_000)).await;
    let r = tus(&app.client, Method::DELETE, &url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = patch(&app.client, &url, 20_000, &blob(30_000)).await;
    assert_code(r, StatusCode::NOT_FOUND, "invalid_ticket").await;
    let r = create_with(&app.client, &url, "10").await;
    assert_code(r, StatusCode::NOT_FOUND, "invalid_ticket").await;
    staged_bytes_go(&app).await;
    assert_eq!(chat_usage(&app, "c1").await["media"], 0);
}

#[tokio::test]
async fn a_member_who_left_cannot_go_on_and_their_bytes_go() {
    let app = spawn_app().await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    create(&app.client, &url, 30_000).await;
    patch(&app.client, &url, 0, &blob(10_000)).await;
    app.remove_member("c1", "u1").await;
    let r = patch(&app.client, &url, 10_000, &blob(20_000)).await;
    assert_code(r, StatusCode::FORBIDDEN, "not_a_member").await;
    // Coming back does not revive it: the ticket is spent.
    app.add_member("c1", "u1").await;
    let r = head(&app.client, &url).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    staged_bytes_go(&app).await;
    assert_eq!(chat_usage(&app, "c1").await["media"], 0);
}

#[tokio::test]
async fn an_erased_chat_takes_its_uploads_and_the_next_members_never_see_them() {
    let app = spawn_app().await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    let bytes = blob(30_000);
    create(&app.client, &url, bytes.len()).await;
    patch(&app.client, &url, 0, &bytes[..10_000]).await;
    app.erase_chat("c1").await;
    // The chat is used again, by the same user.
    app.upload_ok("c1", "u1", "new.bin", blob(100)).await;
    let r = patch(&app.client, &url, 10_000, &bytes[10_000..]).await;
    assert_code(r, StatusCode::GONE, "gone").await;
    let r = head(&app.client, &url).await;
    assert_eq!(r.status(), StatusCode::GONE);
    let usage = chat_usage(&app, "c1").await;
    assert_eq!(usage["media"], 1, "only the new chat's own upload: {usage}");
    assert_eq!(usage["bytes"], 100);
    staged_bytes_go(&app).await;
}

#[tokio::test]
async fn the_quota_filled_meanwhile_refuses_the_next_chunk_until_room_is_made() {
    let app = spawn_app_with(&[("SATCHEL_MAX_CHAT_BYTES", "100000")]).await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    let bytes = blob(60_000);
    // Over the room already: refused at creation.
    let r = create_with(&app.client, &url, "100001").await;
    assert_code(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    create(&app.client, &url, bytes.len()).await;
    patch(&app.client, &url, 0, &bytes[..30_000]).await;
    // Meanwhile another upload takes the room.
    let other = app.upload_ok("c1", "u2", "other.bin", blob(60_000)).await;
    let r = patch(&app.client, &url, 30_000, &bytes[30_000..]).await;
    assert_code(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    let usage = chat_usage(&app, "c1").await;
    assert_eq!(
        (usage["bytes"].as_u64(), usage["media"].as_u64()),
        (Some(60_000), Some(1))
    );
    assert_eq!(offset(&app.client, &url).await, 30_000, "nothing appended");
    // The other media is unsent: there is room again, and the upload goes on.
    let r = app
        .api(
            Method::DELETE,
            &format!("/v1/media/{}", other["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = patch(&app.client, &url, 30_000, &bytes[30_000..]).await;
    assert!(status_of(&r).1.is_some(), "a media: {:?}", r.status());
    assert_eq!(chat_usage(&app, "c1").await["bytes"], 60_000);
    staged_bytes_go(&app).await;
}

#[tokio::test]
async fn a_second_patch_while_one_streams_is_busy_and_changes_nothing() {
    let app = spawn_app().await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    let bytes = blob(200_000);
    create(&app.client, &url, bytes.len()).await;
    // The first PATCH sends half its body, then waits.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tx.send(Ok(bytes[..50_000].to_vec())).await.unwrap();
    let slow = tokio::spawn({
        let (client, url) = (app.client.clone(), url.clone());
        async move {
            tus(&client, Method::PATCH, &url)
                .header("Upload-Offset", "0")
                .header("Content-Type", OCTETS)
                .header("Content-Length", "100000")
                .body(held_body(rx))
                .send()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = patch(&app.client, &url, 0, &bytes[..100_000]).await;
    assert_code(r, StatusCode::CONFLICT, "upload_busy").await;
    let r = tus(&app.client, Method::DELETE, &url).send().await.unwrap();
    assert_code(r, StatusCode::CONFLICT, "upload_busy").await;
    tx.send(Ok(bytes[50_000..100_000].to_vec())).await.unwrap();
    drop(tx);
    let r = slow.await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&r, "upload-offset"), 100_000);
    let r = patch(&app.client, &url, 100_000, &bytes[100_000..]).await;
    let media = made(&app, &r).await;
    assert_eq!(media["sha256"], sha256_hex(&bytes));
}

#[tokio::test]
async fn a_connection_cut_mid_chunk_keeps_what_arrived_and_the_upload_resumes() {
    let app = spawn_app().await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    let bytes = blob(300_000);
    create(&app.client, &url, bytes.len()).await;
    // Headers announcing the whole body, 120 000 bytes of it, then the socket closes.
    let path = url.strip_prefix(&app.url("")).unwrap();
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: {OCTETS}\r\nContent-Length: {}\r\n\r\n",
        app.addr,
        bytes.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(&bytes[..120_000]).await.unwrap();
    socket.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(socket);
    // What arrived is kept once the server has seen the cut (and let the upload go).
    let deadline = Instant::now() + Duration::from_secs(10);
    let kept = loop {
        let r = head(&app.client, &url).await;
        let kept = header_u64(&r, "upload-offset");
        if kept > 0 {
            break kept;
        }
        assert!(Instant::now() < deadline, "nothing kept of the cut chunk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(kept <= 120_000, "{kept}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = patch(&app.client, &url, kept as usize, &bytes[kept as usize..]).await;
        if r.status() != StatusCode::CONFLICT || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let media = made(&app, &r).await;
    assert_eq!(
        media["sha256"],
        sha256_hex(&bytes),
        "the file, whole and once"
    );
}

#[tokio::test]
async fn thousands_of_tiny_chunks_cost_a_bounded_few_catalog_writes_each() {
    let app = spawn_app().await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    // On S3 each tiny chunk rewrites the tail object (a GET, a PUT, a DELETE): fewer there.
    let chunks = if app.s3.is_some() { 300 } else { 1000 };
    let bytes = blob(chunks * 16);
    create(&app.client, &url, bytes.len()).await;
    let writes_before = catalog_writes(&app).await;
    let started = Instant::now();
    let mut id = None;
    for (i, piece) in bytes.chunks(16).enumerate() {
        let r = patch(&app.client, &url, i * 16, piece).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        id = status_of(&r).1;
    }
    let took = started.elapsed();
    let media: Value = app
        .media(&id.expect("the media"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(media["sha256"], sha256_hex(&bytes));
    eprintln!(
        "{chunks} chunks of 16 bytes on {}: {:.1} ms each",
        app.storage_name(),
        took.as_secs_f64() * 1000.0 / chunks as f64
    );
    if let (Some(before), Some(after)) = (writes_before, catalog_writes(&app).await) {
        let per_chunk = (after - before) as f64 / chunks as f64;
        eprintln!("tus_uploads row writes per chunk: {per_chunk:.2}");
        // A lease and its release with the offset; the completion adds a handful once.
        assert!(per_chunk <= 2.1, "{per_chunk} row writes per chunk");
    }
}

/// PostgreSQL's count of row updates of `tus_uploads` in the test's database (`None` on
/// SQLite, which keeps no such statistics).
async fn catalog_writes(app: &TestApp) -> Option<i64> {
    let url = &app.database.as_ref()?.url;
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    // A backend reports its statistics at the latest when it has been idle for 10 s.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let n: i64 = sqlx::query_scalar(
        "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'tus_uploads'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    Some(n)
}

#[tokio::test]
async fn tickets_and_tus_requests_have_their_own_rate_limits() {
    let app = spawn_app_with(&[
        ("SATCHEL_RATE_UPLOAD_TICKETS_PER_USER", "2/60s"),
        ("SATCHEL_RATE_TUS_REQUESTS_PER_UPLOAD", "3/60s"),
    ])
    .await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    ticket(&app, "c1", "u1", json!({})).await;
    let r = app
        .api(Method::POST, "/v1/chats/c1/upload-tickets")
        .json(&json!({"user": "u1"}))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .contains("upload_tickets_per_user"));
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another user's tickets are not this one's.
    ticket(&app, "c1", "u2", json!({})).await;

    // Creation, a PATCH, a HEAD; the fourth request of the upload is refused.
    let bytes = blob(1000);
    create(&app.client, &url, bytes.len()).await;
    patch(&app.client, &url, 0, &bytes[..500]).await;
    assert_eq!(offset(&app.client, &url).await, 500);
    let r = patch(&app.client, &url, 500, &bytes[500..]).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_code(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn patches_racing_at_one_offset_append_once_and_the_offset_never_goes_back() {
    let app = spawn_app().await;
    for _ in 0..20 {
        let url = ticket(&app, "c1", "u1", json!({})).await;
        create(&app.client, &url, 1000).await;
        let racing = (1..=4).map(|n| {
            let (client, url) = (app.client.clone(), url.clone());
            tokio::spawn(async move {
                let r = patch(&client, &url, 0, &vec![b'a' + n as u8; n]).await;
                let offset = r
                    .headers()
                    .get("upload-offset")
                    .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                (r.status(), offset)
            })
        });
        let answers = futures_util::future::join_all(racing).await;
        let accepted: Vec<u64> = answers
            .iter()
            .map(|a| a.as_ref().unwrap())
            .filter(|(status, _)| *status == StatusCode::NO_CONTENT)
            .map(|(_, offset)| offset.unwrap())
            .collect();
        assert_eq!(accepted.len(), 1, "{answers:?}");
        assert_eq!(offset(&app.client, &url).await, accepted[0], "{answers:?}");
        for (status, _) in answers.iter().map(|a| a.as_ref().unwrap()) {
            assert!(
                [StatusCode::NO_CONTENT, StatusCode::CONFLICT].contains(status),
                "{answers:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_malformed_header_on_creation_creates_nothing() {
    let app = spawn_app().await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    let with = |name: &'static str, value: &'static str| {
        tus(&app.client, Method::POST, &url)
            .header("Upload-Length", "5")
            .header("Content-Type", OCTETS)
            .header(name, value)
            .body("hello")
    };
    for (name, value) in [
        ("Upload-Checksum", "md5 AAAA"),
        ("Upload-Checksum", "sha1 !!"),
        ("Upload-Metadata", "filename !!!"),
    ] {
        let r = with(name, value).send().await.unwrap();
        assert_code(r, StatusCode::BAD_REQUEST, "bad_request").await;
        assert_eq!(
            head(&app.client, &url).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    // Two Upload-Length headers: refused, whichever a proxy would read.
    let r = tus(&app.client, Method::POST, &url)
        .header("Upload-Length", "5")
        .header("Upload-Length", "99999999")
        .send()
        .await
        .unwrap();
    assert_code(r, StatusCode::BAD_REQUEST, "bad_request").await;
    // The same for Upload-Offset, on an upload that exists.
    let other = ticket(&app, "c1", "u1", json!({})).await;
    create(&app.client, &other, 5).await;
    let r = tus(&app.client, Method::PATCH, &other)
        .header("Upload-Offset", "0")
        .header("Upload-Offset", "3")
        .header("Content-Type", OCTETS)
        .body("hel")
        .send()
        .await
        .unwrap();
    assert_code(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(offset(&app.client, &other).await, 0);
    // A filename past 1 KiB, in the metadata or in the ticket.
    use base64::Engine;
    let long = base64::engine::general_purpose::STANDARD.encode("n".repeat(1025));
    let r = tus(&app.client, Method::POST, &url)
        .header("Upload-Length", "5")
        .header("Upload-Metadata", format!("filename {long}"))
        .send()
        .await
        .unwrap();
    assert_code(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = app
        .api(Method::POST, "/v1/chats/c1/upload-tickets")
        .json(&json!({"user": "u1", "filename": "€".repeat(400)}))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    // The ticket is not spent by any of that.
    let r = with("Upload-Metadata", "filename b2suYmlu")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let media = made(&app, &r).await;
    assert_eq!(media["filename"], "ok.bin");
}

#[tokio::test]
async fn a_ticket_named_with_control_characters_still_opens() {
    let app = spawn_app().await;
    let name = format!("{}photo.jpg", "\u{1}".repeat(600));
    let url = ticket(&app, "c1", "u1", json!({"filename": name})).await;
    let r = tus(&app.client, Method::POST, &url)
        .header("Upload-Length", "5")
        .header("Content-Type", OCTETS)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let media = made(&app, &r).await;
    assert_eq!(media["filename"], "photo.jpg");
}

#[tokio::test]
async fn a_ticket_and_its_upload_end_with_the_membership_they_began_in() {
    let app = spawn_app().await;
    // Left and came back before the upload was created.
    let url = ticket(&app, "c1", "u1", json!({})).await;
    app.remove_member("c1", "u1").await;
    app.add_member("c1", "u1").await;
    let r = create_with(&app.client, &url, "10").await;
    assert_code(r, StatusCode::FORBIDDEN, "not_a_member").await;
    // The chat erased and made again, with the same member.
    let url = ticket(&app, "c1", "u1", json!({})).await;
    app.erase_chat("c1").await;
    app.add_member("c1", "u1").await;
    let r = create_with(&app.client, &url, "10").await;
    assert_code(r, StatusCode::FORBIDDEN, "not_a_member").await;
    // Left and came back between two chunks.
    let url = ticket(&app, "c1", "u1", json!({})).await;
    create(&app.client, &url, 20).await;
    patch(&app.client, &url, 0, &blob(10)).await;
    app.remove_member("c1", "u1").await;
    app.add_member("c1", "u1").await;
    let r = patch(&app.client, &url, 10, &blob(10)).await;
    assert_code(r, StatusCode::FORBIDDEN, "not_a_member").await;
    assert_eq!(chat_usage(&app, "c1").await["media"], 0);
}

#[tokio::test]
async fn x_http_method_override_is_the_method() {
    let app = spawn_app().await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    create(&app.client, &url, 10).await;
    let r = tus(&app.client, Method::POST, &url)
        .header("X-HTTP-Method-Override", "PATCH")
        .header("Upload-Offset", "0")
        .header("Content-Type", OCTETS)
        .body(blob(4))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&r, "upload-offset"), 4);
    let r = tus(&app.client, Method::POST, &url)
        .header("X-HTTP-Method-Override", "HEAD")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_u64(&r, "upload-offset"), 4);
    let r = tus(&app.client, Method::POST, &url)
        .header("X-HTTP-Method-Override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        head(&app.client, &url).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bytes_staged_in_unfinished_uploads_count_against_the_quota() {
    let app = spawn_app_with(&[("SATCHEL_MAX_CHAT_BYTES", "100000")]).await;
    // One upload stages 60 000 bytes and stops there.
    let parked = ticket(&app, "c1", "u1", json!({})).await;
    create(&app.client, &parked, 90_000).await;
    patch(&app.client, &parked, 0, &blob(60_000)).await;
    // Another cannot be created for more than the 40 000 left, by anyone in the chat.
    let other = ticket(&app, "c1", "u2", json!({})).await;
    let r = create_with(&app.client, &other, "40001").await;
    assert_code(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    create(&app.client, &other, 40_000).await;
    // Nor can the first take more than its room once the second has staged its part.
    patch(&app.client, &other, 0, &blob(30_000)).await;
    let r = patch(&app.client, &parked, 60_000, &blob(10_001)).await;
    assert_code(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(
        offset(&app.client, &parked).await,
        60_000,
        "nothing appended"
    );
    // Chunked, known only as it streams: the same.
    let r = patch_chunked(&app.client, &parked, 60000, blob(10_001), 1000).await;
    assert_code(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(
        offset(&app.client, &parked).await,
        60_000,
        "nothing appended"
    );
    // What fits goes on, and the second upload completes.
    let r = patch(&app.client, &other, 30_000, &blob(40_000)[30_000..]).await;
    assert!(status_of(&r).1.is_some(), "the second upload is a media");
    assert_eq!(chat_usage(&app, "c1").await["bytes"], 40_000);
}
