//! The `animation` variant of animated GIF, WebP and APNG, through the crate's entry point, on
//! the fixtures of `fixtures/make-animations.sh`. What was written is checked with `ffprobe`
//! and `ffmpeg` (Debian's, the same libraries the workers link), never with the code under test.

#[path = "../../tests/common/mod.rs"]
mod common;
use common::fixture;
use satchel_workers::{MediaKind, Presets, Processed, Variant, WorkerError};
use satchel_workers_av::process;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn run(name: &str) -> (tempfile::TempDir, Result<Processed, WorkerError>) {
    let out = tempfile::tempdir().unwrap();
    let result = process(
        MediaKind::Image,
        &fixture(name),
        &Presets::default(),
        out.path(),
    );
    (out, result)
}

fn ok(name: &str) -> (tempfile::TempDir, Processed) {
    let (dir, result) = run(name);
    (dir, result.unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn variant<'a>(p: &'a Processed, name: &str) -> &'a Variant {
    p.variants
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no {name} variant"))
}

/// `ffprobe`'s facts about an MP4.
#[derive(Debug)]
struct Probe {
    streams: Vec<String>,
    video: Vec<(String, String)>,
    duration_s: f64,
}

impl Probe {
    fn of(path: &Path) -> Self {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries"])
            .arg("stream=codec_type,codec_name,pix_fmt,width,height,profile:format=duration")
            .args(["-of", "compact=p=1"])
            .arg(path)
            .output()
            .expect("ffprobe runs");
        assert!(out.status.success(), "ffprobe: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut probe = Probe {
            streams: Vec::new(),
            video: Vec::new(),
            duration_s: f64::NAN,
        };
        for line in text.lines() {
            let mut fields = line.split('|');
            let section = fields.next().unwrap_or_default();
            let pairs: Vec<(String, String)> = fields
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let get = |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            match section {
                "stream" => {
                    probe.streams.push(get("codec_type"));
                    if get("codec_type") == "video" {
                        probe.video = pairs.clone();
                    }
                }
                "format" => probe.duration_s = get("duration").parse().unwrap(),
                _ => {}
            }
        }
        probe
    }

    fn video(&self, key: &str) -> &str {
        self.video
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {key} in {self:?}"))
    }

    fn size(&self) -> (u32, u32) {
        (
            self.video("width").parse().unwrap(),
            self.video("height").parse().unwrap(),
        )
    }
}

/// The top-level MP4 boxes in order.
fn top_boxes(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        if size < 8 {
            break;
        }
        at += size;
    }
    out
}

/// Every decoded frame of an MP4 as players show it: its start and length in ms (until the
/// next frame starts, the last one until the end), and its pixels (RGB).
struct Shown {
    start_ms: f64,
    duration_ms: f64,
    rgb: Vec<u8>,
}

fn shown_frames(path: &Path, (width, height): (u32, u32)) -> Vec<Shown> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .arg("frame=best_effort_timestamp_time")
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe: {out:?}");
    let starts: Vec<f64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split(',').next())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<f64>().unwrap() * 1000.0)
        .collect();
    let end_ms = Probe::of(path).duration_s * 1000.0;
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg: {out:?}");
    let frame_bytes = (width * height * 3) as usize;
    assert_eq!(
        out.stdout.len(),
        frame_bytes * starts.len(),
        "one picture per frame"
    );
    let ends = starts.iter().skip(1).copied().chain([end_ms]);
    starts
        .iter()
        .zip(ends)
        .zip(out.stdout.chunks_exact(frame_bytes))
        .map(|((&start_ms, end), rgb)| Shown {
            start_ms,
            duration_ms: end - start_ms,
            rgb: rgb.to_vec(),
        })
        .collect()
}

/// The colour at (`fx`, `fy`) of the frame (fractions of the width and height).
fn colour(frame: &Shown, (width, height): (u32, u32), fx: f64, fy: f64) -> [u8; 3] {
    let x = ((f64::from(width) * fx) as u32).min(width - 1);
    let y = ((f64::from(height) * fy) as u32).min(height - 1);
    let at = ((y * width + x) * 3) as usize;
    [frame.rgb[at], frame.rgb[at + 1], frame.rgb[at + 2]]
}

