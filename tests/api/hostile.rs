use crate::helpers::*;
use reqwest::StatusCode;

async fn failed_with(app: &TestApp, fixture_name: &str, code: &str) -> String {
    let bytes = fixture(fixture_name);
    let media = app.upload_ok("c1", "u1", fixture_name, bytes.clone()).await;
    assert_eq!(media["kind"], "image");
    let id = media["id"].as_str().unwrap().to_owned();
    let done = app.wait_processed(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], code, "{done}");
    assert!(done["variants"].as_object().unwrap().is_empty());
    // The original stays stored and downloadable.
    let link = app.link(&id, "u1", "original").await;
    let r = app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
    id
}

#[tokio::test]
async fn a_pixel_flood_fails_with_too_many_pixels_and_the_service_stays_healthy() {
    let app = spawn_app().await;
    failed_with(&app, "pixel-flood.png", "too_many_pixels").await;
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let leftovers: Vec<_> = walk(&app.dir.path().join("work"));
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
}

#[tokio::test]
async fn a_truncated_jpeg_fails_with_decode_failed() {
    let app = spawn_app().await;
    failed_with(&app, "truncated.jpg", "decode_failed").await;
}

#[tokio::test]
async fn a_variant_of_a_failed_image_is_not_ready() {
    let app = spawn_app().await;
    let id = failed_with(&app, "pixel-flood.png", "too_many_pixels").await;
    let r = app
        .links(
            &id,
            serde_json::json!({"user": "u1", "variants": ["thumbnail"]}),
        )
        .await;
    assert_error(r, StatusCode::CONFLICT, "variant_not_ready").await;
}
