//! satchel's own HTTPS (`tls_cert_file` / `tls_key_file`), seen by a client that trusts the
//! test's CA and nothing else.

use super::*;
use crate::helpers::*;
use crate::processes::{free_port, signal, terminate, Node};
use reqwest::StatusCode;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The settings of an HTTPS node on the embedded backends (whatever the run), with `more`.
pub fn https_config(dir: &Path, cert: &Path, key: &Path, more: &[(&str, &str)]) -> satchel::Config {
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut extra: Vec<(&str, &str)> = FILESYSTEM_STORE.to_vec();
    extra.extend([
        ("SATCHEL_AMQP_URL", UNSET),
        ("SATCHEL_AMQP_PREFIX", UNSET),
        ("SATCHEL_TLS_CERT_FILE", cert.as_str()),
        ("SATCHEL_TLS_KEY_FILE", key.as_str()),
    ]);
    extra.extend_from_slice(more);
    test_config(dir, &extra)
}

#[tokio::test]
async fn satchel_serves_https_with_its_certificate_and_signs_https_links() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("satchel test CA");
    let leaf = ca.issue(LOCAL);
    let (cert, key) = leaf.write(dir.path(), "server");
    let app = satchel::Application::build(https_config(&dir.path().join("data"), &cert, &key, &[]))
        .await
        .expect("the app builds");
    let addr = app.local_addr();
    assert_eq!(&*app.state().public_url, format!("https://{addr}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));

    let client = client_trusting(&ca);
    for host in [
        format!("127.0.0.1:{}", addr.port()),
        format!("localhost:{}", addr.port()),
    ] {
        let r = client
            .get(format!("https://{host}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(peer_certificate(&r), leaf.der());
    }
    // The whole API over TLS, links included.
    let base = format!("https://{addr}");
    let api = |method, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(TOKEN)
    };
    let r = api(reqwest::Method::PUT, "/v1/chats/c1/members/u1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = api(
        reqwest::Method::POST,
        "/v1/chats/c1/media?user=u1&filename=a.txt",
    )
    .body("over TLS")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let media: serde_json::Value = r.json().await.unwrap();
    let r = api(
        reqwest::Method::POST,
        &format!("/v1/media/{}/links", media["id"].as_str().unwrap()),
    )
    .json(&serde_json::json!({"user": "u1", "variants": ["original"]}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let links: serde_json::Value = r.json().await.unwrap();
    let link = links["links"]["original"].as_str().unwrap();
    assert!(link.starts_with(&format!("{base}/")), "{link}");
    let r = client.get(link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "over TLS");

    // Neither plaintext nor a client that does not trust the CA gets an answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "plaintext HTTP was answered: {plain:?}");
    let stranger = client_trusting(&Ca::new("another CA"));
    let e = stranger
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the HTTPS server stops")
        .unwrap()
        .expect("it stops cleanly");
}

/// `satchel serve` over HTTPS on a free port, logging to `log`; waits for `/readyz`.
async fn start_https(dir: &Path, ca: &Ca, cert: &Path, key: &Path, log: &Path) -> Node {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_satchel"))
        .arg("serve")
        .env("SATCHEL_LISTEN", format!("127.0.0.1:{port}"))
        .env("SATCHEL_DATA_DIR", dir.join("data"))
        .env("SATCHEL_API_TOKENS", TOKEN)
        .env("SATCHEL_TLS_CERT_FILE", cert)
        .env("SATCHEL_TLS_KEY_FILE", key)
        .env("SATCHEL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("satchel starts");
    let node = Node {
        child,
        base: format!("https://127.0.0.1:{port}"),
    };
    let ready = format!("{}/readyz", node.base);
    crate::processes::wait_until_ok(&client_trusting(ca), &ready, "satchel over HTTPS").await;
    node
}

/// The certificate a new connection gets now.
async fn served_certificate(ca: &Ca, base: &str) -> Vec<u8> {
    let r = client_trusting(ca)
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    peer_certificate(&r)
}

#[tokio::test]
async fn sighup_rotates_the_certificate_and_established_connections_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("satchel test CA");
    let (first, second) = (ca.issue(LOCAL), ca.issue(LOCAL));
    let (cert, key) = first.write(dir.path(), "server");
    let log = dir.path().join("satchel.log");
    let mut node = start_https(dir.path(), &ca, &cert, &key, &log).await;

    // One keep-alive connection, opened before the rotation.
    let kept = client_trusting(&ca);
    let health = format!("{}/healthz", node.base);
    let r = kept.get(&health).send().await.unwrap();
    assert_eq!(peer_certificate(&r), first.der());

    second.write(dir.path(), "server");
    signal(&node, "HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(&ca, &node.base).await != second.der() {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not bring the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection made before goes on with the certificate it was made with.
    for _ in 0..3 {
        let r = kept.get(&health).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            peer_certificate(&r),
            first.der(),
            "the kept connection was replaced"
        );
    }

    // A broken certificate file, then a missing key: each SIGHUP logs an error and the
    // certificate in use stays.
    for (n, what) in ["garbage", "missing key"].into_iter().enumerate() {
        if what == "garbage" {
            std::fs::write(&cert, "not a certificate").unwrap();
        } else {
            second.write(dir.path(), "server");
            std::fs::remove_file(&key).unwrap();
        }
        signal(&node, "HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap();
            if text.matches("cannot re-read the TLS certificate").count() > n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no error logged:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            served_certificate(&ca, &node.base).await,
            second.der(),
            "{what}"
        );
        let r = kept.get(&health).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{what}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("tls_cert_file"),
        "the error names the file's key:\n{text}"
    );
    assert!(
        text.contains("tls_key_file"),
        "the error names the file's key:\n{text}"
    );

    let status = terminate(&mut node).await;
    assert!(status.success(), "{status:?}");
}

/// `satchel serve` with `env`: it must refuse to start; its one-line error.
fn refused_start(dir: &Path, env: &[(&str, &Path)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_satchel"))
        .arg("serve")
        .env("SATCHEL_LISTEN", "127.0.0.1:0")
        .env("SATCHEL_DATA_DIR", dir.join("data"))
        .env("SATCHEL_API_TOKENS", TOKEN)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "satchel started with {env:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn https_refuses_to_start_without_both_files_or_with_a_key_of_another_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("satchel test CA");
    let (cert, key) = ca.issue(LOCAL).write(dir.path(), "server");
    let (_, other_key) = ca.issue(LOCAL).write(dir.path(), "other");
    for one in [
        ("SATCHEL_TLS_CERT_FILE", &cert),
        ("SATCHEL_TLS_KEY_FILE", &key),
    ] {
        let e = refused_start(dir.path(), &[(one.0, one.1.as_path())]);
        assert!(
            e.contains("tls_cert_file") && e.contains("tls_key_file"),
            "{e}"
        );
    }
    let e = refused_start(
        dir.path(),
        &[
            ("SATCHEL_TLS_CERT_FILE", cert.as_path()),
            ("SATCHEL_TLS_KEY_FILE", other_key.as_path()),
        ],
    );
    assert!(e.contains("is not the key of tls_cert_file"), "{e}");
    let missing = dir.path().join("missing.crt");
    let e = refused_start(
        dir.path(),
        &[
            ("SATCHEL_TLS_CERT_FILE", missing.as_path()),
            ("SATCHEL_TLS_KEY_FILE", key.as_path()),
        ],
    );
    assert!(e.contains("tls_cert_file: cannot read"), "{e}");
}

#[tokio::test]
async fn silent_or_plaintext_clients_hold_up_no_handshake_and_a_stop_lets_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("satchel test CA");
    let (cert, key) = ca.issue(LOCAL).write(dir.path(), "server");
    let app = satchel::Application::build(https_config(&dir.path().join("data"), &cert, &key, &[]))
        .await
        .expect("the app builds");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));

    // Clients that connect and say nothing, or speak plaintext HTTP, while others are served.
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let client = client_trusting(&ca);
    let base = format!("https://{addr}");
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        client.get(format!("{base}/healthz")).send(),
    )
    .await
    .expect("served beside silent clients")
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a plaintext client is not hung up on");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plaintext got an HTTP answer"
    );

    // An upload in flight over TLS when the stop comes still finishes.
    let r = client
        .put(format!("{base}/v1/chats/c1/members/u1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (parts, body) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = tokio_stream_of(body);
    let upload = tokio::spawn(
        client
            .post(format!("{base}/v1/chats/c1/media?user=u1&filename=a.txt"))
            .bearer_auth(TOKEN)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    parts.send(Ok(b"first half, ".to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(300)).await;
    parts.send(Ok(b"second half".to_vec())).await.unwrap();
    drop(parts);
    let r = upload.await.unwrap().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the HTTPS server stops")
        .unwrap()
        .expect("it stops cleanly");
    drop(silent);
}

/// A stream of what `rx` receives.
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
