//! Slow and idle clients (issue 14, part 5): an upload under the minimum rate, headers that
//! never finish, more connections than `max_connections`, a download nobody reads. Each limit
//! is configured small so that the tests are quick; the times are measured.

use crate::helpers::*;
use crate::tls::{client_trusting, Ca, LOCAL};
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes (EOF or reset), for at most `within`: what was read, and
/// whether it closed in time.
async fn read_until_closed(
    stream: &mut (impl AsyncRead + Unpin),
    within: Duration,
) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

fn upload_head(length: usize) -> String {
    format!(
        "POST /v1/chats/c1/media?user=u1&filename=slow.bin HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

/// A slow-loris upload (a byte every 200 ms against 1000 B/s over 2 s) is cut with
/// `408 upload_timeout` when its first window ends, well before the idle timeout; nothing
/// of it is stored.
#[tokio::test]
async fn a_slow_loris_upload_is_cut_at_the_configured_rate() {
    let app = spawn_app_with(&[
        ("SATCHEL_UPLOAD_MIN_BYTES_PER_SECOND", "1000"),
        ("SATCHEL_UPLOAD_RATE_WINDOW_SECONDS", "2"),
    ])
    .await;
    app.add_member("c1", "u1").await;
    let before = app.stored_files();
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    writer
        .write_all(upload_head(10_000).as_bytes())
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        loop {
            if writer.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let (answer, closed) = read_until_closed(&mut reader, Duration::from_secs(15)).await;
    let took = started.elapsed();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed, "not cut within 15 s: {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("upload_timeout"), "{answer}");
    println!("slow-loris upload cut after {took:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "cut after {took:?}, the window is 2 s"
    );
    assert_eq!(app.stored_files(), before, "nothing stored");
    assert_eq!(app.stored_originals(), 0);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("outcome=\"too_slow\"} 1"),
        "the cut upload is counted: {metrics}"
    );
}

/// An upload at a healthy rate (10 kB/s, for longer than two windows) is taken whole.
#[tokio::test]
async fn an_upload_above_the_minimum_rate_passes() {
    let app = spawn_app_with(&[
        ("SATCHEL_UPLOAD_MIN_BYTES_PER_SECOND", "1000"),
        ("SATCHEL_UPLOAD_RATE_WINDOW_SECONDS", "2"),
    ])
    .await;
    app.add_member("c1", "u1").await;
    let body = futures_util::stream::unfold(0u32, |n| async move {
        if n == 50 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a'; 1000])),
            n + 1,
        ))
    });
    let started = Instant::now();
    let r = app
        .upload_request("c1", "u1", "steady.bin")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let media: serde_json::Value = r.json().await.unwrap();
    assert_eq!(media["size"], 50_000);
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "it took > 2 windows"
    );
}

/// A client that sends half a header block is disconnected after
/// `header_read_timeout_seconds`, and one that sends nothing after a request (idle keep-alive)
/// too.
#[tokio::test]
async fn unfinished_headers_are_cut_after_the_header_read_timeout() {
    let app = spawn_app_with(&[("SATCHEL_HEADER_READ_TIMEOUT_SECONDS", "2")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let took = started.elapsed();
    println!("half a header block: closed after {took:?}");
    assert!(closed, "not closed within 10 s");
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "the request was never whole"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "closed after {took:?}, the timeout is 2 s"
    );
    // Headers that do finish in time are served.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("satchel_connections_closed_total{reason=\"header_timeout\"}"),
        "{metrics}"
    );
}

/// The same over HTTPS: the handshake is done, the headers never are.
#[tokio::test]
async fn unfinished_headers_are_cut_over_https_too() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("satchel test CA");
    let (cert, key) = ca.issue(LOCAL).write(dir.path(), "server");
    let config = crate::tls::https::https_config(
        &dir.path().join("data"),
        &cert,
        &key,
        &[("SATCHEL_HEADER_READ_TIMEOUT_SECONDS", "2")],
    );
    let app = satchel::Application::build(config)
        .await
        .expect("the app builds");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));

    let mut roots = rustls::RootCertStore::empty();
    for cert in satchel::tls::certificates(ca.pem().as_bytes()).unwrap() {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(satchel::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("the handshake");
    let started = Instant::now();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let (answer, closed) = read_until_closed(&mut tls, Duration::from_secs(10)).await;
    let took = started.elapsed();
    println!("half a header block over HTTPS: closed after {took:?}");
    assert!(closed, "not closed within 10 s");
    assert!(!String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "closed after {took:?}, the timeout is 2 s"
    );
    // A whole request over HTTPS is served.
    let r = client_trusting(&ca)
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the HTTPS server stops")
        .unwrap()
        .expect("it stops cleanly");
}

async fn get_healthz(stream: &mut (impl AsyncWrite + Unpin)) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
}

