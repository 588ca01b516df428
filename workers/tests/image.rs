//! The image pipeline's contract, checked on the fixtures from `fixtures/make-images.sh`.

mod common;
use common::fixture;
use satchel_workers::preset::{ImageFormat, ImagePreset};
use satchel_workers::{image as pipeline, Presets, Processed, Variant, WorkerError};
use std::time::{Duration, Instant};

fn preset() -> ImagePreset {
    Presets::default().image
}

fn jpeg_preset() -> ImagePreset {
    let mut p = preset();
    for out in [&mut p.thumbnail, &mut p.preview, &mut p.blurred] {
        out.format = ImageFormat::Jpeg;
    }
    p
}

fn run(name: &str, preset: &ImagePreset) -> (Result<Processed, WorkerError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let result = pipeline::process(&fixture(name), preset, dir.path(), None);
    (result, dir)
}

fn ok(name: &str) -> (Processed, tempfile::TempDir) {
    let (result, dir) = run(name, &preset());
    (result.unwrap_or_else(|e| panic!("{name}: {e}")), dir)
}

fn variant<'a>(p: &'a Processed, name: &str) -> &'a Variant {
    p.variants
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no {name} variant"))
}

fn size(v: &Variant) -> (u32, u32) {
    (v.width.unwrap(), v.height.unwrap())
}

/// Decodes a written variant and checks that what is on disk matches what was reported.
fn open(v: &Variant) -> image::DynamicImage {
    let bytes = std::fs::read(&v.path).unwrap();
    assert_eq!(bytes.len() as u64, v.size, "{}: reported size", v.name);
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        size(v),
        "{}: reported dimensions",
        v.name
    );
    img
}

fn rgb_at(img: &image::DynamicImage, fx: f32, fy: f32) -> [u8; 3] {
    let x = ((img.width() as f32 * fx) as u32).min(img.width() - 1);
    let y = ((img.height() as f32 * fy) as u32).min(img.height() - 1);
    let p = img.to_rgb8().get_pixel(x, y).0;
    p
}

fn code(result: Result<Processed, WorkerError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[test]
fn a_sideways_phone_photo_is_reported_and_rendered_upright() {
    let (p, _dir) = ok("photo.jpg");
    // Stored 640x480 with EXIF Orientation=6.
    assert_eq!(
        (p.metadata.width, p.metadata.height),
        (Some(480), Some(640))
    );
    assert_eq!(size(variant(&p, "preview")), (480, 640), "never upscaled");
    assert_eq!(size(variant(&p, "thumbnail")), (240, 320));
    assert_eq!(size(variant(&p, "blurred")), (48, 64));

    // Stored quadrants: red top-left, green top-right, blue bottom-left, white bottom-right.
    // Turned a quarter clockwise, blue is top-left and red top-right.
    let thumb = open(variant(&p, "thumbnail"));
    let [r, g, b] = rgb_at(&thumb, 0.2, 0.2);
    assert!(
        b > 150 && r < 100 && g < 100,
        "top-left should be blue, got {r},{g},{b}"
    );
    let [r, g, b] = rgb_at(&thumb, 0.8, 0.2);
    assert!(
        r > 150 && g < 100 && b < 100,
        "top-right should be red, got {r},{g},{b}"
    );
    let [r, g, b] = rgb_at(&thumb, 0.2, 0.8);
    assert!(
        r > 200 && g > 200 && b > 200,
        "bottom-left should be white, got {r},{g},{b}"
    );
}

#[test]
fn no_exif_gps_or_camera_data_survives_in_any_output() {
    let original = std::fs::read(fixture("photo.jpg")).unwrap();
    assert!(contains(&original, b"Exif") && contains(&original, b"SatchelCam"));

    for preset in [preset(), jpeg_preset()] {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline::process(&fixture("photo.jpg"), &preset, dir.path(), None).unwrap();
        assert_eq!(p.variants.len(), 3);
        for v in &p.variants {
            let bytes = std::fs::read(&v.path).unwrap();
            for marker in [
                &b"Exif"[..],
                b"SatchelCam",
                b"ICC_PROFILE",
                b"http://ns.adobe.com",
            ] {
                assert!(
                    !contains(&bytes, marker),
                    "{} carries {:?}",
                    v.path.display(),
                    marker
                );
            }
            if v.mime == "image/webp" {
                let chunks = riff_chunks(&bytes);
                for id in &chunks {
                    assert!(
                        [b"VP8 ", b"VP8L", b"VP8X", b"ALPH"].contains(&id),
                        "{}: unexpected WebP chunk {:?}",
                        v.name,
                        String::from_utf8_lossy(id)
                    );
                }
            } else {
                assert_eq!(&bytes[..2], b"\xff\xd8");
                assert!(
                    !jpeg_markers(&bytes)
                        .iter()
                        .any(|m| (0xE1..=0xEF).contains(m)),
                    "{}: APPn other than JFIF",
                    v.name
                );
            }
        }
    }
}

#[test]
fn a_small_image_is_never_upscaled() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("small.png");
    image::RgbImage::from_pixel(200, 100, image::Rgb([30, 120, 200]))
        .save(&input)
        .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let p = pipeline::process(&input, &preset(), &out, None).unwrap();
    assert_eq!(
        (p.metadata.width, p.metadata.height),
        (Some(200), Some(100))
    );
    assert_eq!(size(variant(&p, "preview")), (200, 100));
    assert_eq!(size(variant(&p, "thumbnail")), (200, 100));
    assert_eq!(size(variant(&p, "blurred")), (64, 32));
    for v in &p.variants {
        open(v);
        assert_eq!(v.path, out.join(format!("{}.webp", v.name)));
        assert_eq!(v.mime, "image/webp");
        assert_eq!(v.duration_ms, None);
    }
}

