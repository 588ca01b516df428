//! Animated images through the API: an animated GIF gets `variants.animation`, a muted H.264
//! MP4 that a signed link downloads as `video/mp4`.

use crate::helpers::*;
use reqwest::StatusCode;

#[tokio::test]
async fn an_animated_gif_is_ready_with_an_mp4_animation_to_download() {
    let app = spawn_app().await;
    let media = app
        .upload_ok("c1", "u1", "party.gif", fixture("anim.gif"))
        .await;
    assert_eq!(media["kind"], "image");
    assert_eq!(media["mime"], "image/gif");
    let id = media["id"].as_str().unwrap().to_owned();
    let done = app.wait_processed(&id).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(
        done["metadata"]["duration_ms"], 300,
        "three frames of 10 cs"
    );
    let animation = &done["variants"]["animation"];
    assert_eq!(animation["mime"], "video/mp4", "{done}");
    assert_eq!(animation["width"], 120);
    assert_eq!(animation["height"], 80);
    assert_eq!(animation["duration_ms"], 300);
    for still in ["thumbnail", "preview", "blurred"] {
        assert_eq!(done["variants"][still]["mime"], "image/webp", "{still}");
    }

    let r = app
        .client
        .get(app.link(&id, "u1", "animation").await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("inline;"), "{disposition}");
    assert!(disposition.contains("party-animation.mp4"), "{disposition}");
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len() as u64, animation["size"].as_u64().unwrap());
    assert_eq!(&body[4..8], b"ftyp", "an MP4");
    let moov = body.windows(4).position(|w| w == b"moov").expect("moov");
    let mdat = body.windows(4).position(|w| w == b"mdat").expect("mdat");
    assert!(moov < mdat, "moov first");

    // A still photo has no such variant; a link to it is refused as for any variant a media
    // does not have (`variant_not_ready`: "does not exist (yet)").
    let photo = app
        .upload_ok("c1", "u1", "photo.jpg", fixture("photo.jpg"))
        .await;
    let photo_id = photo["id"].as_str().unwrap();
    let done = app.wait_processed(photo_id).await;
    assert!(done["variants"].get("animation").is_none(), "{done}");
    assert_eq!(done["metadata"]["duration_ms"], serde_json::Value::Null);
    let r = app
        .links(
            photo_id,
            serde_json::json!({"user": "u1", "variants": ["animation"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
}
