use crate::helpers::*;
use reqwest::StatusCode;
use std::time::Duration;

async fn ready_photo(app: &TestApp) -> String {
    let media = app
        .upload_ok("c1", "u1", "IMG 1.jpg", fixture("photo.jpg"))
        .await;
    let id = media["id"].as_str().unwrap().to_owned();
    assert_eq!(app.wait_processed(&id).await["status"], "ready");
    id
}

#[tokio::test]
async fn a_download_carries_every_header_of_the_contract() {
    let app = spawn_app().await;
    let id = ready_photo(&app).await;
    let bytes = fixture("photo.jpg");
    let r = app
        .client
        .get(app.link(&id, "u1", "original").await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/jpeg");
    let disposition = h["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("inline;"), "{disposition}");
    assert!(disposition.contains("IMG 1.jpg"), "{disposition}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-security-policy"], "sandbox");
    assert_eq!(h["cache-control"], "private");
    assert_eq!(h["accept-ranges"], "bytes");
    // The original as stored: photo.jpg's GPS IFD zeroed in place (original_metadata), so
    // the same length with another digest, the ETag's.
    let media: serde_json::Value = app.media(&id).await.json().await.unwrap();
    let stored = media["sha256"].as_str().unwrap();
    assert_ne!(stored, sha256_hex(&bytes));
    assert_eq!(h["etag"].to_str().unwrap(), format!("\"{stored}\""));
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), bytes.len());
    assert_eq!(sha256_hex(&body), stored);
    // The README's walk-through shows this ETag.
    assert_eq!(
        stored,
        "68a9169e6e129c500e7597a8039b3151920e5d71dc3840f384057ee0d5e152d4"
    );
}

#[tokio::test]
async fn variants_are_webp_without_any_exif() {
    let app = spawn_app().await;
    let id = ready_photo(&app).await;
    for variant in ["thumbnail", "preview", "blurred"] {
        let r = app
            .client
            .get(app.link(&id, "u1", variant).await)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "image/webp");
        let body = r.bytes().await.unwrap();
        assert_eq!(&body[..4], b"RIFF");
        assert_eq!(&body[8..12], b"WEBP");
        for marker in [&b"Exif"[..], b"EXIF", b"GPS"] {
            assert!(
                !body.windows(marker.len()).any(|w| w == marker),
                "{variant} holds {marker:?}"
            );
        }
    }
}

#[tokio::test]
async fn range_requests_get_partial_content() {
    let app = spawn_app().await;
    let id = ready_photo(&app).await;
    let bytes = fixture("photo.jpg");
    let link = app.link(&id, "u1", "original").await;
    let r = app
        .client
        .get(&link)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes 10-19/{}", bytes.len())
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[10..20]);

    let r = app
        .client
        .get(&link)
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[bytes.len() - 5..]);

    let r = app
        .client
        .get(&link)
        .header("range", format!("bytes={}-", bytes.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes */{}", bytes.len())
    );
}