#[test]
fn a_large_jpeg_is_bounded_by_the_preset_edges() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jpg");
    // 2600 px: the decoder takes it at 1/2 scale (1300 px), just over the preview's 1280.
    let img = image::RgbImage::from_fn(2600, 1800, |x, y| {
        image::Rgb([(x / 11) as u8, (y / 8) as u8, 90])
    });
    img.save(&input).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let p = pipeline::process(&input, &preset(), &out, None).unwrap();
    assert_eq!(
        (p.metadata.width, p.metadata.height),
        (Some(2600), Some(1800))
    );
    assert_eq!(size(variant(&p, "preview")), (1280, 886));
    assert_eq!(size(variant(&p, "thumbnail")), (320, 222));
    assert_eq!(size(variant(&p, "blurred")), (64, 44));
    let preview = open(variant(&p, "preview"));
    // The gradient survives the scaled decode: left edge dark red channel, right edge bright.
    assert!(rgb_at(&preview, 0.02, 0.5)[0] < 40 && rgb_at(&preview, 0.98, 0.5)[0] > 200);

    let steps: Vec<&str> = p.steps.iter().map(|s| s.name).collect();
    assert_eq!(steps, ["decode", "resize", "encode", "placeholder"]);
}

#[test]
fn a_pixel_flood_is_refused_from_the_header_quickly() {
    let started = Instant::now();
    let (result, dir) = run("pixel-flood.png", &preset());
    // Decoding would need 30 GB, more than this machine has: refusing at all proves it was
    // refused before allocating.
    assert_eq!(code(result), "too_many_pixels");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn limits_come_from_the_preset() {
    let mut p = preset();
    p.max_pixels = 640 * 480 - 1;
    let (result, _dir) = run("photo.jpg", &p);
    assert_eq!(code(result), "too_many_pixels");

    let mut p = preset();
    p.max_dimension = 399;
    let (result, _dir) = run("photo.png", &p);
    assert_eq!(code(result), "too_many_pixels");
}

#[test]
fn broken_or_disguised_inputs_fail_to_decode() {
    for name in ["truncated.jpg", "html-as.png", "not-an-image.txt"] {
        let (result, _dir) = run(name, &preset());
        assert_eq!(code(result), "decode_failed", "{name}");
    }
}

#[test]
fn hostile_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let photo = std::fs::read(fixture("photo.jpg")).unwrap();
    let png = std::fs::read(fixture("photo.png")).unwrap();
    let gif = std::fs::read(fixture("anim.gif")).unwrap();
    let mut cases: Vec<Vec<u8>> = vec![vec![], b"\xff\xd8".to_vec(), b"\xff\xd8\xff".to_vec()];
    // Cut at many points and with bytes flipped in the headers and the entropy-coded data.
    for src in [&photo, &png, &gif] {
        let cuts = [1, 3, 20, 100, 300, src.len() / 3, src.len() - 1];
        cases.extend(common::cut_and_flipped(src, &cuts, 2, 23));
    }
    for (i, bytes) in cases.iter().enumerate() {
        let input = dir.path().join(format!("case-{i}"));
        std::fs::write(&input, bytes).unwrap();
        let out = dir.path().join(format!("out-{i}"));
        std::fs::create_dir(&out).unwrap();
        // Either outcome is fine; unwinding out of `process` is not.
        let _ = pipeline::process(&input, &preset(), &out, None);
    }
}

