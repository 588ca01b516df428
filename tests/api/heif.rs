//! HEIC and AVIF photos end to end: sniffed from their bytes, processed in the transform child
//! like any image.

use crate::helpers::*;
use serde_json::Value;

#[tokio::test]
async fn a_heic_photo_from_a_phone_becomes_an_upright_image_with_all_variants() {
    let app = spawn_app().await;
    // Named .jpg on purpose: the type comes from the bytes, never the name.
    let media = app
        .upload_ok("c1", "u1", "IMG_0001.jpg", fixture("rotated.heic"))
        .await;
    assert_eq!(media["kind"], "image");
    assert_eq!(media["mime"], "image/heic");
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["error"], Value::Null);
    // Stored 480x640 with irot 270 (and EXIF orientation 6, not applied a second time).
    assert_eq!(done["metadata"]["width"], 640, "{done}");
    assert_eq!(done["metadata"]["height"], 480, "{done}");
    let variants = &done["variants"];
    assert_eq!(variants["thumbnail"]["width"], 320);
    assert_eq!(variants["thumbnail"]["height"], 240);
    assert_eq!(variants["preview"]["width"], 640, "never upscaled");
    assert_eq!(variants["blurred"]["mime"], "image/webp");
    assert!(variants["blurred"]["size"].as_u64().unwrap() > 0);
    assert!(!done["placeholder"]["blurhash"].as_str().unwrap().is_empty());
    assert!(!done["placeholder"]["thumbhash"]
        .as_str()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_avif_photo_is_an_image_and_a_truncated_heic_fails_like_a_truncated_jpeg() {
    let app = spawn_app().await;
    let avif = app
        .upload_ok("c1", "u1", "p.avif", fixture("photo.avif"))
        .await;
    assert_eq!(avif["mime"], "image/avif");
    let cut = app
        .upload_ok("c1", "u1", "cut.heic", fixture("truncated.heic"))
        .await;
    assert_eq!(cut["mime"], "image/heic");

    let done = app.wait_processed(avif["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["metadata"]["width"], 640);
    assert_eq!(done["variants"]["preview"]["height"], 480);
    let failed = app.wait_processed(cut["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "decode_failed", "{failed}");
}

/// exiftool's reading of `bytes` (`-G1`, numbers as numbers).
fn exiftool(bytes: &[u8]) -> serde_json::Map<String, Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("exiftool")
        .args(["-j", "-G1", "-n", "-a"])
        .arg(&path)
        .output()
        .expect("exiftool (Debian: libimage-exiftool-perl; scripts/install-deps.sh --test)");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json[0].as_object().unwrap().clone()
}

#[tokio::test]
async fn a_heic_original_loses_its_location_in_place_and_still_processes() {
    let app = spawn_app().await;
    let sent = fixture("photo-gps.heic");
    let before = exiftool(&sent);
    assert!(before.keys().any(|k| k.contains("GPS")), "{before:?}");
    assert_eq!(before["XMP-photoshop:City"], "Berlin");

    let media = app
        .upload_ok("c1", "u1", "IMG_0002.HEIC", sent.clone())
        .await;
    assert_eq!(media["mime"], "image/heic");
    assert_eq!(media["uploaded_sha256"], sha256_hex(&sent));
    assert_ne!(media["sha256"], media["uploaded_sha256"]);
    assert_eq!(media["size"], sent.len(), "rewritten in place");
    let id = media["id"].as_str().unwrap();
    let r = app
        .client
        .get(app.link(id, "u1", "original").await)
        .send()
        .await
        .unwrap();
    let original = r.bytes().await.unwrap().to_vec();
    assert_eq!(media["sha256"], sha256_hex(&original));

    let after = exiftool(&original);
    let gps: Vec<&String> = after.keys().filter(|k| k.contains("GPS")).collect();
    assert!(gps.is_empty(), "keeps {gps:?}");
    assert!(!after.contains_key("XMP-photoshop:City"), "{after:?}");
    assert!(!after.contains_key("ExifTool:Warning"), "{after:?}");
    assert_eq!(after["IFD0:Orientation"], 6, "{after:?}");
    assert_eq!(after["IFD0:Make"], "SatchelCam", "only the location goes");

    // Still the same picture: stored sideways with EXIF orientation 6 and no irot.
    let done = app.wait_processed(id).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["metadata"]["width"], 640, "{done}");
    assert_eq!(done["metadata"]["height"], 480, "{done}");
}

/// Runs `satchel transform` on `input` under a data ceiling of `mib` MiB: its report.
fn transform_under(input: &std::path::Path, mib: u64) -> Value {
    use std::os::unix::process::CommandExt;
    let out = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_satchel"));
    command
        .args(["transform", "--kind", "image", "--out"])
        .arg(out.path())
        .arg(input)
        .env("SATCHEL_LOG", "error")
        .stdin(std::process::Stdio::null());
    // SAFETY: only setrlimit runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: mib << 20,
                rlim_max: mib << 20,
            };
            match libc::setrlimit(libc::RLIMIT_DATA, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_declared_heic_flood_fails_in_the_transform_child_without_the_allocation() {
    // 300 MP declared (900 MB of RGB if decoded), refused from its boxes by a child that may
    // not allocate more than 192 MiB; the plain photo passes under the same ceiling.
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let report = transform_under(&fixtures.join("huge-dims.heic"), 192);
    assert_eq!(report["outcome"], "failed", "{report}");
    assert_eq!(report["code"], "too_many_pixels", "{report}");
    // grid.heic whose grid descriptor (its last 8 bytes) claims 20000x15000.
    let mut grid = fixture("grid.heic");
    let at = grid.len() - 4;
    grid[at..].copy_from_slice(&[0x4e, 0x20, 0x3a, 0x98]);
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("grid-bomb.heic");
    std::fs::write(&bomb, grid).unwrap();
    let report = transform_under(&bomb, 192);
    assert_eq!(report["code"], "too_many_pixels", "{report}");
    let report = transform_under(&fixtures.join("rotated.heic"), 192);
    assert_eq!(report["outcome"], "done", "{report}");
}
