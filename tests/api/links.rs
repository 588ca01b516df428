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

/// A link that would be born expired is a mistake of the caller: `400`, not a dead link.
#[tokio::test]
async fn a_link_with_ttl_seconds_zero_is_a_bad_request() {
    let app = spawn_app().await;
    let media = app.upload_ok("c1", "u1", "a.bin", b"data".to_vec()).await;
    let id = media["id"].as_str().unwrap();
    let r = app
        .links(
            id,
            json!({"user": "u1", "variants": ["original"], "ttl_seconds": 0}),
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = app
        .links(
            id,
            json!({"user": "u1", "variants": ["original"], "ttl_seconds": 1}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Query parameters a link does not know are ignored, and never change what its signature
/// covers: adding `user=` a second time, another `variant`, or junk does not open anything
/// the link was not issued for.
#[tokio::test]
async fn unknown_query_parameters_on_a_link_are_ignored_but_buy_nothing() {
    let app = spawn_app().await;
    app.add_member("c1", "u2").await;
    let media = app.upload_ok("c1", "u1", "a.bin", b"data".to_vec()).await;
    let id = media["id"].as_str().unwrap();
    let link = app.link(id, "u1", "original").await;
    let r = app
        .client
        .get(format!("{link}&utm_source=chat&x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"data");
    // The signed parameters themselves cannot be swapped: another user (a member too), a
    // later expiry, both rejected.
    let other_user = link.replace("user=u1", "user=u2");
    assert_ne!(other_user, link);
    let r = app.client.get(&other_user).send().await.unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let (before, expires) = link.split_once("expires=").unwrap();
    let (secs, after) = expires.split_once('&').unwrap();
    let later = format!(
        "{before}expires={}&{after}",
        secs.parse::<i64>().unwrap() + 3600
    );
    let r = app.client.get(&later).send().await.unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
}

/// Issuance reads the membership as it is now, in the same read as the media: a removed
/// member's next request is refused at once; back again, they get links under the new
/// membership, while the links of before stay dead; an erased chat's media has none.
#[tokio::test]
async fn membership_changes_are_seen_by_the_very_next_issuance() {
    let app = spawn_app().await;
    let media = app.upload_ok("c1", "u1", "a.bin", b"data".to_vec()).await;
    let id = media["id"].as_str().unwrap();
    app.add_member("c1", "u2").await;
    let before = app.link(id, "u2", "original").await;
    let body = json!({"user": "u2", "variants": ["original"]});

    app.remove_member("c1", "u2").await;
    assert_error(
        app.links(id, body.clone()).await,
        StatusCode::FORBIDDEN,
        "not_a_member",
    )
    .await;
    let r = app.client.get(&before).send().await.unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;

    app.add_member("c1", "u2").await;
    let again = app.link(id, "u2", "original").await;
    assert_ne!(again, before);
    let r = app.client.get(&before).send().await.unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app.client.get(&again).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"data");

    // Replacing the member set without u2 is a removal too.
    let r = app
        .api(reqwest::Method::PUT, "/v1/chats/c1/members")
        .json(&json!({"members": ["u1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.links(id, body.clone()).await,
        StatusCode::FORBIDDEN,
        "not_a_member",
    )
    .await;
    let r = app.client.get(&again).send().await.unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;

    let kept = app.link(id, "u1", "original").await;
    app.erase_chat("c1").await;
    let r = app
        .links(id, json!({"user": "u1", "variants": ["original"]}))
        .await;
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app.client.get(&kept).send().await.unwrap();
    assert_error(r, StatusCode::GONE, "gone").await;
}
