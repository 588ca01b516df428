use crate::helpers::*;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

#[tokio::test]
async fn secret_chat_media_is_erased_soon_after_its_ttl() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let r = app
        .api(
            reqwest::Method::POST,
            "/v1/chats/c1/media?user=u1&filename=p.jpg&ttl_seconds=2",
        )
        .body(fixture("photo.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let media: serde_json::Value = r.json().await.unwrap();
    let id = media["id"].as_str().unwrap().to_owned();
    assert!(media["expires_at"].is_string());
    let link = app.link(&id, "u1", "original").await;
    assert_eq!(
        app.client.get(&link).send().await.unwrap().status(),
        StatusCode::OK
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let gone = app.media(&id).await.status() == StatusCode::NOT_FOUND;
        let files_left = app
            .stored_files()
            .iter()
            .any(|p| p.to_string_lossy().contains(&id));
        if gone && !files_left {
            break;
        }
        assert!(Instant::now() < deadline, "media {id} outlived its ttl");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ne!(
        app.client.get(&link).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_ttl_of_zero_is_refused() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    let r = app
        .api(
            reqwest::Method::POST,
            "/v1/chats/c1/media?user=u1&ttl_seconds=0",
        )
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = spawn_app().await;
    let r = app
        .api(reqwest::Method::GET, "/v1/nothing/here")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .api(reqwest::Method::PATCH, "/v1/chats/c1/members")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let r = app
        .api(
            reqwest::Method::POST,
            "/v1/media/01JD3ZQ8Y7XK2M4N5P6Q7R8S9T/links",
        )
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
}