/// With `max_connections = 2`, two idle connections hold both slots: a third is accepted by
/// the kernel but not served until one of them closes, then at once.
#[tokio::test]
async fn connections_past_max_connections_wait_until_one_closes() {
    let app = spawn_app_with(&[
        ("SATCHEL_MAX_CONNECTIONS", "2"),
        ("SATCHEL_HEADER_READ_TIMEOUT_SECONDS", "30"),
    ])
    .await;
    let first = TcpStream::connect(app.addr).await.unwrap();
    let second = TcpStream::connect(app.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(app.addr).await.unwrap();
    get_healthz(&mut extra).await;
    let mut buf = [0u8; 12];
    let early = tokio::time::timeout(Duration::from_secs(1), extra.read(&mut buf)).await;
    assert!(early.is_err(), "the extra connection was served: {early:?}");

    drop(first);
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed, "{answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    println!(
        "the waiting connection was served {:?} after a slot freed",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    drop(second);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = app.metrics().await;
    let waits: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("satchel_connection_waits_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(waits >= 1, "accepting waited for a slot: {metrics}");
    // Only the connection asking for the metrics is open now.
    assert!(metrics.contains("satchel_connections_open 1"), "{metrics}");
}

/// A download whose client reads nothing after the headers (16 MiB, more than the socket
/// buffers hold) is dropped after `download_stall_seconds`: the server closes the socket.
#[tokio::test]
async fn a_download_nobody_reads_is_dropped_after_the_stall_timeout() {
    let app = spawn_app_with(&[("SATCHEL_DOWNLOAD_STALL_SECONDS", "2")]).await;
    let size = 16 << 20;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let media = app.upload_ok("c1", "u1", "big.bin", body).await;
    let link = app
        .link(media["id"].as_str().unwrap(), "u1", "original")
        .await;
    let path = link.split_once(&app.addr.to_string()).unwrap().1.to_owned();

    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = vec![0u8; 4096];
    let n = stream.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);
    let stopped = Instant::now();
    // Read nothing on this connection; watch the server's count of dropped downloads.
    let dropped = "satchel_connections_closed_total{reason=\"download_stall\"} 1";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.metrics().await.contains(dropped) {
        assert!(
            Instant::now() < deadline,
            "the stalled download was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = stopped.elapsed();
    // Closed: reading drains what the buffers held and ends, short of the whole file.
    let (rest, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    println!(
        "stalled download: dropped {took:?} after the client stopped reading; {} of {size} \
         bytes were in flight",
        n + rest.len(),
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "dropped after {took:?}, the stall limit is 2 s"
    );
    assert!(closed, "the socket was not closed");
    assert!(n + rest.len() < size, "the whole file went out");

    // A client that reads is served the whole file.
    let r = app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), size);
}

/// A kept-alive connection idle for longer than `header_read_timeout_seconds` is still open:
/// the next request on it is served (a client or proxy reusing it never races a close). Its
/// headers get the timeout from their first byte.
#[tokio::test]
async fn an_idle_kept_alive_connection_outlives_the_header_read_timeout() {
    let app = spawn_app_with(&[("SATCHEL_HEADER_READ_TIMEOUT_SECONDS", "2")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    stream.write_all(request).await.unwrap();
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stream.write_all(request).await.unwrap();
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "the kept-alive connection was closed: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Half a head on the same connection is cut 2 s after its first byte.
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(closed, "not closed within 10 s");
    assert!(!String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "closed after {took:?}, the timeout is 2 s"
    );
}

/// A connection that never sends a byte is closed after `header_read_timeout_seconds`, not
/// kept as long as an idle kept-alive one.
#[tokio::test]
async fn a_silent_new_connection_is_closed_after_the_header_read_timeout() {
    let app = spawn_app_with(&[("SATCHEL_HEADER_READ_TIMEOUT_SECONDS", "2")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(closed, "not closed within 10 s");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "closed after {took:?}, the timeout is 2 s"
    );
}
