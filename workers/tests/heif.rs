//! HEIC/HEIF and AVIF stills through libheif, on the fixtures from `fixtures/make-heif.sh`: the
//! 640x480 four-quadrant picture (red top-left, green top-right, blue bottom-left, white
//! bottom-right) stored in the ways phones store it.

mod common;
use common::fixture;
use satchel_workers::preset::ImagePreset;
use satchel_workers::{image as pipeline, Presets, Processed, Variant, WorkerError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn preset() -> ImagePreset {
    Presets::default().image
}

fn run_path(path: &Path, preset: &ImagePreset) -> Result<Processed, WorkerError> {
    let dir = tempfile::tempdir().unwrap();
    pipeline::process(path, preset, dir.path(), None)
}

fn ok(name: &str) -> (Processed, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline::process(&fixture(name), &preset(), dir.path(), None)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (p, dir)
}

fn code(result: Result<Processed, WorkerError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn variant<'a>(p: &'a Processed, name: &str) -> &'a Variant {
    p.variants
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no {name} variant"))
}

fn open(v: &Variant) -> image::DynamicImage {
    let bytes = std::fs::read(&v.path).unwrap();
    assert_eq!(bytes.len() as u64, v.size, "{}: reported size", v.name);
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (v.width.unwrap(), v.height.unwrap()),
        "{}: reported dimensions",
        v.name
    );
    img
}

/// Each quadrant's colour, sampled at its centre.
fn assert_upright(name: &str, img: &image::DynamicImage) {
    let rgb = img.to_rgb8();
    let at = |fx: f32, fy: f32| {
        let x = ((rgb.width() as f32 * fx) as u32).min(rgb.width() - 1);
        let y = ((rgb.height() as f32 * fy) as u32).min(rgb.height() - 1);
        rgb.get_pixel(x, y).0
    };
    let near = |p: [u8; 3], want: [u8; 3]| p.iter().zip(want).all(|(&a, b)| a.abs_diff(b) < 60);
    for (fx, fy, want, what) in [
        (0.25, 0.25, [0xe0, 0x20, 0x20], "red top-left"),
        (0.75, 0.25, [0x20, 0xc0, 0x20], "green top-right"),
        (0.25, 0.75, [0x20, 0x20, 0xe0], "blue bottom-left"),
        (0.75, 0.75, [0xf0, 0xf0, 0xf0], "white bottom-right"),
    ] {
        let got = at(fx, fy);
        assert!(near(got, want), "{name}: {what} is {got:?}");
    }
}

/// Every still variant, upright and the sizes the preset gives a 640x480 picture.
fn assert_photo(name: &str) {
    assert_photo_sized(name, (640, 480));
}

fn assert_photo_sized(name: &str, displayed: (u32, u32)) {
    let (p, _dir) = ok(name);
    assert_eq!(
        (p.metadata.width, p.metadata.height),
        (Some(displayed.0), Some(displayed.1)),
        "{name}: displayed size"
    );
    let names: Vec<&str> = p.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["thumbnail", "preview", "blurred"], "{name}");
    for (variant_name, size) in [
        ("thumbnail", (320, 240)),
        ("preview", displayed),
        ("blurred", (64, 48)),
    ] {
        let v = variant(&p, variant_name);
        assert_eq!(
            (v.width.unwrap(), v.height.unwrap()),
            size,
            "{name}: {variant_name}"
        );
        assert_eq!(v.mime, "image/webp");
        let img = open(v);
        if variant_name != "blurred" {
            assert_upright(&format!("{name} {variant_name}"), &img);
        }
    }
    let placeholder = p.placeholder.as_ref().expect("placeholders");
    assert!(!placeholder.blurhash.is_empty() && !placeholder.thumbhash.is_empty());
}

#[test]
fn a_plain_heic_gives_every_image_variant() {
    assert_photo("photo.heic");
}

#[test]
fn an_avif_gives_every_image_variant() {
    assert_photo("photo.avif");
}

#[test]
fn a_10_bit_avif_is_mapped_to_8_bit() {
    assert_photo("photo-10bit.avif");
}

#[test]
fn irot_turns_the_picture_once_even_with_exif_saying_the_same() {
    // Stored 480x640, irot 270 and EXIF Orientation=6 (as iPhones write them): turned once.
    assert_photo("rotated.heic");
}

#[test]
fn exif_orientation_turns_a_heic_that_has_no_irot() {
    // Stored 480x640 with only EXIF Orientation=6, as Debian 12's heif-enc leaves a JPEG's.
    assert_photo("exif-rotated.heic");
}

#[test]
fn a_grid_of_tiles_is_assembled_and_turned() {
    // As iPhones store photos: 2x2 separately coded tiles of 480x640 under a grid item with
    // an irot of 90 degrees anticlockwise; 1280x960 once assembled and turned.
    assert_photo_sized("grid.heic", (1280, 960));
}

