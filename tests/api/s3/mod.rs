//! What only the S3 store does: buckets per chat, multipart uploads, presigned links, and
//! behaviour when the object store goes away.
//!
//! CI runs the suite twice: embedded, then with `SATCHEL_TEST_BACKEND=real` against Garage
//! (`scripts/test-all.sh`). The embedded run leaves these tests out by name; run on their own
//! without a real S3 server, they fail.

mod faults;

use crate::helpers::*;
use reqwest::StatusCode;
use satchel::config::S3Settings;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// These tests are for the S3 store only: without it they fail rather than pass vacuously.
fn require_s3() {
    assert!(
        real_backend(),
        "S3 tests need SATCHEL_TEST_BACKEND=real (scripts/test-real.sh)"
    );
}

fn s3_of(app: &TestApp) -> &S3Settings {
    app.s3
        .as_ref()
        .expect("with SATCHEL_TEST_BACKEND=real every app uses S3")
}

/// Deterministic bytes that no compressor or deduplicator can shortcut.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn only_bucket(app: &TestApp) -> String {
    let (buckets, _) = s3_listing(s3_of(app)).await;
    assert_eq!(buckets.len(), 1, "{buckets:?}");
    buckets.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_chat_gets_a_private_bucket_on_its_first_upload() {
    require_s3();
    let app = spawn_app().await;
    assert_eq!(app.bucket_count(), 0);
    let media = app
        .upload_ok("Chat:42@example.com", "u1", "a.bin", b"secret".to_vec())
        .await;
    let bucket = only_bucket(&app).await;
    assert!(bucket.len() <= 63 && bucket.starts_with(&s3_of(&app).bucket_prefix));

    let s3 = s3_of(&app);
    let url = format!(
        "{}/{bucket}/{}/original",
        s3.endpoint.as_deref().unwrap(),
        media["id"].as_str().unwrap()
    );
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "anonymous GET of {url}");

    let lifecycle = s3_client(s3)
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .expect("the bucket has a lifecycle configuration");
    let aborts_uploads = lifecycle.rules().iter().any(|rule| {
        rule.abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation())
            == Some(1)
    });
    assert!(aborts_uploads, "{lifecycle:?}");
}

#[tokio::test]
async fn a_multipart_upload_round_trips_byte_exact() {
    require_s3();
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let body = noise(20 << 20);
    // Chunked and in uneven pieces, so part boundaries fall inside chunks.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(777_777).map(|c| Ok(c.to_vec())).collect();
    let r = app
        .upload_request("c1", "u1", "big.bin")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let media: Value = r.json().await.unwrap();
    assert_eq!(media["size"], body.len());
    let id = media["id"].as_str().unwrap();

    let head = s3_client(s3_of(&app))
        .head_object()
        .bucket(only_bucket(&app).await)
        .key(format!("{id}/original"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(body.len() as i64));
    // S3 marks multipart objects' ETags with their part count: 20 MiB in 8 MiB parts.
    assert!(
        head.e_tag().unwrap_or_default().ends_with("-3\""),
        "{head:?}"
    );

    let link = app.link(id, "u1", "original").await;
    let r = app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let downloaded = r.bytes().await.unwrap();
    assert!(downloaded == body, "the download differs from the upload");

    let r = app
        .client
        .get(&link)
        .header("range", "bytes=8388600-8388620")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), &body[8388600..=8388620]);
}

#[tokio::test]
async fn unsigned_bodies_go_up_with_a_crc32c_that_the_store_keeps() {
    require_s3();
    let app = spawn_app_with(&[("SATCHEL_S3_PAYLOAD_SIGNING", "never")]).await;
    let client = s3_client(s3_of(&app));
    let head = |bucket: String, id: String| {
        client
            .head_object()
            .bucket(bucket)
            .key(format!("{id}/original"))
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
    };

    // One PutObject: the store keeps the CRC32C of the whole body.
    let small = noise(100_000);
    let media = app.upload_ok("c1", "u1", "small.bin", small.clone()).await;
    let id = media["id"].as_str().unwrap().to_owned();
    let bucket = only_bucket(&app).await;
    let stored = head(bucket.clone(), id.clone()).await.unwrap();
    assert_eq!(
        stored.checksum_crc32_c(),
        Some(satchel::storage::crc32c(&small).as_str()),
        "{stored:?}"
    );

    // Multipart: every part carried one, so the object has a checksum over 3 parts.
    let big = noise(20 << 20);
    let media = app.upload_ok("c1", "u1", "big.bin", big.clone()).await;
    let id = media["id"].as_str().unwrap().to_owned();
    let stored = head(bucket, id.clone()).await.unwrap();
    let checksum = stored.checksum_crc32_c().unwrap_or_default();
    assert!(checksum.ends_with("-3"), "{stored:?}");

    let link = app.link(&id, "u1", "original").await;
    let downloaded = app.client.get(&link).send().await.unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert!(
        downloaded.bytes().await.unwrap() == big,
        "the download differs"
    );
}