fn named(c: [u8; 3]) -> &'static str {
    let [r, g, b] = c.map(i32::from);
    let near = |er: i32, eg: i32, eb: i32| (r - er).abs() + (g - eg).abs() + (b - eb).abs() < 90;
    match () {
        _ if near(255, 0, 0) => "red",
        _ if near(0, 255, 0) => "green",
        _ if near(0, 0, 255) => "blue",
        _ if near(255, 255, 255) => "white",
        _ => "other",
    }
}

/// Everything the contract says of any `animation` variant, and its size.
fn assert_playable(done: &Processed, original: (u32, u32)) -> (u32, u32) {
    let v = variant(done, "animation");
    assert_eq!(v.mime, "video/mp4");
    assert!(v.path.ends_with("animation.mp4"), "{:?}", v.path);
    let bytes = std::fs::read(&v.path).unwrap();
    assert_eq!(bytes.len() as u64, v.size, "reported size");
    let boxes = top_boxes(&bytes);
    let moov = boxes.iter().position(|b| b == "moov").expect("a moov box");
    let mdat = boxes.iter().position(|b| b == "mdat").expect("an mdat box");
    assert!(moov < mdat, "moov first (faststart): {boxes:?}");

    let probe = Probe::of(&v.path);
    assert_eq!(probe.streams, ["video"], "one video stream, no audio");
    assert_eq!(probe.video("codec_name"), "h264");
    assert_eq!(probe.video("pix_fmt"), "yuv420p");
    let (w, h) = probe.size();
    assert_eq!(
        (Some(w), Some(h)),
        (v.width, v.height),
        "reported dimensions"
    );
    assert!(w % 2 == 0 && h % 2 == 0, "even sides: {w}x{h}");
    assert!(w.min(h) <= 720, "short side at most 720: {w}x{h}");
    assert!(
        w <= original.0 && h <= original.1,
        "never upscaled: {w}x{h}"
    );
    let reported = v.duration_ms.expect("a duration") as f64;
    assert_eq!(done.metadata.duration_ms, v.duration_ms);
    assert!(
        (probe.duration_s * 1000.0 - reported).abs() <= 20.0,
        "ffprobe says {} s, the variant {reported} ms",
        probe.duration_s
    );
    (w, h)
}

/// The frames' timing, each within a millisecond or two (the MP4 time base is finer).
fn assert_timing(frames: &[Shown], expected: &[(f64, f64)]) {
    let got: Vec<(f64, f64)> = frames.iter().map(|f| (f.start_ms, f.duration_ms)).collect();
    assert_eq!(got.len(), expected.len(), "frames: {got:?}");
    for (g, e) in got.iter().zip(expected) {
        assert!(
            (g.0 - e.0).abs() < 2.0 && (g.1 - e.1).abs() < 2.0,
            "frames (start, duration) in ms: {got:?}, expected {expected:?}"
        );
    }
}

#[test]
fn an_animated_gif_becomes_a_muted_h264_mp4_with_its_timing() {
    let (_dir, done) = ok("anim.gif");
    let size = assert_playable(&done, (120, 80));
    assert_eq!(size, (120, 80), "already even and inside the box");
    assert_eq!(done.metadata.duration_ms, Some(300));
    assert_eq!(
        (done.metadata.width, done.metadata.height),
        (Some(120), Some(80))
    );
    let frames = shown_frames(&variant(&done, "animation").path, size);
    assert_timing(&frames, &[(0.0, 100.0), (100.0, 100.0), (200.0, 100.0)]);
    let colours: Vec<_> = frames
        .iter()
        .map(|f| named(colour(f, size, 0.5, 0.5)))
        .collect();
    assert_eq!(colours, ["red", "green", "blue"]);
    // The stills are still there, from the first frame.
    for name in ["thumbnail", "preview", "blurred"] {
        variant(&done, name);
    }
    let names: Vec<&str> = done.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["thumbnail", "preview", "blurred", "animation"]);
}