#[test]
fn an_animated_picture_without_ffmpeg_fails_before_decoding() {
    // Its `animation` variant needs FFmpeg (satchel-workers-av), which is not given here: the
    // job says so rather than leaving the variant out (`tests/animation.rs` there has it).
    let (result, dir) = run("anim.gif", &preset());
    let err = result.unwrap_err();
    assert_eq!(err.code(), "unsupported_codec", "{err}");
    assert!(err.to_string().contains("FFmpeg"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
    // Told apart from other unsupported inputs, so that a caller can hand it on.
    assert!(
        matches!(err, satchel_workers::WorkerError::NeedsAv(_)),
        "{err:?}"
    );
}

#[test]
fn transparency_is_kept_in_webp_and_flattened_onto_white_in_jpeg() {
    let (p, _dir) = ok("photo.png");
    let thumb = open(variant(&p, "thumbnail")).to_rgba8();
    assert_eq!(thumb.get_pixel(2, 2)[3], 0, "corner stays transparent");
    assert_eq!(
        thumb.get_pixel(thumb.width() / 2, thumb.height() / 2)[3],
        255
    );

    let (result, _dir) = run("photo.png", &jpeg_preset());
    let p = result.unwrap();
    let v = variant(&p, "thumbnail");
    assert_eq!(v.mime, "image/jpeg");
    assert!(v.path.to_string_lossy().ends_with("thumbnail.jpg"));
    let thumb = open(v);
    let [r, g, b] = rgb_at(&thumb, 0.02, 0.02);
    assert!(
        r > 245 && g > 245 && b > 245,
        "corner is white, got {r},{g},{b}"
    );
    let [r, g, b] = rgb_at(&thumb, 0.5, 0.5);
    assert!(
        r > 170 && g < 110 && b < 60,
        "disc keeps its colour, got {r},{g},{b}"
    );
}

#[test]
fn the_jpeg_preset_writes_jpeg_files() {
    let (result, _dir) = run("photo.jpg", &jpeg_preset());
    let p = result.unwrap();
    for v in &p.variants {
        assert_eq!(v.mime, "image/jpeg");
        assert_eq!(&std::fs::read(&v.path).unwrap()[..3], b"\xff\xd8\xff");
        open(v);
    }
    assert_eq!(size(variant(&p, "preview")), (480, 640));
}

#[test]
fn grey_cmyk_and_webp_inputs_decode() {
    let (p, _dir) = ok("gray.jpg");
    assert_eq!(
        (p.metadata.width, p.metadata.height),
        (Some(320), Some(240))
    );
    let [r, g, b] = rgb_at(&open(variant(&p, "preview")), 0.1, 0.1);
    assert!(
        r.abs_diff(g) < 8 && g.abs_diff(b) < 8,
        "grey stays grey, got {r},{g},{b}"
    );

    let (p, _dir) = ok("cmyk.jpg");
    let [r, g, b] = rgb_at(&open(variant(&p, "thumbnail")), 0.5, 0.5);
    // The fixture is a flat #e02020 converted to CMYK by ImageMagick.
    assert!(
        r > 180 && g < 80 && b < 80,
        "CMYK red comes out red, got {r},{g},{b}"
    );

    let (p, _dir) = ok("photo.webp");
    assert_eq!(
        (p.metadata.width, p.metadata.height),
        (Some(320), Some(240))
    );
    open(variant(&p, "preview"));
}

#[test]
fn placeholders_are_present_and_decodable() {
    let (p, _dir) = ok("photo.jpg");
    let ph = p.placeholder.expect("placeholder");
    let (cx, cy) = preset().blurhash_components;
    assert_eq!(ph.blurhash.len(), 6 + 2 * (cx * cy - 1) as usize);
    assert!(blurhash::decode(&ph.blurhash, 32, 32, 1.0).is_ok());

    assert!(!ph.thumbhash.contains('='), "no padding");
    let bytes = base64_decode(&ph.thumbhash);
    let (w, h, rgba) = thumbhash::thumb_hash_to_rgba(&bytes).expect("valid thumbhash");
    assert_eq!(rgba.len(), w * h * 4);
    // Portrait, as displayed.
    let ratio = thumbhash::thumb_hash_to_approximate_aspect_ratio(&bytes).unwrap();
    assert!((ratio - 0.75).abs() < 0.1, "aspect ratio {ratio}");
}

#[test]
fn still_variants_makes_only_the_named_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let frame = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        1920,
        1080,
        image::Rgb([10, 200, 40]),
    ));
    let (variants, placeholder) = pipeline::still_variants(
        frame.clone(),
        &preset(),
        dir.path(),
        &["thumbnail", "blurred"],
    )
    .unwrap();
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["thumbnail", "blurred"]);
    assert_eq!(size(&variants[0]), (320, 180));
    assert_eq!(size(&variants[1]), (64, 36));
    for v in &variants {
        open(v);
    }
    assert!(!placeholder.blurhash.is_empty() && !placeholder.thumbhash.is_empty());
    assert!(!dir.path().join("preview.webp").exists());

    let err = pipeline::still_variants(frame, &preset(), dir.path(), &["poster"]).unwrap_err();
    assert_eq!(err.code(), "encode_failed");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The four-character ids of the chunks in a RIFF WebP file, nested ones included via VP8X.