#[tokio::test]
async fn a_client_that_disconnects_mid_multipart_upload_leaves_no_object_and_no_upload() {
    require_s3();
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/chats/c1/media?user=u1&filename=cut.bin HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: 40000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&noise(20 << 20)).await.unwrap();
    stream.flush().await.unwrap();

    // Only cut once parts are on the server, so there is something to abort.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, found) = s3_listing(s3_of(&app)).await;
        if found
            .iter()
            .any(|p| p.to_string_lossy().starts_with("s3-upload://"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no multipart upload began");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stream);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, found) = s3_listing(s3_of(&app)).await;
        if found.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = app.upload("c1", "u1", "ok.bin", b"fine".to_vec()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn presigned_links_download_from_s3_with_type_and_disposition() {
    require_s3();
    let app = spawn_app_with(&[("SATCHEL_LINK_MODE", "presigned")]).await;
    let photo = fixture("photo.jpg");
    let media = app
        .upload_ok("c1", "u1", "holiday photo.jpg", photo.clone())
        .await;
    let id = media["id"].as_str().unwrap();

    let r = app
        .links(id, json!({"user": "stranger", "variants": ["original"]}))
        .await;
    assert_error(r, StatusCode::FORBIDDEN, "not_a_member").await;

    let r = app
        .links(
            id,
            json!({"user": "u1", "variants": ["original"], "ttl_seconds": 999_999}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let url = body["links"]["original"].as_str().unwrap();
    let endpoint = s3_of(&app).endpoint.clone().unwrap();
    assert!(url.starts_with(&endpoint), "{url}");
    // Clamped to the one-hour default maximum.
    assert!(url.contains("X-Amz-Expires=3600"), "{url}");

    let r = app.client.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(
        r.headers()["content-disposition"],
        "inline; filename=\"holiday photo.jpg\"; filename*=UTF-8''holiday%20photo.jpg"
    );
    // Review finding 11: a shared cache must not keep a chat's media.
    assert_eq!(r.headers()["cache-control"], "private");
    // The stored original (its location stripped), as the Media object describes it.
    assert_eq!(sha256_hex(&r.bytes().await.unwrap()), media["sha256"]);
    assert_eq!(media["uploaded_sha256"], sha256_hex(&photo));

    let processed = app.wait_processed(id).await;
    assert_eq!(processed["status"], "ready", "{processed}");
    let url = app.link(id, "u1", "thumbnail").await;
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/webp");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline; filename=\"holiday photo-thumbnail.webp\""));
}

/// A TCP forwarder in front of the S3 server that can be switched off, cutting every open
/// connection and refusing new ones, and on again.
struct Switch {
    addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl Switch {
    async fn start(target: &str) -> Switch {
        let target: SocketAddr = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("the test S3 endpoint is http://ip:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, watch) = watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut watch = watch.clone();
                if !*watch.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Switch { addr, up }
    }

    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

#[tokio::test]
async fn with_storage_down_uploads_answer_503_record_nothing_and_recover() {
    require_s3();
    let switch = Switch::start(
        &std::env::var("SATCHEL_TEST_S3_ENDPOINT").expect("SATCHEL_TEST_S3_ENDPOINT is set"),
    )
    .await;
    let endpoint = format!("http://{}", switch.addr);
    let app = spawn_app_with(&[("SATCHEL_S3_ENDPOINT", &endpoint)]).await;
    app.upload_ok("c1", "u1", "first.bin", b"first".to_vec())
        .await;

    switch.set(false);
    let started = Instant::now();
    let r = app
        .upload_request("c1", "u1", "second.bin")
        .header("idempotency-key", "k1")
        .body(b"second".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a dead store fails fast"
    );
    // A chat whose bucket does not exist yet fails the same way.
    app.add_member("c2", "u1").await;
    let r = app.upload("c2", "u1", "new-chat.bin", b"x".to_vec()).await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
    let r = app.readyz_becomes(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;

    switch.set(true);
    let r = app.readyz_becomes(StatusCode::OK).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Nothing was recorded under the key: it makes a new media now.
    let r = app
        .upload_request("c1", "u1", "second.bin")
        .header("idempotency-key", "k1")
        .body(b"second".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let r = app.upload("c2", "u1", "new-chat.bin", b"x".to_vec()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Listed asynchronously: the switch forwards on this test's own runtime, which the
    // blocking helpers would stall.
    let (_, found) = s3_listing(s3_of(&app)).await;
    let originals = found
        .iter()
        .filter(|p| p.to_string_lossy().starts_with("s3://") && p.ends_with("original"))
        .count();
    assert_eq!(originals, 3, "{found:?}");
}

#[tokio::test]
async fn erasing_a_chat_deletes_its_bucket_and_only_its_bucket() {
    require_s3();
    let app = spawn_app().await;
    app.upload_ok("c1", "u1", "a.bin", b"a".to_vec()).await;
    let keep = only_bucket(&app).await;
    app.upload_ok("c2", "u1", "b.bin", noise(9 << 20)).await;
    assert_eq!(app.bucket_count(), 2);

    let r = app
        .api(reqwest::Method::DELETE, "/v1/chats/c2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (buckets, _) = s3_listing(s3_of(&app)).await;
    assert_eq!(buckets, [keep]);
}

/// `(bucket, generation)` as the app's catalog records the chat.
async fn chat_record(app: &TestApp, chat: &str) -> (String, String) {
    use sqlx::Connection;
    let db = app
        .database
        .as_ref()
        .expect("with SATCHEL_TEST_BACKEND=real every app has a PostgreSQL catalog");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_as("SELECT bucket, generation FROM chats WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("chat {chat} is not in the catalog: {e}"))
}

/// `prefix` and then base32 of `hash`, cut to 63 characters, as the README says.
fn bucket_from(prefix: &str, hash: &[u8]) -> String {
    let mut name = format!("{prefix}{}", satchel::storage::base32_lower(hash));
    name.truncate(63);
    name
}

/// The README's name of a chat's bucket: base32 of HMAC-SHA256(s3_bucket_key, chat NUL
/// generation).
fn keyed_bucket(prefix: &str, key: &str, chat: &str, generation: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{chat}\0{generation}").as_bytes());
    bucket_from(prefix, &mac.finalize().into_bytes())
}

/// The name versions before the bucket key gave a chat: an unkeyed hash of its id, which
/// anyone who knows the id can compute.
fn unkeyed_bucket(prefix: &str, chat: &str) -> String {
    use sha2::Digest;
    bucket_from(prefix, &sha2::Sha256::digest(chat.as_bytes()))
}

/// Review finding 12: with `s3_bucket_key` a chat id no longer tells where its bucket is,
/// so nobody can create (squat) it first in a shared namespace such as AWS's.
#[tokio::test]
async fn the_bucket_key_names_chat_buckets() {
    require_s3();
    let key_a = "bucket-key-a-0123456789abcdefghijkl";
    let key_b = "bucket-key-b-0123456789abcdefghijkl";
    let a = spawn_app_with(&[("SATCHEL_S3_BUCKET_KEY", key_a)]).await;
    let prefix = s3_of(&a).bucket_prefix.clone();
    // A second deployment on the same store, with the same prefix but its own key.
    let b = spawn_app_with(&[
        ("SATCHEL_S3_BUCKET_KEY", key_b),
        ("SATCHEL_S3_BUCKET_PREFIX", prefix.as_str()),
    ])
    .await;
    a.upload_ok("c1", "u1", "a.bin", b"a".to_vec()).await;
    b.upload_ok("c1", "u1", "b.bin", b"b".to_vec()).await;

    let (bucket_a, generation_a) = chat_record(&a, "c1").await;
    let (bucket_b, generation_b) = chat_record(&b, "c1").await;
    assert_eq!(bucket_a, keyed_bucket(&prefix, key_a, "c1", &generation_a));
    assert_eq!(bucket_b, keyed_bucket(&prefix, key_b, "c1", &generation_b));
    assert_ne!(bucket_a, bucket_b);
    assert_ne!(bucket_a, unkeyed_bucket(&prefix, "c1"));
    let (mut buckets, _) = s3_listing(s3_of(&a)).await;
    buckets.sort();
    let mut expected = vec![bucket_a, bucket_b];
    expected.sort();
    assert_eq!(buckets, expected);
}

/// Without `s3_bucket_key` a single node generates one and keeps it; setting one later moves
/// no chat: each keeps the bucket the catalog recorded, and only new chats use the new key.
#[tokio::test]
async fn a_chat_keeps_its_bucket_when_a_bucket_key_is_set_later() {
    require_s3();
    let app = spawn_app().await;
    let path = app.dir.path().join("s3-bucket-key");
    let generated = std::fs::read_to_string(&path).expect("a generated s3-bucket-key");
    let generated = generated.trim().to_owned();
    assert!(generated.len() >= 32, "{generated:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let prefix = s3_of(&app).bucket_prefix.clone();
    let media = app
        .upload_ok("c1", "u1", "before.bin", b"before".to_vec())
        .await;
    let id = media["id"].as_str().unwrap().to_owned();
    let recorded = chat_record(&app, "c1").await;
    assert_eq!(
        recorded.0,
        keyed_bucket(&prefix, &generated, "c1", &recorded.1)
    );

    let key = "configured-bucket-key-0123456789abcdef";
    let app = app.restart_with(&[("SATCHEL_S3_BUCKET_KEY", key)]).await;
    let link = app.link(&id, "u1", "original").await;
    let r = app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), "before");
    let r = app.upload("c1", "u1", "after.bin", b"after".to_vec()).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    assert_eq!(chat_record(&app, "c1").await, recorded);

    app.upload_ok("c2", "u1", "new.bin", b"new".to_vec()).await;
    let (bucket, generation) = chat_record(&app, "c2").await;
    assert_eq!(bucket, keyed_bucket(&prefix, key, "c2", &generation));
    assert_eq!(app.bucket_count(), 2);
}

fn test_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("this test needs {name}; run eval \"$(scripts/garage.sh env)\" first")
    })
}

/// A client of the test S3 server with another account's key (`scripts/garage.sh env`
/// prints `SATCHEL_TEST_S3_OTHER_*`): someone else on the same store.
fn other_account(s3: &S3Settings) -> aws_sdk_s3::Client {
    let mut other = s3.clone();
    other.access_key_id = test_var("SATCHEL_TEST_S3_OTHER_ACCESS_KEY_ID");
    other.secret_access_key = test_var("SATCHEL_TEST_S3_OTHER_SECRET_ACCESS_KEY").into();
    s3_client(&other)
}

/// A call to Garage's admin API (`SATCHEL_TEST_GARAGE_ADMIN_*`).
async fn garage_admin(path: &str, body: Value) -> Value {
    let url = format!("{}{path}", test_var("SATCHEL_TEST_GARAGE_ADMIN_URL"));
    let r = reqwest::Client::new()
        .post(&url)
        .bearer_auth(test_var("SATCHEL_TEST_GARAGE_ADMIN_TOKEN"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("Garage's admin API at {url}: {e}"));
    assert!(r.status().is_success(), "{url}: {r:?}");
    r.json().await.unwrap_or(Value::Null)
}

/// Makes `name` a bucket of the other account, in the store's global namespace as every
/// bucket name is on AWS; returns its id. (On Garage a key's CreateBucket names the bucket in
/// that key's own namespace, so only the admin API can hold a name against everyone.)
async fn squat(name: &str) -> String {
    let bucket = garage_admin(
        "/v2/CreateBucket",
        json!({
            "globalAlias": name,
            "localAlias": {
                "accessKeyId": test_var("SATCHEL_TEST_S3_OTHER_ACCESS_KEY_ID"),
                "alias": name,
                "allow": {"read": true, "write": true, "owner": true},
            },
        }),
    )
    .await;
    bucket["id"].as_str().expect("a bucket id").to_owned()
}

/// Review finding 12: a chat's bucket name held by another account (squatted, as the
/// unkeyed names of earlier versions could be) is a clear error, not an opaque 500.
#[tokio::test]
async fn a_bucket_held_by_another_account_answers_bucket_taken() {
    require_s3();
    let app = spawn_app().await;
    let s3 = s3_of(&app).clone();
    let squatted = unkeyed_bucket(&s3.bucket_prefix, "c9");
    let id = squat(&squatted).await;

    // As a version before chat generations recorded the chat: its unkeyed name, the bucket
    // not created yet (say the store was down at that first upload).
    {
        use sqlx::Connection;
        let db = app.database.as_ref().unwrap();
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(
            "INSERT INTO chats (chat_id, bucket, created_at, generation) VALUES ($1, $2, 0, '')",
        )
        .bind("c9")
        .bind(&squatted)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    app.add_member("c9", "u1").await;
    let r = app.upload("c9", "u1", "a.bin", b"private".to_vec()).await;
    let held = other_account(&s3)
        .list_objects_v2()
        .bucket(&squatted)
        .send()
        .await;
    garage_admin(&format!("/v2/DeleteBucket?id={id}"), Value::Null).await;
    assert_error(r, StatusCode::INTERNAL_SERVER_ERROR, "bucket_taken").await;
    let held = held.expect("the other account lists its bucket");
    assert_eq!(held.contents().len(), 0, "the squatter got our bytes");
    // Other chats are unaffected.
    app.upload_ok("c1", "u1", "b.bin", b"fine".to_vec()).await;
}
