//! Rate limits and in-flight caps as an abusive client meets them (issue 14, parts 1-3):
//! - a burst above a limit: exactly the configured number pass, the rest get `429` with an
//!   exact `Retry-After` and the `RateLimit-Policy` / `RateLimit` headers, and after waiting
//!   that long a request passes again;
//! - two nodes sharing Redis enforce one limit together (requests alternated between them);
//! - Redis that stops answering mid-test: `open` lets requests through, `closed` refuses them,
//!   and no request waits longer than the store's timeout;
//! - a client that forges `X-Forwarded-For` gets no fresh per-address budget unless its peer
//!   is a trusted proxy;
//! - a user who opens many uploads at once is refused at once past the cap, never queued;
//! - a refused upload stores nothing and its client reads the `429`, not a reset.

use crate::helpers::*;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The Redis of the test machine (scripts/start-redis.sh starts it); unreachable is a failure.
fn redis_url() -> String {
    std::env::var("SATCHEL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A key prefix of the test's own, so that tests sharing the server never share counters.
fn fresh_prefix() -> String {
    format!("t{}", ulid::Ulid::new().to_string().to_lowercase())
}

async fn upload_note(app: &TestApp, chat: &str, user: &str) -> reqwest::Response {
    app.upload(chat, user, "n.txt", b"hello".to_vec()).await
}

/// A `429 rate_limited` naming `limit`; its `Retry-After` in seconds.
async fn assert_limited(r: reqwest::Response, limit: &str) -> u64 {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let header = |name: &str| {
        r.headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let retry_after: u64 = header("retry-after").parse().expect("whole seconds");
    assert!(retry_after >= 1);
    assert!(
        header("ratelimit-policy").starts_with(&format!("\"{limit}\";q=")),
        "{}",
        header("ratelimit-policy")
    );
    assert!(
        header("ratelimit").starts_with(&format!("\"{limit}\";r=")),
        "{}",
        header("ratelimit")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    retry_after
}

#[tokio::test]
async fn a_burst_gets_exactly_the_limit_through_and_the_rest_an_exact_retry_after() {
    // A burst of 3, then one every 2 s.
    let app = spawn_app_with(&[("SATCHEL_RATE_UPLOADS_PER_USER", "3/6s")]).await;
    app.add_member("c1", "u1").await;
    let stored_before = app.stored_originals();
    let burst = join_all((0..8).map(|_| upload_note(&app, "c1", "u1"))).await;
    let mut passed = 0;
    let mut limited = Vec::new();
    for r in burst {
        match r.status() {
            StatusCode::CREATED => passed += 1,
            _ => limited.push(r),
        }
    }
    assert_eq!(passed, 3, "the burst");
    let mut waits = Vec::new();
    for r in limited {
        waits.push(assert_limited(r, "uploads_per_user").await);
    }
    assert!(waits.iter().all(|w| *w == 2), "{waits:?}");
    assert_eq!(
        app.stored_originals(),
        stored_before + 3,
        "refused uploads store nothing"
    );
    let r = upload_note(&app, "c1", "u1").await;
    let policy = r.headers()["ratelimit-policy"].to_str().unwrap().to_owned();
    assert_eq!(policy, "\"uploads_per_user\";q=3;w=6");
    let wait = assert_limited(r, "uploads_per_user").await;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        upload_note(&app, "c1", "u1").await.status(),
        StatusCode::CREATED
    );
    // Another user has a budget of their own.
    app.add_member("c1", "u2").await;
    assert_eq!(
        upload_note(&app, "c1", "u2").await.status(),
        StatusCode::CREATED
    );

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "satchel_rate_limit_checks_total{limit=\"uploads_per_user\",outcome=\"limited\"} 6"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_chat_has_one_budget_for_all_its_members_counted_and_in_bytes() {
    let app = spawn_app_with(&[
        ("SATCHEL_RATE_UPLOADS_PER_CHAT", "2/60s"),
        ("SATCHEL_RATE_UPLOAD_BYTES_PER_CHAT", "1000/60s"),
    ])
    .await;
    for user in ["u1", "u2"] {
        app.add_member("c1", user).await;
        app.add_member("c2", user).await;
    }
    let big = vec![b'x'; 800];
    assert_eq!(
        app.upload("c2", "u1", "a.txt", big.clone()).await.status(),
        StatusCode::CREATED
    );
    // The bytes are known from Content-Length before a byte is stored.
    let r = app.upload("c2", "u2", "b.txt", big).await;
    assert_limited(r, "upload_bytes_per_chat").await;

    assert_eq!(
        upload_note(&app, "c1", "u1").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        upload_note(&app, "c1", "u2").await.status(),
        StatusCode::CREATED
    );
    assert_limited(upload_note(&app, "c1", "u1").await, "uploads_per_chat").await;
}

#[tokio::test]
async fn links_and_downloads_are_limited_per_user() {
    let app = spawn_app_with(&[
        ("SATCHEL_RATE_LINKS_PER_USER", "2/60s"),
        ("SATCHEL_RATE_DOWNLOADS_PER_USER", "3/60s"),
    ])
    .await;
    let media = app.upload_ok("c1", "u1", "n.txt", b"hello".to_vec()).await;
    let id = media["id"].as_str().unwrap();
    let body = json!({"user": "u1", "variants": ["original"]});
    let first = app.links(id, body.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let link = first.json::<Value>().await.unwrap()["links"]["original"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.links(id, body.clone()).await.status(), StatusCode::OK);
    assert_limited(app.links(id, body).await, "links_per_user").await;

    for _ in 0..3 {
        assert_eq!(
            app.client.get(&link).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_limited(
        app.client.get(&link).send().await.unwrap(),
        "downloads_per_user",
    )
    .await;
}

/// Downloads with a bad signature from one address: the attempts themselves are counted.
async fn forged_downloads(app: &TestApp, forwarded_for: &[&str]) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for ip in forwarded_for {
        let r = app
            .client
            .get(app.url(
                "/v1/files/01JD3ZQ8Y7XK2M4N5P6Q7R8S9T/original?user=u1&expires=9999999999&sig=00",
            ))
            .header("x-forwarded-for", *ip)
            .send()
            .await
            .unwrap();
        statuses.push(r.status());
    }
    statuses
}

#[tokio::test]
async fn a_forged_x_forwarded_for_buys_no_new_budget_unless_the_peer_is_a_trusted_proxy() {
    let limit = [("SATCHEL_RATE_DOWNLOADS_PER_IP", "2/60s")];
    let app = spawn_app_with(&limit).await;
    let statuses = forged_downloads(&app, &["1.1.1.1", "2.2.2.2", "3.3.3.3"]).await;
    assert_eq!(
        statuses,
        [
            StatusCode::FORBIDDEN,
            StatusCode::FORBIDDEN,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );

    let app = spawn_app_with(&[limit[0], ("SATCHEL_TRUSTED_PROXIES", "127.0.0.1/32, ::1")]).await;
    let statuses = forged_downloads(&app, &["1.1.1.1", "2.2.2.2", "3.3.3.3", "1.1.1.1"]).await;
    assert_eq!(
        statuses,
        [StatusCode::FORBIDDEN; 4],
        "one each, through a trusted proxy"
    );
    let statuses = forged_downloads(&app, &["1.1.1.1"]).await;
    assert_eq!(statuses, [StatusCode::TOO_MANY_REQUESTS], "1.1.1.1's third");
}

#[tokio::test]
async fn two_nodes_sharing_redis_enforce_one_limit() {
    let prefix = fresh_prefix();
    let redis = redis_url();
    let settings = [
        ("SATCHEL_RATE_UPLOADS_PER_CHAT", "4/60s"),
        ("SATCHEL_REDIS_URL", redis.as_str()),
        ("SATCHEL_REDIS_PREFIX", prefix.as_str()),
    ];
    let a = spawn_app_with(&settings).await;
    let b = spawn_app_with(&settings).await;
    for node in [&a, &b] {
        node.add_member("c1", "u1").await;
    }
    let mut statuses = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        statuses.push(upload_note(node, "c1", "u1").await.status());
    }
    let passed = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(passed, 4, "{statuses:?}");
    assert!(statuses[4..]
        .iter()
        .all(|s| *s == StatusCode::TOO_MANY_REQUESTS));
}

/// A TCP proxy in front of Redis that can be made to swallow everything: connections stay
/// open and nothing comes back, the worst way a server can fail.
struct Blackhole {
    url: String,
    swallowing: Arc<AtomicBool>,
}

/// Copies `from` to `to`, holding every byte back while `swallowing` is set.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    swallowing: Arc<AtomicBool>,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while swallowing.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn blackhole_in_front_of_redis() -> Blackhole {
    let upstream = redis_url();
    let upstream = reqwest::Url::parse(&upstream).unwrap();
    let upstream = format!(
        "{}:{}",
        upstream.host_str().unwrap(),
        upstream.port().unwrap_or(6379)
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/0", listener.local_addr().unwrap());
    let swallowing = Arc::new(AtomicBool::new(false));
    let flag = swallowing.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let flag = flag.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let server = TcpStream::connect(&upstream).await.expect("Redis answers");
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    pipe(client_read, server_write, flag.clone()),
                    pipe(server_read, client_write, flag)
                );
            });
        }
    });
    Blackhole { url, swallowing }
}