#[test]
fn an_animated_gifs_stills_show_its_first_frame_and_do_not_animate() {
    let (_dir, done) = ok("anim.gif");
    let thumb = variant(&done, "thumbnail");
    let bytes = std::fs::read(&thumb.path).unwrap();
    let rgb = image::load_from_memory(&bytes).unwrap().to_rgb8();
    let [r, g, b] = rgb.get_pixel(rgb.width() / 2, rgb.height() / 2).0;
    assert!(
        r > 200 && g < 60 && b < 60,
        "the first frame is red, got {r},{g},{b}"
    );
    assert!(
        !bytes.windows(4).any(|w| w == b"ANIM"),
        "the thumbnail is a still WebP"
    );
}

#[test]
fn an_animated_webp_becomes_an_mp4() {
    let (_dir, done) = ok("anim.webp");
    let size = assert_playable(&done, (160, 120));
    assert_eq!(size, (160, 120));
    assert_eq!(done.metadata.duration_ms, Some(600));
    let frames = shown_frames(&variant(&done, "animation").path, size);
    assert_timing(&frames, &[(0.0, 100.0), (100.0, 200.0), (300.0, 300.0)]);
    let colours: Vec<_> = frames
        .iter()
        .map(|f| named(colour(f, size, 0.5, 0.5)))
        .collect();
    assert_eq!(colours, ["red", "green", "blue"]);
}

/// Frame 1 is disposed to the previous canvas and frame 2 blends over it: both have to be
/// composited, not shown as their bare rectangles.
#[test]
fn an_apng_is_composited_with_its_blend_and_dispose_ops() {
    let (_dir, done) = ok("anim.apng");
    let size = assert_playable(&done, (160, 120));
    assert_eq!(done.metadata.duration_ms, Some(1000));
    let frames = shown_frames(&variant(&done, "animation").path, size);
    assert_timing(&frames, &[(0.0, 200.0), (200.0, 300.0), (500.0, 500.0)]);
    let centre: Vec<_> = frames
        .iter()
        .map(|f| named(colour(f, size, 0.5, 0.5)))
        .collect();
    assert_eq!(
        centre,
        ["red", "green", "red"],
        "frame 1 disposed to the previous"
    );
    let corner: Vec<_> = frames
        .iter()
        .map(|f| named(colour(f, size, 0.1, 0.1)))
        .collect();
    assert_eq!(
        corner,
        ["red", "red", "blue"],
        "frame 2 drawn over the canvas"
    );
}

#[test]
fn gif_delays_of_0_and_1_centiseconds_play_for_100_ms_as_in_browsers() {
    let (_dir, done) = ok("zero-delay.gif");
    let size = assert_playable(&done, (100, 60));
    assert_eq!(
        done.metadata.duration_ms,
        Some(270),
        "100 + 100 + 20 + 50 ms"
    );
    let frames = shown_frames(&variant(&done, "animation").path, size);
    assert_timing(
        &frames,
        &[(0.0, 100.0), (100.0, 100.0), (200.0, 20.0), (220.0, 50.0)],
    );
    let colours: Vec<_> = frames
        .iter()
        .map(|f| named(colour(f, size, 0.5, 0.5)))
        .collect();
    assert_eq!(colours, ["red", "green", "blue", "white"]);
}

#[test]
fn a_frame_that_repeats_the_one_before_lengthens_it() {
    let (_dir, done) = ok("repeat.gif");
    let size = assert_playable(&done, (32, 32));
    assert_eq!(done.metadata.duration_ms, Some(600));
    let frames = shown_frames(&variant(&done, "animation").path, size);
    assert_timing(&frames, &[(0.0, 300.0), (300.0, 300.0)]);
}

#[test]
fn a_large_animation_fits_720_on_its_short_side_with_even_sides() {
    let (_dir, done) = ok("wide.gif");
    // 1501 x 720/901 = 1199.4, down to the even 1198.
    assert_eq!(assert_playable(&done, (1501, 901)), (1198, 720));
    assert_eq!(
        (done.metadata.width, done.metadata.height),
        (Some(1501), Some(901))
    );
}

#[test]
fn a_small_odd_animation_loses_a_pixel_rather_than_being_upscaled() {
    let (_dir, done) = ok("odd.gif");
    assert_eq!(assert_playable(&done, (75, 101)), (74, 100));
}

