//! An S3 server that misbehaves on some calls: a fault-injecting HTTP proxy in front of Garage
//! answers every fourth request `503 SlowDown` and holds every seventh for 1.5 s. Uploads and
//! jobs ride it out with bounded retries: every upload is answered in bounded time, each one
//! answered `201` is processed and downloads byte-exact, and nothing else is left in the store.

use super::{noise, require_s3, s3_of};
use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    failed: AtomicU64,
    delayed: AtomicU64,
}

/// Starts the proxy; every request goes on a connection of its own (`Connection: close`), so
/// each one is a separate decision.
async fn faulty_proxy(target: SocketAddr, counts: Arc<Counts>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                let _ = serve(client, target, &counts).await;
            });
        }
    });
    addr
}

async fn serve(mut client: TcpStream, target: SocketAddr, counts: &Counts) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let n = counts.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if n.is_multiple_of(4) {
        counts.failed.fetch_add(1, Ordering::SeqCst);
        // Read the body the client sends, then refuse it as S3 does when it is overloaded.
        let length: u64 = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        tokio::io::copy(&mut (&mut client).take(length), &mut tokio::io::sink()).await?;
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                    <Message>Please reduce your request rate.</Message></Error>";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(answer.as_bytes()).await?;
        return client.shutdown().await;
    }
    if n.is_multiple_of(7) {
        counts.delayed.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let mut server = TcpStream::connect(target).await?;
    let mut forwarded: String = text
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| {
            !l.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    forwarded.push_str("Connection: close\r\n\r\n");
    server.write_all(forwarded.as_bytes()).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

#[tokio::test]
async fn an_s3_that_fails_and_stalls_on_some_calls_loses_nothing_and_leaves_nothing() {
    require_s3();
    let garage: SocketAddr = std::env::var("SATCHEL_TEST_S3_ENDPOINT")
        .expect("SATCHEL_TEST_S3_ENDPOINT is set")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("the test S3 endpoint is http://ip:port");
    let counts = Arc::new(Counts::default());
    let proxy = faulty_proxy(garage, counts.clone()).await;
    let endpoint = format!("http://{proxy}");
    let app = spawn_app_with(&[("SATCHEL_S3_ENDPOINT", &endpoint)]).await;
    app.add_member("c1", "u1").await;

    let started = Instant::now();
    let bodies: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("p{i}.jpg"), fixture("photo.jpg")))
        .chain([
            ("v.ogg".to_owned(), fixture("voice.ogg")),
            ("n.bin".to_owned(), noise(3 << 20)),
        ])
        .collect();
    let app = &app;
    let answers = futures_util::future::join_all(bodies.iter().map(|(name, body)| async move {
        let r = app.upload("c1", "u1", name, body.clone()).await;
        (r.status(), r.json::<Value>().await.unwrap(), body)
    }))
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "uploads took {took:?}");

    let mut accepted = Vec::new();
    for (status, media, body) in answers {
        match status {
            StatusCode::CREATED => accepted.push((media, body)),
            // Out of retries on this call: refused cleanly, nothing recorded.
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(media["error"]["code"], "storage_unavailable", "{media}")
            }
            other => panic!("upload answered {other}: {media}"),
        }
    }
    assert!(
        accepted.len() >= 6,
        "retries should carry most uploads through: {} of 8",
        accepted.len()
    );
    for (media, body) in &accepted {
        let id = media["id"].as_str().unwrap();
        let done = app.wait_processed(id).await;
        assert_eq!(done["status"], "ready", "{done}");
        let link = app.link(id, "u1", "original").await;
        let r = app.client.get(&link).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // What was stored (a photo's location stripped), as its Media object says; and the
        // body as sent, whole.
        assert_eq!(sha256_hex(&r.bytes().await.unwrap()), media["sha256"]);
        assert_eq!(media["uploaded_sha256"], sha256_hex(body));
    }

    // Only what was accepted is stored, and no multipart upload is left open.
    let accepted_ids: Vec<&str> = accepted
        .iter()
        .map(|(m, _)| m["id"].as_str().unwrap())
        .collect();
    let (_, objects) = s3_listing(s3_of(app)).await;
    for object in &objects {
        let text = object.to_string_lossy();
        assert!(
            accepted_ids.iter().any(|id| text.contains(id)),
            "{text} belongs to no accepted upload: {objects:?}"
        );
    }
    let requests = counts.requests.load(Ordering::SeqCst);
    let failed = counts.failed.load(Ordering::SeqCst);
    eprintln!(
        "{requests} S3 requests, {failed} answered 503, {} delayed; {} of 8 uploads accepted in {took:?}",
        counts.delayed.load(Ordering::SeqCst),
        accepted.len()
    );
    assert!(failed > 0, "the proxy injected no fault");
    // Bounded retries: a handful of calls per upload and job, not a storm.
    assert!(requests < 400, "{requests} S3 requests for 8 uploads");
}