async fn timed_upload(app: &TestApp) -> (StatusCode, Duration) {
    let started = Instant::now();
    let status = upload_note(app, "c1", "u1").await.status();
    (status, started.elapsed())
}

#[tokio::test]
async fn redis_that_stops_answering_fails_open_or_closed_as_configured_and_never_hangs() {
    for (policy, refused) in [("open", false), ("closed", true)] {
        let hole = blackhole_in_front_of_redis().await;
        let prefix = fresh_prefix();
        let app = spawn_app_with(&[
            ("SATCHEL_RATE_UPLOADS_PER_USER", "100/60s"),
            ("SATCHEL_REDIS_URL", hole.url.as_str()),
            ("SATCHEL_REDIS_PREFIX", prefix.as_str()),
            ("SATCHEL_RATE_LIMIT_ON_ERROR", policy),
        ])
        .await;
        app.add_member("c1", "u1").await;
        let (status, _) = timed_upload(&app).await;
        assert_eq!(status, StatusCode::CREATED, "{policy}: Redis answers");

        hole.swallowing.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            let (status, took) = timed_upload(&app).await;
            let expected = match refused {
                true => StatusCode::TOO_MANY_REQUESTS,
                false => StatusCode::CREATED,
            };
            assert_eq!(status, expected, "{policy}: Redis swallows everything");
            // The store's timeout is 250 ms; the upload itself takes a few ms.
            assert!(
                took < Duration::from_millis(1500),
                "{policy}: took {took:?}"
            );
        }
        let metrics = app.metrics().await;
        assert!(
            metrics.contains(
                "satchel_rate_limit_checks_total{limit=\"uploads_per_user\",outcome=\"error\"} 3"
            ),
            "{policy}: {metrics}"
        );

        hole.swallowing.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, _) = timed_upload(&app).await;
            if status == StatusCode::CREATED
                && !app.metrics().await.contains("outcome=\"error\"} 4")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{policy}: Redis never counted again"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// An upload whose body trickles in until `release` is set: it stays in flight.