#[tokio::test]
async fn a_matching_etag_answers_not_modified() {
    let app = spawn_app().await;
    let id = ready_photo(&app).await;
    let link = app.link(&id, "u1", "thumbnail").await;
    let first = app.client.get(&link).send().await.unwrap();
    let etag = first.headers()["etag"].clone();
    let again = app
        .client
        .get(&link)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn a_tampered_link_is_forbidden() {
    let app = spawn_app().await;
    let id = ready_photo(&app).await;
    app.add_member("c1", "u2").await;
    let link = app.link(&id, "u1", "original").await;
    let as_other_user = link.replace("user=u1", "user=u2");
    let as_other_variant = link.replace("/original?", "/preview?");
    let later = {
        let (head, tail) = link.split_once("expires=").unwrap();
        let (_, rest) = tail.split_once('&').unwrap();
        format!("{head}expires=4102444800&{rest}")
    };
    let last = if link.ends_with('A') { 'B' } else { 'A' };
    let bad_sig = format!("{}{last}", &link[..link.len() - 1]);
    for url in [as_other_user, as_other_variant, later, bad_sig] {
        let r = app.client.get(&url).send().await.unwrap();
        assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    }
}

#[tokio::test]
async fn an_expired_link_is_forbidden() {
    let app = spawn_app_with(&[("SATCHEL_LINK_MAX_TTL_SECONDS", "1")]).await;
    let media = app.upload_ok("c1", "u1", "a.bin", b"data".to_vec()).await;
    let link = app
        .link(media["id"].as_str().unwrap(), "u1", "original")
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = app.client.get(&link).send().await.unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_removed_members_old_link_stops_working_at_once() {
    let app = spawn_app().await;
    let media = app.upload_ok("c1", "u1", "a.bin", b"data".to_vec()).await;
    app.add_member("c1", "u2").await;
    let link = app
        .link(media["id"].as_str().unwrap(), "u2", "original")
        .await;
    assert_eq!(
        app.client.get(&link).send().await.unwrap().status(),
        StatusCode::OK
    );
    app.remove_member("c1", "u2").await;
    let r = app.client.get(&link).send().await.unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn an_unsent_medias_old_link_is_gone_and_its_objects_erased() {
    let app = spawn_app().await;
    let id = ready_photo(&app).await;
    let link = app.link(&id, "u1", "thumbnail").await;
    let r = app
        .api(reqwest::Method::DELETE, &format!("/v1/media/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.client.get(&link).send().await.unwrap();
    assert_error(r, StatusCode::GONE, "gone").await;
    assert_error(app.media(&id).await, StatusCode::NOT_FOUND, "not_found").await;
    let left: Vec<_> = app
        .stored_files()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&id))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let r = app
        .api(reqwest::Method::DELETE, &format!("/v1/media/{id}"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
}

/// Review finding 10: links are bound to the membership they were issued under. A member
/// removed and added again does not get the old links back; a new link works; a member who
/// stays (also through a replace of the whole member set) keeps theirs.
#[tokio::test]
async fn a_member_who_leaves_and_comes_back_does_not_revive_old_links() {
    let app = spawn_app().await;
    let media = app.upload_ok("c1", "u1", "f.txt", b"hello".to_vec()).await;
    app.add_member("c1", "u2").await;
    let id = media["id"].as_str().unwrap();
    let old = app.link(id, "u1", "original").await;
    let stays = app.link(id, "u2", "original").await;
    assert_eq!(
        app.client.get(&old).send().await.unwrap().status(),
        StatusCode::OK
    );

    app.remove_member("c1", "u1").await;
    app.add_member("c1", "u1").await;
    let r = app.client.get(&old).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let new = app.link(id, "u1", "original").await;
    assert_eq!(
        app.client.get(&new).send().await.unwrap().status(),
        StatusCode::OK
    );

    let r = app
        .api(reqwest::Method::PUT, "/v1/chats/c1/members")
        .json(&serde_json::json!({"members": ["u1", "u2"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.client.get(&stays).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.client.get(&new).send().await.unwrap().status(),
        StatusCode::OK
    );
}

/// Signed downloads answer CORS for any origin, errors too, and their preflight; the
/// bearer-token endpoints answer none (their preflight is refused).
#[tokio::test]
async fn signed_downloads_answer_cors_and_the_api_does_not() {
    let app = spawn_app().await;
    let media = app.upload_ok("c1", "u1", "a.bin", b"data".to_vec()).await;
    let id = media["id"].as_str().unwrap();
    let link = app.link(id, "u1", "original").await;
    let cors = |r: &reqwest::Response| {
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(
            h["access-control-expose-headers"],
            "Content-Range, Content-Length, Content-Disposition, ETag, Accept-Ranges"
        );
        assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
        assert!(h.get("access-control-allow-credentials").is_none());
    };
    let r = app
        .client
        .get(&link)
        .header("Origin", "https://chat.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    cors(&r);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    let r = app
        .client
        .request(reqwest::Method::OPTIONS, &link)
        .header("Origin", "https://chat.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "range")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    cors(&r);
    let h = r.headers();
    assert_eq!(h["access-control-allow-methods"], "GET, HEAD");
    assert_eq!(
        h["access-control-allow-headers"],
        "Range, If-None-Match, If-Range"
    );
    assert_eq!(h["access-control-max-age"], "86400");

    // A refusal is readable across origins too.
    let tampered = link.replace("sig=", "sig=0");
    let r = app.client.get(&tampered).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    cors(&r);

    // The API: no CORS headers, and no preflight.
    let r = app.media(id).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url(&format!("/v1/media/{id}")),
        )
        .header("Origin", "https://chat.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
