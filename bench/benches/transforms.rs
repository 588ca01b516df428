//! Criterion micro-benchmarks of the media transforms, where optimisations happen: decode,
//! resize, encode, blur, placeholders, and whole jobs of each kind.
//!
//! Inputs are generated on first use into the workspace's `target/bench-inputs/` by the same
//! seeded generators as `satchel bench` (the video needs the ffmpeg CLI; without it that
//! benchmark is left out, and says so). Run: `cargo bench -p satchel-bench --bench
//! transforms` (add `-- decode` etc. to pick a group); the suite-level comparison with other
//! tools is `satchel bench`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use satchel_bench::{inputs, peers::Peer};
use satchel_workers::image::{blur, decode, encode, placeholder, resize};
use satchel_workers::preset::ImageFormat;
use satchel_workers::{MediaKind, Presets};
use std::path::PathBuf;
use std::time::Duration;

fn input_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-inputs")
}

fn image_benches(c: &mut Criterion) {
    // 24 MP, photo-like, about 10 MB: what a phone camera sends.
    let big = inputs::photo(&input_dir(), 6000, 4000, 1).expect("generate the 24 MP JPEG");
    let presets = Presets::default();
    let preset = &presets.image;

    let mut g = c.benchmark_group("decode");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    // What `image::open` does: zune-jpeg at full size (24 MP), then a SIMD resize to 1280.
    g.bench_function("zune_full_then_resize_1280", |b| {
        b.iter(|| {
            let img = image::ImageReader::open(&big).unwrap().decode().unwrap();
            let (w, h) = resize::fit(img.width(), img.height(), 1280);
            black_box(resize::resize(&img, w, h).unwrap())
        })
    });
    g.bench_function("zune_full", |b| {
        b.iter(|| black_box(image::ImageReader::open(&big).unwrap().decode().unwrap()))
    });
    // jpeg-decoder at the DCT scales the pipeline can ask for.
    for (label, min_edge) in [
        ("jpeg_decoder_full", 6000),
        ("jpeg_decoder_1_2", 3000),
        ("jpeg_decoder_1_4", 1280),
        ("jpeg_decoder_1_8", 320),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| black_box(decode::decode(&big, preset, min_edge).unwrap()))
        });
    }
    g.finish();

    // The pixels the rest of the pipeline sees: 1500x1000 from the 1/4-scale decode.
    let decoded = resize::normalize(decode::decode(&big, preset, 1280).unwrap().image);
    let (pw, ph) = resize::fit(6000, 4000, preset.preview.max_edge);

    let mut g = c.benchmark_group("resize");
    for (label, filter) in [
        ("catmull_rom", resize::FilterType::CatmullRom),
        ("lanczos3", resize::FilterType::Lanczos3),
    ] {
        g.bench_function(format!("{label}_1500_to_1280"), |b| {
            b.iter(|| black_box(resize::resize_with(&decoded, pw, ph, filter).unwrap()))
        });
        g.bench_function(format!("{label}_1500_to_320"), |b| {
            b.iter(|| black_box(resize::resize_with(&decoded, 320, 213, filter).unwrap()))
        });
    }
    g.finish();

    let preview = resize::resize(&decoded, pw, ph).unwrap();
    let webp = encode::WebpTuning::of(preset.preview.webp_method, preset.preview.webp_sns);
    let mut g = c.benchmark_group("encode");
    g.sample_size(20);
    g.bench_function("webp_preview_1280", |b| {
        b.iter(|| {
            black_box(
                encode::encode(&preview, ImageFormat::Webp, preset.preview.quality, webp).unwrap(),
            )
        })
    });
    g.bench_function("jpeg_preview_1280", |b| {
        b.iter(|| {
            black_box(
                encode::encode(&preview, ImageFormat::Jpeg, preset.preview.quality, webp).unwrap(),
            )
        })
    });
    g.finish();

    let small = resize::resize(&preview, 64, 43).unwrap();
    c.bench_function("blur_64px", |b| {
        b.iter(|| black_box(blur::blur(&small, preset.blurred.blur_sigma)))
    });

    let tiny = placeholder::tiny(&preview).unwrap().to_rgba8();
    c.bench_function("blurhash_100px", |b| {
        b.iter(|| black_box(placeholder::blurhash(&tiny, preset.blurhash_components).unwrap()))
    });
    c.bench_function("thumbhash_100px", |b| {
        b.iter(|| black_box(placeholder::thumbhash(&tiny).unwrap()))
    });

    let out = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("job");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("image_24mp_jpeg", |b| {
        b.iter(|| {
            black_box(
                satchel_workers::process(MediaKind::Image, &big, &presets, out.path(), None)
                    .unwrap(),
            )
        })
    });
    g.finish();
}

fn av_benches(c: &mut Criterion) {
    let presets = Presets::default();
    let out = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("job");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let voice = inputs::voice_wav(&input_dir(), 60, 1).expect("generate the voice note");
    g.bench_function("voice_60s_wav_to_opus", |b| {
        b.iter(|| {
            black_box(
                satchel_workers_av::process(MediaKind::Audio, &voice, &presets, out.path())
                    .unwrap(),
            )
        })
    });
    match inputs::video(&input_dir(), (1920, 1080, 2), &Peer::find("ffmpeg")) {
        Ok(video) => {
            g.bench_function("video_1080p_2s_to_720p", |b| {
                b.iter(|| {
                    black_box(
                        satchel_workers_av::process(MediaKind::Video, &video, &presets, out.path())
                            .unwrap(),
                    )
                })
            });
        }
        Err(e) => eprintln!("job/video_1080p_2s_to_720p left out: {e:#}"),
    }
    g.finish();
}

criterion_group!(benches, image_benches, av_benches);
criterion_main!(benches);
