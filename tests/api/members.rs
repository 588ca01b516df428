use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn members(app: &TestApp, chat: &str) -> Value {
    let r = app
        .api(Method::GET, &format!("/v1/chats/{chat}/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["members"].clone()
}

#[tokio::test]
async fn adding_and_removing_members_is_idempotent() {
    let app = spawn_app().await;
    app.add_member("c1", "u1").await;
    app.add_member("c1", "u1").await;
    app.add_member("c1", "u2@example.com").await;
    assert_eq!(members(&app, "c1").await, json!(["u1", "u2@example.com"]));
    app.remove_member("c1", "u1").await;
    app.remove_member("c1", "u1").await;
    assert_eq!(members(&app, "c1").await, json!(["u2@example.com"]));
}

#[tokio::test]
async fn put_members_replaces_the_whole_set() {
    let app = spawn_app().await;
    app.add_member("c1", "old").await;
    let r = app
        .api(Method::PUT, "/v1/chats/c1/members")
        .json(&json!({"members": ["a", "b", "a"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(members(&app, "c1").await, json!(["a", "b"]));
}

#[tokio::test]
async fn invalid_chat_and_user_ids_are_refused() {
    let app = spawn_app().await;
    for path in [
        "/v1/chats/bad%20chat/members/u1",
        "/v1/chats/c1/members/%2E%2E%2Fetc",
        "/v1/chats/c1/members/caf%C3%A9",
    ] {
        let r = app.api(Method::PUT, path).send().await.unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_id").await;
    }
    let long = "x".repeat(129);
    let r = app
        .api(Method::PUT, &format!("/v1/chats/{long}/members/u1"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_id").await;
    let r = app
        .api(Method::PUT, "/v1/chats/c1/members")
        .json(&json!({"members": ["ok", "not ok"]}))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_id").await;
    let r = app.upload("c1", "no/such", "x", b"x".to_vec()).await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_id").await;
}

#[tokio::test]
async fn erasing_a_chat_removes_its_media_bucket_and_members() {
    let app = spawn_app().await;
    let media = app
        .upload_ok("c1", "u1", "photo.jpg", fixture("photo.jpg"))
        .await;
    let id = media["id"].as_str().unwrap();
    let link = app.link(id, "u1", "original").await;
    app.wait_processed(id).await;
    assert!(!app.stored_files().is_empty());

    app.erase_chat("c1").await;
    assert_error(app.media(id).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(members(&app, "c1").await, json!([]));
    assert_eq!(app.bucket_count(), 0, "the chat's bucket is gone");
    let r = app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::GONE);
}
