use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::OffsetDateTime;

#[tokio::test]
async fn only_current_members_get_links() {
    let app = spawn_app().await;
    let media = app.upload_ok("c1", "u1", "a.bin", b"data".to_vec()).await;
    let id = media["id"].as_str().unwrap();
    let r = app
        .links(id, json!({"user": "u9", "variants": ["original"]}))
        .await;
    assert_error(r, StatusCode::FORBIDDEN, "not_a_member").await;
    let r = app
        .links(id, json!({"user": "bad id", "variants": ["original"]}))
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_id").await;
}

#[tokio::test]
async fn unknown_variant_names_and_unknown_media_are_refused() {
    let app = spawn_app().await;
    let media = app.upload_ok("c1", "u1", "a.bin", b"data".to_vec()).await;
    let id = media["id"].as_str().unwrap();
    let r = app
        .links(id, json!({"user": "u1", "variants": ["poster"]}))
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "unknown_variant").await;
    let r = app
        .links(id, json!({"user": "u1", "variants": ["../../etc"]}))
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "unknown_variant").await;
    let r = app
        .links(
            "01JD3ZQ8Y7XK2M4N5P6Q7R8S9T",
            json!({"user": "u1", "variants": ["original"]}),
        )
        .await;
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(
        app.media("01JD3ZQ8Y7XK2M4N5P6Q7R8S9T").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(app.media("nope").await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn link_ttls_are_clamped_to_the_configured_maximum() {
    let app = spawn_app_with(&[("SATCHEL_LINK_MAX_TTL_SECONDS", "120")]).await;
    let media = app.upload_ok("c1", "u1", "a.bin", b"data".to_vec()).await;
    let id = media["id"].as_str().unwrap();
    let r = app
        .links(
            id,
            json!({"user": "u1", "variants": ["original"], "ttl_seconds": 999999}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let expires = OffsetDateTime::parse(
        body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expires - OffsetDateTime::now_utc();
    assert!(
        left.whole_seconds() <= 120 && left.whole_seconds() >= 110,
        "{left}"
    );
    assert!(body["links"]["original"]
        .as_str()
        .unwrap()
        .contains("/v1/files/"));
}

#[tokio::test]
async fn links_for_several_variants_come_in_one_call() {
    let app = spawn_app().await;
    let media = app
        .upload_ok("c1", "u1", "p.jpg", fixture("photo.jpg"))
        .await;
    let id = media["id"].as_str().unwrap();
    app.wait_processed(id).await;
    let r = app
        .links(
            id,
            json!({"user": "u1", "variants": ["original", "thumbnail", "preview", "blurred"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let links = body["links"].as_object().unwrap();
    assert_eq!(links.len(), 4);
    for (name, url) in links {
        let r = app.client.get(url.as_str().unwrap()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }
}