fn riff_chunks(bytes: &[u8]) -> Vec<[u8; 4]> {
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WEBP");
    let mut ids = Vec::new();
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        ids.push(id);
        at += 8 + len + (len & 1);
    }
    ids
}

/// The marker bytes of the segments before the scan data of a JPEG.
fn jpeg_markers(bytes: &[u8]) -> Vec<u8> {
    let mut markers = Vec::new();
    let mut at = 2;
    while at + 4 <= bytes.len() && bytes[at] == 0xff {
        let marker = bytes[at + 1];
        markers.push(marker);
        if marker == 0xda {
            break;
        }
        let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        at += 2 + len;
    }
    markers
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .expect("standard alphabet") as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// A preset's `webp_method` and `webp_sns` reach libwebp: absent, they are satchel's 2 and 50;
/// method 6 writes a smaller preview of the same photo than method 0 at the same quality; and
/// out-of-range values are clamped to libwebp's, not refused by it mid-job.
#[test]
fn the_preset_chooses_libwebps_method_and_noise_shaping() {
    let toml = satchel_workers::preset::DEFAULT_TOML;
    let defaults = Presets::from_toml(toml).unwrap().image;
    assert_eq!(
        (defaults.preview.webp_method, defaults.preview.webp_sns),
        (2, 50)
    );
    let preview_bytes = |method: i32, sns: i32| {
        let mut p = preset();
        p.preview.webp_method = method;
        p.preview.webp_sns = sns;
        let (result, _dir) = run("photo.jpg", &p);
        let p = result.unwrap();
        let preview = variant(&p, "preview");
        open(preview);
        std::fs::read(&preview.path).unwrap()
    };
    let fast = preview_bytes(0, 50);
    let small = preview_bytes(6, 50);
    assert!(
        small.len() < fast.len(),
        "m6 {} B, m0 {} B",
        small.len(),
        fast.len()
    );
    assert_ne!(preview_bytes(2, 0), preview_bytes(2, 100));
    assert_eq!(preview_bytes(99, -5), preview_bytes(6, 0));
}
