//! The S3 store over `https://`: the SDK's rustls client trusting the system roots plus
//! `tls_ca_file`, in front of the test Garage through a TLS-terminating proxy. Needs Garage.

use super::*;
use crate::tls::{Ca, Front, Leaf, Proxy, LOCAL};
use reqwest::StatusCode;

/// A proxy presenting `leaf` in front of the test S3 server, and the `https://` endpoint.
async fn https_s3(leaf: &Leaf) -> (Proxy, String) {
    let (_, garage) = server_of("SATCHEL_TEST_S3_ENDPOINT");
    let proxy = Proxy::start(garage, Front::Tls, Some(leaf)).await;
    let endpoint = format!("https://localhost:{}", proxy.addr.port());
    (proxy, endpoint)
}

#[tokio::test]
async fn media_is_stored_and_served_over_https_to_s3_whose_ca_is_tls_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("store CA");
    let ca_file = ca.write(dir.path(), "ca.pem").display().to_string();
    let (_proxy, endpoint) = https_s3(&ca.issue(LOCAL)).await;
    let app = spawn_app_with(&[
        ("SATCHEL_S3_ENDPOINT", endpoint.as_str()),
        ("SATCHEL_TLS_CA_FILE", ca_file.as_str()),
    ])
    .await;
    let r = app.readyz_becomes(StatusCode::OK).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let media = app.upload_ok("c1", "u1", "a.png", flat_png(64)).await;
    let id = media["id"].as_str().unwrap();
    let media = app.wait_processed(id).await;
    assert_eq!(media["status"], "ready", "{media}");
    let link = app.link(id, "u1", "original").await;
    let r = app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), flat_png(64));
}

#[tokio::test]
async fn s3_with_a_wrong_ca_an_expired_certificate_or_another_host_name_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("store CA");
    let ca_file = ca.write(dir.path(), "ca.pem").display().to_string();
    let cases = [
        ("wrong CA", Ca::new("stranger CA").issue(LOCAL)),
        ("expired", ca.issue_expired(LOCAL)),
        ("host name", ca.issue(&["s3.example"])),
    ];
    let (_, garage) = server_of("SATCHEL_TEST_S3_ENDPOINT");
    // The plaintext server named by an https:// endpoint: a downgrade attempt.
    let downgrade = format!("https://localhost:{}", garage.port());
    let cases = cases.into_iter().map(|(what, leaf)| (what, Some(leaf)));
    for (what, leaf) in cases.chain([("plaintext server", None)]) {
        let (_proxy, endpoint) = match &leaf {
            Some(leaf) => {
                let (proxy, endpoint) = https_s3(leaf).await;
                (Some(proxy), endpoint)
            }
            None => (None, downgrade.clone()),
        };
        let app = spawn_app_with(&[
            ("SATCHEL_S3_ENDPOINT", endpoint.as_str()),
            ("SATCHEL_TLS_CA_FILE", ca_file.as_str()),
        ])
        .await;
        let r = app.readyz_becomes(StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "storage_unavailable",
            "{what}: {body}"
        );
        app.add_member("c1", "u1").await;
        let r = app
            .upload("c1", "u1", "a.txt", b"never stored".to_vec())
            .await;
        assert!(r.status().is_server_error(), "{what}: {}", r.status());
    }
}