#[test]
fn a_still_gif_png_or_webp_has_no_animation() {
    for name in ["photo.png", "photo.webp", "photo.jpg"] {
        let (_dir, done) = ok(name);
        assert!(
            done.variants.iter().all(|v| v.name != "animation"),
            "{name}"
        );
        assert_eq!(done.metadata.duration_ms, None, "{name}");
    }
}

/// The peak resident memory of this test process so far (nextest runs each test in its own).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 600 one-pixel frames on a 4000x4000 canvas: 14 KB of file, 9.6 gigapixels composited. Its
/// still would pass (16 MP); the frames are refused from their descriptors, before any pixel
/// is decoded.
#[test]
fn a_frame_bomb_fails_too_many_pixels_in_bounded_time_and_memory() {
    assert!(std::fs::metadata(fixture("frame-bomb.gif")).unwrap().len() < 20_000);
    let before = peak_rss_kib();
    let started = Instant::now();
    let (dir, result) = run("frame-bomb.gif");
    let took = started.elapsed();
    let grew_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    let err = result.expect_err("a frame bomb is refused");
    assert_eq!(err.code(), "too_many_pixels", "{err}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(grew_mib < 32, "peak memory grew by {grew_mib} MiB");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn too_many_frames_fail_too_many_pixels() {
    let started = Instant::now();
    let (_dir, result) = run("frame-count.gif");
    assert_eq!(
        result.expect_err("over max_frames").code(),
        "too_many_pixels"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn an_animation_over_the_duration_limit_is_too_long() {
    let (_dir, result) = run("long-delay.gif");
    assert_eq!(result.expect_err("400 s of GIF").code(), "too_long");
}

/// The limits are the preset's: lowered, they refuse what the default lets through.
#[test]
fn the_limits_are_the_presets() {
    let mut presets = Presets::default();
    presets.image.animation.max_total_pixels = 120 * 80 * 2;
    let out = tempfile::tempdir().unwrap();
    let err = process(MediaKind::Image, &fixture("anim.gif"), &presets, out.path())
        .expect_err("three frames of 120x80 over a two-frame budget");
    assert_eq!(err.code(), "too_many_pixels");

    // Exactly at the limits passes: three frames of 120x80, three frames allowed.
    let mut presets = Presets::default();
    presets.image.animation.max_total_pixels = 120 * 80 * 3;
    presets.image.max_frames = 3;
    let done = process(MediaKind::Image, &fixture("anim.gif"), &presets, out.path()).unwrap();
    assert!(done.variants.iter().any(|v| v.name == "animation"));
    presets.image.max_frames = 2;
    let err = process(MediaKind::Image, &fixture("anim.gif"), &presets, out.path())
        .expect_err("three frames over a limit of two");
    assert_eq!(err.code(), "too_many_pixels");

    let mut presets = Presets::default();
    presets.image.animation.max_duration_s = 0;
    let err = process(
        MediaKind::Image,
        &fixture("anim.webp"),
        &presets,
        out.path(),
    )
    .expect_err("600 ms over a zero-second limit");
    assert_eq!(err.code(), "too_long");
}

/// Cut and corrupted animations either give variants or an ordinary error; never a panic, and
/// never more than the frames that are there.
#[test]
fn hostile_animations_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for name in ["anim.gif", "anim.webp", "anim.apng", "zero-delay.gif"] {
        let src = std::fs::read(fixture(name)).unwrap();
        let n = src.len();
        let cuts = [20, 60, n / 3, n / 2, n - 10, n - 1];
        cases.extend(common::cut_and_flipped(&src, &cuts, 6, 29));
    }
    for (i, bytes) in cases.iter().enumerate() {
        let input = dir.path().join(format!("case-{i}"));
        std::fs::write(&input, bytes).unwrap();
        let out = dir.path().join(format!("out-{i}"));
        std::fs::create_dir(&out).unwrap();
        if let Ok(done) = process(MediaKind::Image, &input, &Presets::default(), &out) {
            if let Some(v) = done.variants.iter().find(|v| v.name == "animation") {
                assert!(Probe::of(&v.path).duration_s > 0.0, "case {i}");
            }
        }
    }
}
