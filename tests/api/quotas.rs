//! Storage quotas (issue 14, part 4): `max_chat_bytes` and `max_user_bytes` (originals and
//! variants), accounted in the catalog as media are added and erased, checked from
//! `Content-Length` before a byte is stored, while streaming otherwise, and again atomically
//! when the media is recorded; `GET /v1/chats/{chat}/usage`.

use crate::helpers::*;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};

/// `n` bytes that sniff as nothing in particular: kind `file`, ready at once, no variants.
fn blob(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ 0xa5).collect()
}

/// `GET /v1/chats/{chat}/usage` as `(bytes, media)`.
async fn usage(app: &TestApp, chat: &str) -> (u64, u64) {
    let r = app
        .api(Method::GET, &format!("/v1/chats/{chat}/usage"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    (
        body["bytes"].as_u64().expect("bytes"),
        body["media"].as_u64().expect("media"),
    )
}

/// The refusals counted in `satchel_quota_refusals_total{scope}`.
async fn refusals(app: &TestApp, scope: &str) -> u64 {
    let text = app.metrics().await;
    let prefix = format!("satchel_quota_refusals_total{{scope=\"{scope}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// A chunked body (no Content-Length): `bytes` in 16 KiB pieces.
fn chunked(bytes: Vec<u8>) -> reqwest::Body {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

#[tokio::test]
async fn a_chat_with_nothing_uses_nothing_and_usage_needs_the_token() {
    let app = spawn_app().await;
    assert_eq!(usage(&app, "never-used").await, (0, 0));
    let r = app
        .client
        .get(app.url("/v1/chats/c1/usage"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = app
        .api(Method::GET, "/v1/chats/bad%20id/usage")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_id").await;
}

#[tokio::test]
async fn an_announced_length_over_the_chat_quota_is_refused_before_a_byte_is_stored() {
    let app = spawn_app_with(&[("SATCHEL_MAX_CHAT_BYTES", "100000")]).await;
    app.upload_ok("c1", "u1", "a.bin", blob(60_000)).await;
    assert_eq!(usage(&app, "c1").await, (60_000, 1));
    let files = app.stored_files();

    // With Content-Length: refused from the announced length.
    let r = app.upload("c1", "u1", "b.bin", blob(50_000)).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(app.stored_files(), files, "nothing more stored");
    assert_eq!(app.stored_originals(), 1);
    assert_eq!(usage(&app, "c1").await, (60_000, 1), "usage unchanged");
    assert_eq!(refusals(&app, "chat").await, 1);

    // What still fits, fits exactly.
    app.upload_ok("c1", "u1", "c.bin", blob(40_000)).await;
    assert_eq!(usage(&app, "c1").await, (100_000, 2));
    let r = app.upload("c1", "u1", "d.bin", blob(1)).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(app.stored_originals(), 2);
}

#[tokio::test]
async fn a_chunked_body_over_the_quota_is_cut_mid_stream_and_leaves_nothing() {
    let app = spawn_app_with(&[
        ("SATCHEL_MAX_CHAT_BYTES", "100000"),
        ("SATCHEL_UPLOAD_IDLE_TIMEOUT_SECONDS", "30"),
    ])
    .await;
    app.upload_ok("c1", "u1", "a.bin", blob(60_000)).await;
    let files = app.stored_files();

    let r = app
        .upload_request("c1", "u1", "b.bin")
        .body(chunked(blob(50_000)))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(app.stored_files(), files);
    assert_eq!(usage(&app, "c1").await, (60_000, 1));

    // Mid-stream: a body that sends past the quota and then stalls (never ends) is answered
    // long before the idle timeout, so the refusal did not wait for its end.
    let head: Vec<Result<Bytes, std::io::Error>> = blob(64 * 1024)
        .chunks(16 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let endless = futures_util::stream::iter(head).chain(futures_util::stream::pending());
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        app.upload_request("c1", "u1", "c.bin")
            .body(reqwest::Body::wrap_stream(endless))
            .send(),
    )
    .await
    .expect("answered before the stream ends")
    .unwrap();
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(app.stored_files(), files);
    assert_eq!(usage(&app, "c1").await, (60_000, 1));
    assert_eq!(refusals(&app, "chat").await, 2);
}

#[tokio::test]
async fn unsending_and_erasing_give_the_quota_back() {
    let app = spawn_app_with(&[("SATCHEL_MAX_CHAT_BYTES", "100000")]).await;
    let first = app.upload_ok("c1", "u1", "a.bin", blob(60_000)).await;
    let r = app.upload("c1", "u1", "b.bin", blob(60_000)).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;

    // Unsend.
    let r = app
        .api(
            Method::DELETE,
            &format!("/v1/media/{}", first["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(usage(&app, "c1").await, (0, 0));
    app.upload_ok("c1", "u1", "b.bin", blob(60_000)).await;
    app.upload_ok("c1", "u1", "c.bin", blob(30_000)).await;
    assert_eq!(usage(&app, "c1").await, (90_000, 2));

    // Chat erase: the chat used again starts from zero.
    app.erase_chat("c1").await;
    assert_eq!(usage(&app, "c1").await, (0, 0));
    app.upload_ok("c1", "u1", "d.bin", blob(100_000)).await;
    assert_eq!(usage(&app, "c1").await, (100_000, 1));
}

#[tokio::test]
async fn variants_count_once_processed_and_only_once() {
    let app = spawn_app().await;
    let photo = fixture("photo.jpg");
    let media = app.upload_ok("c1", "u1", "p.jpg", photo.clone()).await;
    assert_eq!(usage(&app, "c1").await, (photo.len() as u64, 1));
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ready", "{done}");
    let variants: u64 = done["variants"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["size"].as_u64().unwrap())
        .sum();
    assert!(variants > 0);
    assert_eq!(usage(&app, "c1").await, (photo.len() as u64 + variants, 1));

    // Unsending gives back the original and every variant.
    let r = app
        .api(
            Method::DELETE,
            &format!("/v1/media/{}", media["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(usage(&app, "c1").await, (0, 0));
}

#[tokio::test]
async fn variants_may_take_a_chat_past_its_quota_and_then_it_takes_nothing_more() {
    let photo = fixture("photo.jpg");
    let quota = (photo.len() + 10).to_string();
    let app = spawn_app_with(&[("SATCHEL_MAX_CHAT_BYTES", quota.as_str())]).await;
    let media = app.upload_ok("c1", "u1", "p.jpg", photo.clone()).await;
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ready", "{done}");
    let (bytes, _) = usage(&app, "c1").await;
    assert!(
        bytes > photo.len() as u64 + 10,
        "the variants count: {bytes}"
    );
    let r = app.upload("c1", "u1", "b.bin", blob(1)).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
}

#[tokio::test]
async fn the_user_quota_holds_across_chats_and_erasing_a_chat_gives_it_back() {
    let app = spawn_app_with(&[("SATCHEL_MAX_USER_BYTES", "100000")]).await;
    app.upload_ok("c1", "u1", "a.bin", blob(60_000)).await;
    app.add_member("c2", "u1").await;
    let r = app.upload("c2", "u1", "b.bin", blob(50_000)).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    let r = app
        .upload_request("c2", "u1", "b.bin")
        .body(chunked(blob(50_000)))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(usage(&app, "c2").await, (0, 0));
    assert_eq!(refusals(&app, "user").await, 2);
    assert_eq!(app.stored_originals(), 1);

    // Another uploader in the same chats has a quota of their own.
    app.upload_ok("c2", "u2", "c.bin", blob(90_000)).await;

    // Erasing c1 gives u1's bytes back, wherever u1 uploads next.
    app.erase_chat("c1").await;
    app.upload_ok("c2", "u1", "b.bin", blob(100_000)).await;
    assert_eq!(usage(&app, "c2").await, (190_000, 2));
}

#[tokio::test]
async fn two_uploads_that_each_fit_but_not_together_commit_exactly_one() {
    let app = spawn_app_with(&[("SATCHEL_MAX_CHAT_BYTES", "100000")]).await;
    app.add_member("c1", "u1").await;
    let (release, released) = tokio::sync::watch::channel(false);
    // Each body sends a byte, then waits until both uploads have begun (both passed the
    // checks before a byte, both stream with the whole quota left), then the rest: only the
    // catalog's check when recording them can tell them apart.
    let body = |seed: u8| {
        let mut released = released.clone();
        let bytes: Vec<u8> = blob(60_000).into_iter().map(|b| b ^ seed).collect();
        let (first, rest) = (bytes[..1].to_vec(), bytes[1..].to_vec());
        let rest = async move {
            let _ = released.wait_for(|go| *go).await;
            Ok::<_, std::io::Error>(Bytes::from(rest))
        };
        reqwest::Body::wrap_stream(
            futures_util::stream::once(async move { Ok(Bytes::from(first)) })
                .chain(futures_util::stream::once(rest)),
        )
    };
    let a = app.upload_request("c1", "u1", "a.bin").body(body(1)).send();
    let b = app.upload_request("c1", "u1", "b.bin").body(body(2)).send();
    let both = tokio::spawn(async move { tokio::join!(a, b) });
    tokio::time::sleep(Duration::from_millis(700)).await;
    release.send(true).unwrap();
    let (a, b) = both.await.unwrap();
    let mut statuses = vec![a.unwrap(), b.unwrap()];
    statuses.sort_by_key(|r| r.status());
    let refused = statuses.pop().unwrap();
    let accepted = statuses.pop().unwrap();
    assert_eq!(accepted.status(), StatusCode::CREATED);
    assert_error(refused, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(usage(&app, "c1").await, (60_000, 1));
    assert_eq!(app.stored_originals(), 1);
}

#[tokio::test]
async fn usage_written_before_quotas_existed_is_counted_when_the_catalog_is_migrated() {
    let app = spawn_app().await;
    let photo = fixture("photo.jpg");
    let media = app.upload_ok("c1", "u1", "p.jpg", photo.clone()).await;
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    app.upload_ok("c1", "u2", "a.bin", blob(1000)).await;
    app.upload_ok("c2", "u1", "b.bin", blob(2000)).await;
    let before = (usage(&app, "c1").await, usage(&app, "c2").await);
    let variants: u64 = done["variants"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["size"].as_u64().unwrap())
        .sum();
    assert_eq!(before.0, (photo.len() as u64 + variants + 1000, 2));
    assert_eq!(before.1, (2000, 1));

    // Back to the schema before quotas: the accounting and its migration undone.
    let undo = [
        "DROP TABLE chat_usage",
        "DROP TABLE user_usage",
        "ALTER TABLE media DROP COLUMN stored_bytes",
        "DELETE FROM _sqlx_migrations WHERE version = 7",
    ];
    match &app.database {
        Some(db) => {
            use sqlx::{Connection, Executor};
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            for sql in undo {
                conn.execute(sql).await.unwrap();
            }
        }
        None => {
            use sqlx::{Connection, Executor};
            let url = format!("sqlite://{}", app.dir.path().join("catalog.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            for sql in undo {
                conn.execute(sql).await.unwrap();
            }
        }
    }

    // The upgrade counts what is there, per chat and per uploader.
    let app = app
        .restart_with(&[(
            "SATCHEL_MAX_USER_BYTES",
            &(photo.len() as u64 + variants + 2500).to_string(),
        )])
        .await;
    assert_eq!((usage(&app, "c1").await, usage(&app, "c2").await), before);
    let r = app.upload("c2", "u1", "c.bin", blob(501)).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    let r = app.upload("c2", "u1", "c.bin", blob(500)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_large_refused_stream_leaves_the_server_s_memory_flat() {
    use crate::hostile::peak_rss_kib;
    use crate::processes::start_node;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(
        &["serve"],
        dir.path(),
        [
            ("SATCHEL_API_TOKENS", TOKEN),
            ("SATCHEL_WORKERS", "1"),
            ("SATCHEL_MAX_CHAT_BYTES", "1048576"),
        ],
    )
    .await;
    node.add_member("c1", "u1").await;
    let pid = node.child.id();
    let before = peak_rss_kib(pid);

    // 300 MiB, chunked, over a raw connection that keeps writing while it reads.
    let addr = node.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let request = format!(
        "POST /v1/chats/c1/media?user=u1 HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    let started = Instant::now();
    let sending = tokio::spawn(async move {
        writer.write_all(request.as_bytes()).await?;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(300 * 16) {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(&chunk).await?;
            writer.write_all(b"\r\n").await?;
        }
        writer.write_all(b"0\r\n\r\n").await?;
        std::io::Result::Ok(writer)
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut answer));
    let _ = read.await.expect("the server answers within a minute");
    let took = started.elapsed();
    sending.abort();
    let after = peak_rss_kib(pid);
    let text = String::from_utf8_lossy(&answer);
    eprintln!("peak RSS {before} KiB before, {after} KiB after, answered in {took:?}");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("quota_exceeded"), "{text}");
    assert!(
        after - before < 32 * 1024,
        "the server's peak RSS grew from {before} KiB to {after} KiB"
    );
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
    let stored = walk(&dir.path().join("objects"));
    assert!(stored.is_empty(), "stored: {stored:?}");
}

/// A job that runs again (a lease that ran out, a redelivery) writes the same variants again:
/// the usage counts what they take now, never twice. On the catalog itself, since over HTTP a
/// second run cannot be provoked on demand.
#[tokio::test]
async fn a_job_that_runs_again_counts_its_variants_once() {
    use satchel::catalog::{Catalog, ChatRecord, Inserted, JobResult, NewMedia, SqlCatalog};
    use satchel::domain::{
        ChatId, Kind, Media, MediaId, MediaMetadata, Status, UserId, VariantInfo,
    };
    use std::collections::BTreeMap;

    let dir = tempfile::tempdir().unwrap();
    let (url, _db) = match real_backend() {
        true => {
            let db = TestDatabase::create().await;
            (db.url.clone(), Some(db))
        }
        false => (
            format!("sqlite://{}", dir.path().join("catalog.db").display()),
            None,
        ),
    };
    let catalog = SqlCatalog::open(&url, 4, Vec::new()).await.unwrap();
    let chat = ChatId::parse("c").unwrap();
    let user = UserId::parse("u").unwrap();
    let record = ChatRecord {
        bucket: "chat-c".into(),
        generation: "g1".into(),
    };
    catalog.ensure_chat(&chat, &record).await.unwrap();
    let media = Media {
        id: MediaId::generate(),
        chat_id: chat.clone(),
        uploader: user.clone(),
        filename: "p.jpg".into(),
        kind: Kind::Image,
        mime: "image/jpeg".into(),
        size: 1000,
        sha256: "00".repeat(32),
        uploaded_sha256: "00".repeat(32),
        created_at: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap(),
        expires_at: None,
        status: Status::Processing,
        error: None,
        metadata: MediaMetadata::default(),
        placeholder: None,
        variants: BTreeMap::new(),
    };
    let inserted = catalog
        .insert_media(NewMedia {
            media: media.clone(),
            bucket: record.bucket.clone(),
            generation: record.generation.clone(),
            idempotency_key: None,
            quota: Default::default(),
        })
        .await
        .unwrap();
    assert!(matches!(inserted, Inserted::New));
    let variant = |size: u64| VariantInfo {
        mime: "image/webp".into(),
        size,
        width: Some(1),
        height: Some(1),
        duration_ms: None,
    };
    let ready = |sizes: &[(&str, u64)]| JobResult::Ready {
        metadata: MediaMetadata::default(),
        placeholder: None,
        variants: sizes
            .iter()
            .map(|(name, size)| (name.to_string(), variant(*size)))
            .collect(),
    };
    let both = [("thumbnail", 100), ("preview", 300)];
    let bytes = |u: satchel::catalog::Usage| (u.bytes, u.media);
    catalog.finish_job(&media.id, ready(&both)).await.unwrap();
    assert_eq!(bytes(catalog.chat_usage(&chat).await.unwrap()), (1400, 1));
    catalog.finish_job(&media.id, ready(&both)).await.unwrap();
    assert_eq!(bytes(catalog.chat_usage(&chat).await.unwrap()), (1400, 1));
    // A run that makes a variant of another size counts the difference.
    catalog
        .finish_job(&media.id, ready(&[("thumbnail", 50), ("preview", 300)]))
        .await
        .unwrap();
    assert_eq!(bytes(catalog.chat_usage(&chat).await.unwrap()), (1350, 1));
    assert_eq!(bytes(catalog.user_usage(&user).await.unwrap()), (1350, 1));
    catalog
        .delete_media(&media.id, satchel::domain::EraseReason::Unsent)
        .await
        .unwrap();
    assert_eq!(bytes(catalog.chat_usage(&chat).await.unwrap()), (0, 0));
    assert_eq!(bytes(catalog.user_usage(&user).await.unwrap()), (0, 0));
}
