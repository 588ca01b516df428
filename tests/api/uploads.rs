use crate::helpers::*;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_photo_upload_is_stored_sniffed_and_processed_into_every_variant() {
    let app = spawn_app().await;
    let bytes = fixture("photo.jpg");
    let media = app
        .upload_ok("c1", "u1", "IMG_0001.jpg", bytes.clone())
        .await;
    assert_eq!(media["chat_id"], "c1");
    assert_eq!(media["uploader"], "u1");
    assert_eq!(media["filename"], "IMG_0001.jpg");
    assert_eq!(media["kind"], "image");
    assert_eq!(media["mime"], "image/jpeg");
    // photo.jpg's GPS IFD is zeroed in place at ingest: the same size, another digest.
    assert_eq!(media["size"], bytes.len());
    assert_eq!(media["uploaded_sha256"], sha256_hex(&bytes));
    assert_ne!(media["sha256"], sha256_hex(&bytes));
    assert_eq!(media["status"], "processing");
    assert_eq!(media["expires_at"], Value::Null);
    let id = media["id"].as_str().unwrap();
    assert_eq!(id.len(), 26, "a ULID");
    assert!(media["created_at"].as_str().unwrap().ends_with('Z'));

    let done = app.wait_processed(id).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["error"], Value::Null);
    // photo.jpg is 640x480 with EXIF orientation 6: displayed upright it is 480x640.
    assert_eq!(done["metadata"]["width"], 480);
    assert_eq!(done["metadata"]["height"], 640);
    let thumb = &done["variants"]["thumbnail"];
    assert_eq!(thumb["width"], 240);
    assert_eq!(thumb["height"], 320);
    assert_eq!(done["variants"]["preview"]["height"], 640, "never upscaled");
    assert!(done["variants"]["blurred"]["size"].as_u64().unwrap() > 0);
    assert!(!done["placeholder"]["blurhash"].as_str().unwrap().is_empty());
    assert!(!done["placeholder"]["thumbhash"]
        .as_str()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn multipart_uploads_take_the_part_named_file() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let bytes = fixture("photo.png");
    let form = reqwest::multipart::Form::new()
        .text("caption", "ignored")
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name("pic.png"),
        );
    let r = app
        .api(reqwest::Method::POST, "/v1/chats/c1/media?user=u1")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let media: Value = r.json().await.unwrap();
    assert_eq!(media["filename"], "pic.png");
    assert_eq!(media["mime"], "image/png");
    assert_eq!(media["size"], bytes.len());
    assert_eq!(media["sha256"], sha256_hex(&bytes));
}

#[tokio::test]
async fn a_matching_content_digest_is_accepted_and_a_wrong_one_stores_nothing() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let bytes = fixture("photo.jpg");
    let digest = |b: &[u8]| {
        use sha2::Digest;
        let d = sha2::Sha256::digest(b);
        format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(d)
        )
    };
    let r = app
        .upload_request("c1", "u1", "a.jpg")
        .header("content-digest", digest(&bytes))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let r = app
        .upload_request("c1", "u1", "b.jpg")
        .header("content-digest", digest(b"something else"))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "digest_mismatch").await;
    assert_eq!(app.stored_originals(), 1, "only the first upload is stored");
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_first_upload() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let send = |key: &'static str| {
        app.upload_request("c1", "u1", "a.bin")
            .header("idempotency-key", key)
            .body(b"hello, idempotent world".to_vec())
            .send()
    };
    let first = send("k1").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = send("k1").await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let other = send("k2").await.unwrap();
    assert_eq!(other.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn two_identical_requests_at_once_store_one_copy() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let send = || {
        app.upload_request("c1", "u1", "a.bin")
            .header("idempotency-key", "race")
            .body(vec![42u8; 256 * 1024])
            .send()
    };
    let (a, b) = tokio::join!(send(), send());
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 201]);
    let a: Value = a.json().await.unwrap();
    let b: Value = b.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    assert_eq!(app.stored_originals(), 1);
}

#[tokio::test]
async fn an_empty_body_is_refused() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let r = app.upload("c1", "u1", "empty", Vec::new()).await;
    assert_error(r, StatusCode::BAD_REQUEST, "empty_file").await;
    assert!(app.stored_files().is_empty());
}

