//! The video pipeline through the crate's entry point: real fixtures in, real files out, and
//! hostile inputs refused without touching anything but the input.

#[path = "../../tests/common/mod.rs"]
mod common;
use common::fixture;
use satchel_workers::{MediaKind, Presets, Processed, WorkerError};
use satchel_workers_av::process;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;

fn run(path: &Path) -> (tempfile::TempDir, Result<Processed, WorkerError>) {
    let out = tempfile::tempdir().unwrap();
    let result = process(MediaKind::Video, path, &Presets::default(), out.path());
    (out, result)
}

/// Top-level MP4 boxes in order, and every track's `tkhd` width × height.
fn mp4_layout(bytes: &[u8]) -> (Vec<String>, Vec<(u32, u32)>) {
    fn boxes(data: &[u8]) -> Vec<(String, &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= data.len() {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            let kind = String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned();
            let end = if size < 8 {
                data.len()
            } else {
                (at + size).min(data.len())
            };
            out.push((kind, &data[at + 8..end]));
            at = end;
        }
        out
    }
    let top = boxes(bytes);
    let mut sizes = Vec::new();
    for (_, moov) in top.iter().filter(|(k, _)| k == "moov") {
        for (_, trak) in boxes(moov).iter().filter(|(k, _)| k == "trak") {
            for (_, tkhd) in boxes(trak).iter().filter(|(k, _)| k == "tkhd") {
                let n = tkhd.len();
                let w = u32::from_be_bytes(tkhd[n - 8..n - 4].try_into().unwrap()) >> 16;
                let h = u32::from_be_bytes(tkhd[n - 4..n].try_into().unwrap()) >> 16;
                if w > 0 && h > 0 {
                    sizes.push((w, h));
                }
            }
        }
    }
    (top.into_iter().map(|(k, _)| k).collect(), sizes)
}

fn variant<'a>(done: &'a Processed, name: &str) -> &'a satchel_workers::Variant {
    done.variants
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no {name} variant"))
}

fn assert_moov_first(path: &Path) -> Vec<(u32, u32)> {
    let (top, sizes) = mp4_layout(&std::fs::read(path).unwrap());
    let moov = top.iter().position(|k| k == "moov").expect("a moov box");
    let mdat = top.iter().position(|k| k == "mdat").expect("an mdat box");
    assert!(moov < mdat, "moov after mdat: {top:?}");
    sizes
}

#[test]
fn a_small_clip_keeps_its_size_and_gets_every_variant() {
    let (_out, done) = run(&fixture("clip.mp4"));
    let done = done.unwrap();
    assert_eq!(
        (done.metadata.width, done.metadata.height),
        (Some(320), Some(240))
    );
    assert_eq!(done.metadata.duration_ms, Some(2000));
    let video = variant(&done, "video");
    assert_eq!(
        (video.mime.as_str(), video.width, video.height),
        ("video/mp4", Some(320), Some(240))
    );
    // Already H.264 + AAC inside the box at a low bitrate: copied, not re-encoded.
    assert!(
        done.steps.iter().any(|s| s.name == "remux"),
        "{:?}",
        done.steps
    );
    assert_eq!(
        assert_moov_first(&video.path),
        vec![(320, 240)],
        "never upscaled"
    );
    for name in ["poster", "thumbnail", "blurred"] {
        assert!(variant(&done, name).size > 0, "{name}");
    }
    assert!(done.placeholder.is_some());
}

#[test]
fn the_poster_skips_the_black_opening() {
    let (_out, done) = run(&fixture("clip.mp4"));
    let done = done.unwrap();
    let poster = image::open(&variant(&done, "poster").path)
        .unwrap()
        .to_luma8();
    let mean =
        poster.pixels().map(|p| f64::from(p.0[0])).sum::<f64>() / poster.pixels().len() as f64;
    assert!(mean > 40.0, "poster mean luma {mean}");
}

