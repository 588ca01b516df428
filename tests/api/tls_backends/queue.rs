//! RabbitMQ over `amqps://`: lapin's rustls, verified against the system roots plus
//! `tls_ca_file`, behind a TLS-terminating proxy in front of the test broker.

use super::*;
use crate::processes::{free_port, metrics, terminate, Node};
use crate::tls::{Ca, Front, Leaf, Proxy, LOCAL};
use reqwest::StatusCode;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A proxy presenting `leaf` in front of the test broker, and the `amqps://` URL through it.
async fn amqps(leaf: &Leaf) -> (Proxy, String) {
    let (url, broker) = server_of("SATCHEL_TEST_AMQP_URL");
    let proxy = Proxy::start(broker, Front::Tls, Some(leaf)).await;
    let through = format!(
        "amqps://{}:{}@localhost:{}{}",
        url.username(),
        url.password().unwrap_or_default(),
        proxy.addr.port(),
        url.path()
    );
    (proxy, through)
}

/// `satchel ARGS` (the real process: its own rustls provider) with `env`, logging to `log`,
/// once `/healthz` answers.
async fn start(args: &[&str], dir: &Path, env: &[(&str, &str)], log: &Path) -> Node {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_satchel"))
        .args(args)
        .env("SATCHEL_LISTEN", format!("127.0.0.1:{port}"))
        .env("SATCHEL_DATA_DIR", dir.join("data"))
        .env("SATCHEL_API_TOKENS", TOKEN)
        .env("SATCHEL_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("satchel starts");
    let node = Node {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{}/healthz", node.base)).send().await {
            if r.status() == StatusCode::OK {
                return node;
            }
        }
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert!(Instant::now() < deadline, "satchel did not start:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The test broker's queues of `prefix`, deleted when dropped.
fn cleanup(dir: &Path, prefix: &str) -> Option<TestBroker> {
    let (url, _) = server_of("SATCHEL_TEST_AMQP_URL");
    let config = test_config(
        dir,
        &[
            ("SATCHEL_AMQP_URL", url.as_str()),
            ("SATCHEL_AMQP_PREFIX", prefix),
        ],
    );
    TestBroker::of(&config)
}

#[tokio::test]
async fn jobs_travel_over_amqps_to_a_broker_whose_ca_is_tls_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("queue CA");
    let ca_file = ca.write(dir.path(), "ca.pem").display().to_string();
    let (_proxy, url) = amqps(&ca.issue(LOCAL)).await;
    let prefix = format!("t{}", ulid::Ulid::new().to_string().to_lowercase());
    let _broker = cleanup(dir.path(), &prefix);
    let log = dir.path().join("satchel.log");
    let env = [
        ("SATCHEL_AMQP_URL", url.as_str()),
        ("SATCHEL_AMQP_PREFIX", prefix.as_str()),
        ("SATCHEL_TLS_CA_FILE", ca_file.as_str()),
    ];
    let mut node = start(&["serve", "--with-workers"], dir.path(), &env, &log).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/readyz", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    node.add_member("c1", "u1").await;
    let r = client
        .post(format!(
            "{}/v1/chats/c1/media?user=u1&filename=a.png",
            node.base
        ))
        .bearer_auth(TOKEN)
        .body(flat_png(64))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The job went out and came back over amqps.
    crate::process_lifecycle::assert_all_ready(&node, &[id]).await;
    assert!(metrics(&client, &node.base)
        .await
        .contains("satchel_jobs_total"));
    let status = terminate(&mut node).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn amqps_refuses_a_wrong_ca_an_expired_certificate_or_another_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("queue CA");
    let ca_file = ca.write(dir.path(), "ca.pem").display().to_string();
    let cases = [
        (
            "wrong CA",
            Ca::new("stranger CA").issue(LOCAL),
            "UnknownIssuer",
        ),
        ("expired", ca.issue_expired(LOCAL), "xpired"),
        (
            "host name",
            ca.issue(&["rabbit.example"]),
            "not valid for name",
        ),
    ];
    let (plain, broker) = server_of("SATCHEL_TEST_AMQP_URL");
    // The broker's plaintext port named by an amqps:// URL: a downgrade attempt.
    let downgrade = format!(
        "amqps://{}:{}@localhost:{}{}",
        plain.username(),
        plain.password().unwrap_or_default(),
        broker.port(),
        plain.path()
    );
    let cases = cases
        .into_iter()
        .map(|(what, leaf, reason)| (what, Some(leaf), reason));
    for (what, leaf, reason) in cases.chain([("plaintext server", None, "")]) {
        let case = tempfile::tempdir().unwrap();
        let (_proxy, url) = match &leaf {
            Some(leaf) => {
                let (proxy, url) = amqps(leaf).await;
                (Some(proxy), url)
            }
            None => (None, downgrade.clone()),
        };
        let prefix = format!("t{}", ulid::Ulid::new().to_string().to_lowercase());
        let log = case.path().join("satchel.log");
        let env = [
            ("SATCHEL_AMQP_URL", url.as_str()),
            ("SATCHEL_AMQP_PREFIX", prefix.as_str()),
            ("SATCHEL_TLS_CA_FILE", ca_file.as_str()),
        ];
        let node = start(&["serve"], case.path(), &env, &log).await;
        let r = reqwest::get(format!("{}/readyz", node.base)).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "queue_unavailable", "{what}: {body}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap();
            let line = text
                .lines()
                .find(|l| l.contains("queue: cannot connect to RabbitMQ") && l.contains(reason));
            if line.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no error naming the queue and {reason:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn the_workers_ops_port_speaks_https_with_tls_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ops CA");
    let (cert, key) = ca.issue(LOCAL).write(dir.path(), "ops");
    let (url, _) = server_of("SATCHEL_TEST_AMQP_URL");
    let prefix = format!("t{}", ulid::Ulid::new().to_string().to_lowercase());
    let _broker = cleanup(dir.path(), &prefix);
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_satchel"))
        .args(["worker", "--pools", "image"])
        .env("SATCHEL_LISTEN", format!("127.0.0.1:{port}"))
        .env("SATCHEL_DATA_DIR", dir.path().join("data"))
        .env("SATCHEL_AMQP_URL", url.as_str())
        .env("SATCHEL_AMQP_PREFIX", &prefix)
        .env("SATCHEL_TLS_CERT_FILE", &cert)
        .env("SATCHEL_TLS_KEY_FILE", &key)
        .env("SATCHEL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("satchel worker starts");
    let mut node = Node {
        child,
        base: format!("https://localhost:{port}"),
    };
    let client = crate::tls::client_trusting(&ca);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{}/readyz", node.base)).send().await {
            if r.status() == StatusCode::OK {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the worker's ops port never answered over HTTPS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client
        .get(format!("{}/metrics", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err(), "the ops port answered plaintext");
    let status = terminate(&mut node).await;
    assert!(status.success(), "{status:?}");
}