#[tokio::test]
async fn a_non_member_cannot_upload_and_nothing_is_stored() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let r = app
        .upload("c1", "stranger", "x.jpg", fixture("photo.jpg"))
        .await;
    assert_error(r, StatusCode::FORBIDDEN, "not_a_member").await;
    assert!(app.stored_files().is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_while_streaming_and_leaves_nothing() {
    let app = spawn_app_with(&[("SATCHEL_MAX_UPLOAD_BYTES", "1048576")]).await;
    app.add_member("c1", "u1").await;
    // Chunked, so the limit can only be found by counting the bytes as they arrive.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![7u8; 64 * 1024])).collect();
    let r = app
        .upload_request("c1", "u1", "big.bin")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());

    // A declared length over the limit is refused before any byte is read.
    let r = app.upload("c1", "u1", "big.bin", vec![0u8; 1048577]).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    assert!(app.stored_files().is_empty());
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_nothing_behind() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/chats/c1/media?user=u1&filename=cut.bin HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: 10000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![1u8; 300_000]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    // The server notices, discards the temp file and stays healthy.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !app.stored_files().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            app.stored_files()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = app.upload("c1", "u1", "ok.bin", b"fine".to_vec()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn html_sent_as_png_is_a_plain_file_served_as_an_attachment() {
    let app = spawn_app().await;
    let media = app
        .upload_ok("c1", "u1", "cute.png", fixture("html-as.png"))
        .await;
    assert_eq!(media["kind"], "file");
    assert_eq!(media["mime"], "application/octet-stream");
    assert_eq!(media["status"], "ready", "files are never processed");
    let link = app
        .link(media["id"].as_str().unwrap(), "u1", "original")
        .await;
    let r = app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let disposition = r.headers()["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["content-security-policy"], "sandbox");
}

#[tokio::test]
async fn a_slow_raw_tcp_upload_still_completes() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let body = b"slowly but surely";
    let head = format!(
        "POST /v1/chats/c1/media?user=u1&filename=s.txt HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(4) {
        stream.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
}

/// A right-to-left override makes `invoice<RLO>fdp.exe` display as `invoiceexe.pdf`; format
/// characters never reach the stored filename (nor a download's Content-Disposition).
#[tokio::test]
async fn bidi_and_other_format_characters_are_removed_from_filenames() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let r = app
        .upload_request("c1", "u1", "invoice\u{202E}fdp.exe\u{2066}\u{200B}")
        .body(b"not media".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let media: Value = r.json().await.unwrap();
    assert_eq!(media["filename"], "invoicefdp.exe");
}

/// Review finding 9: an idempotency key names one upload. Another uploader reusing it, or the
/// same uploader sending other bytes, is refused with `409 idempotency_conflict`, nothing of it
/// stored; it never gets the first upload's media back.
#[tokio::test]
async fn a_reused_idempotency_key_for_another_upload_is_a_conflict() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    app.add_member("c1", "u2").await;
    let send = |user: &str, body: Vec<u8>, digest: bool| {
        let mut r = app
            .upload_request("c1", user, "x.bin")
            .header("idempotency-key", "k-7");
        if digest {
            let d = base64::engine::general_purpose::STANDARD
                .encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
            r = r.header("content-digest", format!("sha-256=:{d}:"));
        }
        r.body(body).send()
    };
    let first = send("u1", fixture("photo.jpg"), false).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    // Another uploader: refused before a byte is stored, with or without a digest.
    let r = send("u2", fixture("voice.mp3"), false).await.unwrap();
    assert_error(r, StatusCode::CONFLICT, "idempotency_conflict").await;
    // The same uploader, other bytes: known from the digest at once...
    let r = send("u1", fixture("voice.mp3"), true).await.unwrap();
    assert_error(r, StatusCode::CONFLICT, "idempotency_conflict").await;
    // ...and a true retry still gets the first media.
    let r = send("u1", fixture("photo.jpg"), true).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.stored_originals(), 1);
}

/// An Ogg Opus voice note is `audio/ogg` (RFC 7845), as Media object and as download.
#[tokio::test]
async fn an_ogg_opus_voice_note_is_audio_ogg() {
    let app = spawn_app().await;
    let media = app
        .upload_ok("c1", "u1", "note.opus", fixture("voice.opus"))
        .await;
    assert_eq!(media["kind"], "audio");
    assert_eq!(media["mime"], "audio/ogg");
    let link = app
        .link(media["id"].as_str().unwrap(), "u1", "original")
        .await;
    let r = app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "audio/ogg");
}