fn slow_upload(
    app: &TestApp,
    user: &str,
    release: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<StatusCode> {
    let request = app.upload_request("c1", user, "slow.txt");
    tokio::spawn(async move {
        let body = futures_util::stream::unfold(0u32, move |n| {
            let release = release.clone();
            async move {
                if n > 0 {
                    while !release.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if n > 1 {
                        return None;
                    }
                }
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"part")),
                    n + 1,
                ))
            }
        });
        request
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .unwrap()
            .status()
    })
}

#[tokio::test]
async fn uploads_past_an_in_flight_cap_are_refused_at_once() {
    let app = spawn_app_with(&[
        ("SATCHEL_MAX_UPLOADS_IN_FLIGHT_PER_USER", "1"),
        ("SATCHEL_MAX_UPLOADS_IN_FLIGHT", "2"),
    ])
    .await;
    for user in ["u1", "u2", "u3"] {
        app.add_member("c1", user).await;
    }
    let release = Arc::new(AtomicBool::new(false));
    let first = slow_upload(&app, "u1", release.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    assert_limited(
        upload_note(&app, "c1", "u1").await,
        "uploads_in_flight_per_user",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once, not queued"
    );
    let second = slow_upload(&app, "u2", release.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_limited(upload_note(&app, "c1", "u3").await, "uploads_in_flight").await;

    release.store(true, Ordering::SeqCst);
    assert_eq!(first.await.unwrap(), StatusCode::CREATED);
    assert_eq!(second.await.unwrap(), StatusCode::CREATED);
    // Slots are given back.
    assert_eq!(
        upload_note(&app, "c1", "u1").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        upload_note(&app, "c1", "u3").await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_refused_large_upload_is_answered_not_reset() {
    let app = spawn_app_with(&[("SATCHEL_RATE_UPLOADS_PER_USER", "1/60s")]).await;
    app.add_member("c1", "u1").await;
    assert_eq!(
        upload_note(&app, "c1", "u1").await.status(),
        StatusCode::CREATED
    );
    let before = app.stored_originals();
    let r = app
        .api(Method::POST, "/v1/chats/c1/media?user=u1&filename=big.bin")
        .body(vec![7u8; 8 << 20])
        .send()
        .await
        .expect("the client reads the answer");
    assert_limited(r, "uploads_per_user").await;
    assert_eq!(app.stored_originals(), before);
}