#[test]
fn a_1080p_video_is_scaled_to_fit_1280x720_with_moov_first() {
    let (_out, done) = run(&fixture("clip-1080p.mp4"));
    let done = done.unwrap();
    assert_eq!(
        (done.metadata.width, done.metadata.height),
        (Some(1920), Some(1080))
    );
    let video = variant(&done, "video");
    assert_eq!((video.width, video.height), (Some(1280), Some(720)));
    assert!(done.steps.iter().any(|s| s.name == "transcode"));
    assert_eq!(assert_moov_first(&video.path), vec![(1280, 720)]);
    let poster = variant(&done, "poster");
    assert_eq!((poster.width, poster.height), (Some(1280), Some(720)));
}

#[test]
fn a_rotated_phone_video_comes_out_portrait() {
    let (_out, done) = run(&fixture("clip-rotated.mp4"));
    let done = done.unwrap();
    assert_eq!(
        (done.metadata.width, done.metadata.height),
        (Some(240), Some(320))
    );
    let video = variant(&done, "video");
    assert_eq!(
        assert_moov_first(&video.path),
        vec![(240, 320)],
        "pixels upright, not just flagged"
    );
    let poster = variant(&done, "poster");
    assert!(poster.height > poster.width);
}

#[test]
fn webm_is_transcoded_to_mp4() {
    let (_out, done) = run(&fixture("clip.webm"));
    let done = done.unwrap();
    let video = variant(&done, "video");
    assert_eq!(assert_moov_first(&video.path), vec![(320, 240)]);
}

#[test]
fn video_without_audio_works() {
    let (_out, done) = run(&fixture("clip-noaudio.mp4"));
    let done = done.unwrap();
    assert_moov_first(&variant(&done, "video").path);
    assert!(done.variants.iter().any(|v| v.name == "poster"));
}

#[test]
fn audio_only_mp4_gives_a_video_variant_without_stills() {
    let (_out, done) = run(&fixture("audio-only.mp4"));
    let done = done.unwrap();
    assert_eq!(done.metadata.duration_ms, Some(2000));
    assert_eq!(done.metadata.width, None);
    let names: Vec<&str> = done.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["video"]);
    assert_moov_first(&variant(&done, "video").path);
}

fn assert_no_output_contains_passwd(out: &Path) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let first_line = passwd.lines().next().unwrap_or("root:x:0:0");
    for entry in std::fs::read_dir(out).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes
            .windows(first_line.len())
            .any(|w| w == first_line.as_bytes()));
    }
}

#[test]
fn a_playlist_named_mp4_is_refused_without_any_connection_or_local_read() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let playlist = dir.path().join("holiday.mp4");
    std::fs::write(
        &playlist,
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nhttp://127.0.0.1:{port}/a.ts\n\
             #EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
        ),
    )
    .unwrap();
    for path in [playlist.as_path(), &fixture("playlist-as.mp4")] {
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let out = tempfile::tempdir().unwrap();
            let err = process(kind, path, &Presets::default(), out.path()).unwrap_err();
            assert_eq!(err.code(), "refused_reference", "{path:?} as {kind:?}");
            assert_no_output_contains_passwd(out.path());
        }
    }
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("something connected: {other:?}"),
    }
}

#[test]
fn an_ffconcat_script_named_mov_is_refused() {
    let (out, done) = run(&fixture("concat-as.mov"));
    assert_eq!(done.unwrap_err().code(), "refused_reference");
    assert_no_output_contains_passwd(out.path());
}

#[test]
fn a_truncated_mp4_fails_to_decode() {
    let (_out, done) = run(&fixture("truncated.mp4"));
    assert_eq!(done.unwrap_err().code(), "decode_failed");
}

#[test]
fn absurd_frame_rates_and_dimensions_are_refused() {
    for name in ["absurd-fps.mp4", "absurd-dims.mp4"] {
        let (_out, done) = run(&fixture(name));
        assert_eq!(done.unwrap_err().code(), "too_many_pixels", "{name}");
    }
}