#[test]
fn a_truncated_heic_fails_like_a_truncated_jpeg() {
    let jpeg = code(run_path(&fixture("truncated.jpg"), &preset()));
    assert_eq!(jpeg, "decode_failed");
    assert_eq!(code(run_path(&fixture("truncated.heic"), &preset())), jpeg);
    // Cut anywhere, from inside the ftyp box to the last byte of the stream.
    let whole = std::fs::read(fixture("photo.heic")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for cut in [20, 100, 300, 420, 500, 5_000, whole.len() - 1] {
        let path = dir.path().join(format!("cut-{cut}.heic"));
        std::fs::write(&path, &whole[..cut]).unwrap();
        let got = code(run_path(&path, &preset()));
        assert_eq!(got, "decode_failed", "photo.heic cut at {cut}");
    }
}

/// `photo.heic` with its `ispe` box claiming `width` x `height`.
fn with_ispe(dir: &Path, width: u32, height: u32) -> PathBuf {
    let mut bytes = std::fs::read(fixture("photo.heic")).unwrap();
    let at = bytes.windows(4).position(|w| w == b"ispe").unwrap() - 4;
    bytes[at + 12..at + 16].copy_from_slice(&width.to_be_bytes());
    bytes[at + 16..at + 20].copy_from_slice(&height.to_be_bytes());
    let path = dir.join(format!("{width}x{height}.heic"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_declared_pixel_flood_is_refused_before_decoding() {
    // 20000x15000 = 300 MP: 900 MB of RGB if it were decoded. Refused from the boxes alone,
    // so quickly and without the allocation.
    let started = Instant::now();
    let result = run_path(&fixture("huge-dims.heic"), &preset());
    assert_eq!(code(result), "too_many_pixels");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let dir = tempfile::tempdir().unwrap();
    // Over max_dimension (30000), and over libheif's own limits: the same code either way.
    for (w, h) in [(40_000, 100), (65_535, 65_535), (u32::MAX / 2, 2)] {
        let started = Instant::now();
        let got = code(run_path(&with_ispe(dir.path(), w, h), &preset()));
        assert_eq!(got, "too_many_pixels", "{w}x{h}");
        assert!(started.elapsed() < Duration::from_secs(1), "{w}x{h}");
    }
}

#[test]
fn a_grid_whose_descriptor_declares_a_flood_is_refused_before_decoding() {
    // grid.heic's `ispe` says 960x1280 (what libheif reports as its size), but libheif
    // allocates the canvas the grid descriptor (its last 8 bytes) names: that is checked too.
    let whole = std::fs::read(fixture("grid.heic")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (w, h) in [(20_000u16, 15_000u16), (65_535, 65_535), (30_001, 10)] {
        let mut bytes = whole.clone();
        let at = bytes.len() - 4;
        bytes[at..at + 2].copy_from_slice(&w.to_be_bytes());
        bytes[at + 2..].copy_from_slice(&h.to_be_bytes());
        let path = dir.path().join(format!("grid-{w}x{h}.heic"));
        std::fs::write(&path, bytes).unwrap();
        let started = Instant::now();
        assert_eq!(
            code(run_path(&path, &preset())),
            "too_many_pixels",
            "{w}x{h}"
        );
        assert!(started.elapsed() < Duration::from_secs(1), "{w}x{h}");
    }
}

#[test]
fn the_preset_limits_apply_to_heic_and_avif() {
    let mut small = preset();
    small.max_pixels = 640 * 480 - 1;
    for name in ["photo.heic", "photo.avif", "rotated.heic"] {
        assert_eq!(
            code(run_path(&fixture(name), &small)),
            "too_many_pixels",
            "{name}"
        );
    }
    let mut narrow = preset();
    narrow.max_dimension = 639;
    assert_eq!(
        code(run_path(&fixture("photo.heic"), &narrow)),
        "too_many_pixels"
    );
    // A stream bigger than its `ispe` says: decoded at its real size, then refused.
    let dir = tempfile::tempdir().unwrap();
    let mut small = preset();
    small.max_pixels = 100_000;
    let understated = with_ispe(dir.path(), 320, 240);
    assert_eq!(code(run_path(&understated, &small)), "too_many_pixels");
    let mut tight = preset();
    tight.max_alloc_bytes = 640 * 480 * 3;
    assert_eq!(
        code(run_path(&fixture("photo.avif"), &tight)),
        "too_many_pixels"
    );
}

#[test]
fn mutated_heic_and_avif_fail_cleanly() {
    // A quick in-process pass; the seeded fuzz through `satchel transform` is in
    // tests/api/hostile/mutations.rs.
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for name in ["photo.heic", "rotated.heic", "photo.avif", "grid.heic"] {
        let seed = std::fs::read(fixture(name)).unwrap();
        for case in 0..40 {
            let mut bytes = seed.clone();
            // Most flips land in the meta box, where the parsing is.
            let span = if case % 2 == 0 { 600 } else { bytes.len() };
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % span.min(bytes.len());
                bytes[at] = next() as u8;
            }
            let path = dir.path().join(format!("m-{case}"));
            std::fs::write(&path, &bytes).unwrap();
            let got = code(run_path(&path, &preset()));
            assert!(
                [
                    "ok",
                    "decode_failed",
                    "unsupported_codec",
                    "too_many_pixels"
                ]
                .contains(&got),
                "{name} case {case}: {got}"
            );
        }
    }
}
