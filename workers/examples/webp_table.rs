//! Measures lossy WebP settings for the image job's preview and thumbnail: bytes, DSSIM against
//! the resized pixels the encoder was given (lower is better; 0 is identical) and the median
//! encode time, over libwebp method 0-6 × quality 60-90, plus thread_level 1 and sharp YUV at
//! the preset's quality, plus libvips' WebP (`vips_webp.py`) of the same pictures as the peer.
//! Ends with the whole image job, as the service runs it, timed on each input.
//!
//! `cargo run --release -p satchel-workers --example webp_table -- [--runs N] [--vips PYTHON]
//! [--out DIR] [--pipeline-only]`
//!
//! PYTHON is an interpreter with pyvips, e.g. `/tmp/vipsvenv/bin/python` after
//! `python3 -m venv /tmp/vipsvenv && /tmp/vipsvenv/bin/pip install pyvips pyvips-binary`.
//! Inputs are made here, deterministically (the bench's photo generator: colour fields, texture
//! and sensor noise, saved as JPEG q90), plus `fixtures/photo.jpg`. Timings are medians of
//! `--runs` (default 9): "cpu ms" is the encoding thread's CPU time, which other work on a
//! shared machine does not inflate (libwebp-sys builds libwebp without threads, so the encode
//! is all on that thread); "wall ms" is the elapsed time, true only on an idle machine.

use dssim_core::{Dssim, DssimImage};
use image::DynamicImage;
#[path = "common/photo.rs"]
mod photo;

use photo::photo;
use satchel_workers::image::encode::{encode_webp, WebpTuning};
use satchel_workers::image::{decode, resize};
use satchel_workers::{process, MediaKind, Presets};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What image jobs used before the preset chose a method (stop 24): the baseline, "today".
const BEFORE: WebpTuning = WebpTuning {
    method: 2,
    thread_level: 0,
    sharp_yuv: false,
    sns_strength: 50,
};

const QUALITIES: [u8; 6] = [60, 70, 75, 80, 85, 90];
const METHODS: std::ops::RangeInclusive<i32> = 0..=6;

struct Options {
    runs: usize,
    vips: Option<PathBuf>,
    out: PathBuf,
    pipeline_only: bool,
    search: bool,
    truth: bool,
    /// The convolution filter of the thumbnail's resize in `--search` (the job's by default).
    thumb_filter: Option<resize::FilterType>,
}

fn options() -> Options {
    let mut o = Options {
        runs: 9,
        vips: None,
        out: std::env::temp_dir().join("satchel-webp-table"),
        pipeline_only: false,
        search: false,
        truth: false,
        thumb_filter: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => o.runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--vips" => o.vips = Some(args.next().expect("--vips PYTHON").into()),
            "--out" => o.out = args.next().expect("--out DIR").into(),
            "--pipeline-only" => o.pipeline_only = true,
            "--search" => o.search = true,
            "--truth" => o.truth = true,
            "--thumb-filter" => {
                use resize::FilterType::*;
                o.thumb_filter = Some(match args.next().as_deref() {
                    Some("box") => Box,
                    Some("bilinear") => Bilinear,
                    Some("hamming") => Hamming,
                    Some("mitchell") => Mitchell,
                    Some("catmullrom") => CatmullRom,
                    Some("lanczos3") => Lanczos3,
                    _ => panic!("--thumb-filter box|bilinear|hamming|mitchell|catmullrom|lanczos3"),
                })
            }
            _ => {
                eprintln!(
                    "usage: webp_table [--runs N] [--vips PYTHON] [--out DIR] [--pipeline-only] [--search [--truth] [--thumb-filter F]]"
                );
                std::process::exit(2);
            }
        }
    }
    o
}

/// One measured encoding of one picture.
#[derive(Clone)]
struct Row {
    label: String,
    quality: u8,
    tuning: Option<WebpTuning>,
    bytes: usize,
    dssim: f64,
    /// Median CPU time of the encoding thread.
    ms: f64,
    /// Median elapsed time.
    wall: f64,
}

fn main() {
    let o = options();
    std::fs::create_dir_all(&o.out).expect("create the output directory");
    let presets = Presets::default();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/photo.jpg");
    let inputs = [
        ("photo 640×480", photo(&o.out, 640, 480, 1)),
        ("photo 1600×1200", photo(&o.out, 1600, 1200, 2)),
        ("photo 4032×3024", photo(&o.out, 4032, 3024, 3)),
        ("fixtures/photo.jpg (480×640)", fixture),
    ];
    println!(
        "libwebp {}, {} run(s) each; the preset: preview m{} sns {} q{}, thumbnail m{} sns {} q{}\n",
        libwebp_version(),
        o.runs,
        presets.image.preview.webp_method,
        presets.image.preview.webp_sns,
        presets.image.preview.quality,
        presets.image.thumbnail.webp_method,
        presets.image.thumbnail.webp_sns,
        presets.image.thumbnail.quality,
    );
    if o.search {
        search(&inputs, &presets, &o);
        return;
    }
    if !o.pipeline_only {
        for (name, path) in &inputs {
            table(name, path, &presets, &o);
        }
    }
    pipeline(&inputs, &presets, &o);
}

fn libwebp_version() -> String {
    // SAFETY: a plain getter with no arguments.
    let v = unsafe { libwebp_sys::WebPGetEncoderVersion() };
    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}

/// The preview and thumbnail of `path` exactly as the image job makes them, then every setting.
fn table(name: &str, path: &Path, presets: &Presets, o: &Options) {
    let preset = &presets.image;
    let JobPixels {
        original,
        full,
        preview,
        thumbnail,
    } = job_pixels(path, presets);
    let stem = name
        .split_whitespace()
        .next()
        .unwrap_or("in")
        .replace('/', "_");
    let stem = format!("{stem}-{}x{}", original.0, original.1);
    let vips = o.vips.as_ref().map(|py| {
        vips_rows(
            py,
            path,
            &o.out,
            &stem,
            o.runs,
            &[preset.preview.max_edge, preset.thumbnail.max_edge],
        )
    });
    let dssim = Dssim::new();
    for (variant, pixels, edge, today_q) in [
        (
            "preview",
            &preview,
            preset.preview.max_edge,
            preset.preview.quality,
        ),
        (
            "thumbnail",
            &thumbnail,
            preset.thumbnail.max_edge,
            preset.thumbnail.quality,
        ),
    ] {
        let reference = dssim_image(&dssim, pixels);
        let measure = |quality: u8, tuning: WebpTuning, label: String| -> Row {
            let (mut cpu, mut wall) = (Vec::new(), Vec::new());
            let mut out = Vec::new();
            for _ in 0..o.runs.max(1) {
                let (started, started_cpu) = (Instant::now(), thread_cpu_ms());
                out = encode_webp(pixels, quality, tuning).expect("encode");
                cpu.push(thread_cpu_ms() - started_cpu);
                wall.push(started.elapsed().as_secs_f64() * 1e3);
            }
            Row {
                label,
                quality,
                tuning: Some(tuning),
                bytes: out.len(),
                dssim: dssim_of(&dssim, &reference, &decode_webp(&out)),
                ms: median(&mut cpu),
                wall: median(&mut wall),
            }
        };
        let plain = |method| WebpTuning::of(method, 50);
        let mut grid = Vec::new();
        for method in METHODS {
            for q in QUALITIES {
                grid.push(measure(q, plain(method), format!("m{method}")));
            }
        }
        let mut extra = Vec::new();
        for method in METHODS {
            let threads = WebpTuning {
                thread_level: 1,
                ..plain(method)
            };
            extra.push(measure(
                today_q,
                threads,
                format!("m{method} thread_level 1"),
            ));
            let sharp = WebpTuning {
                sharp_yuv: true,
                ..plain(method)
            };
            extra.push(measure(today_q, sharp, format!("m{method} sharp_yuv")));
        }
        let peer: Vec<Row> = vips
            .iter()
            .flatten()
            .filter(|v| v.edge == edge)
            .map(|v| {
                let back = decode_webp(&v.data);
                let (w, h) = (back.width(), back.height());
                // vips may round a side differently: compare with our pixels at its size.
                let dssim = match (w, h) == (pixels.width(), pixels.height()) {
                    true => dssim_of(&dssim, &reference, &back),
                    false => {
                        let at = resize::resize(&full, w, h).expect("resize");
                        dssim_of(&dssim, &dssim_image(&dssim, &at), &back)
                    }
                };
                Row {
                    label: format!("vips {w}×{h}"),
                    quality: v.quality,
                    tuning: None,
                    bytes: v.data.len(),
                    dssim,
                    ms: v.ms,
                    wall: v.wall,
                }
            })
            .collect();
        print_tables(
            &format!("{name}, {variant} {}×{}", pixels.width(), pixels.height()),
            today_q,
            &grid,
            &extra,
            &peer,
        );
        write_tsv(
            &o.out,
            &stem,
            variant,
            grid.iter().chain(&extra).chain(&peer),
        );
    }
}

/// What the image job makes of `path`, exactly as it makes it.
struct JobPixels {
    /// The original's size, before any DCT-scaled decode.
    original: (u32, u32),
    /// The decoded picture, as `normalize` leaves it.
    full: DynamicImage,
    preview: DynamicImage,
    thumbnail: DynamicImage,
}

fn job_pixels(path: &Path, presets: &Presets) -> JobPixels {
    let preset = &presets.image;
    let decoded = decode::decode(path, preset, preset.preview.max_edge).expect("decode");
    let original = (decoded.width, decoded.height);
    let full = resize::normalize(decoded.image);
    let fit = |edge: u32| {
        let (w, h) = resize::fit(original.0, original.1, edge);
        (w.min(full.width()), h.min(full.height()))
    };
    let (pw, ph) = fit(preset.preview.max_edge);
    let preview = resize::resize(&full, pw, ph).expect("resize");
    let (tw, th) = fit(preset.thumbnail.max_edge);
    let thumbnail = resize::resize(&preview, tw, th).expect("resize");
    JobPixels {
        original,
        full,
        preview,
        thumbnail,
    }
}

fn decode_webp(out: &[u8]) -> DynamicImage {
    image::load_from_memory_with_format(out, image::ImageFormat::WebP).expect("decode a WebP")
}

/// DSSIM of `back` (a decoded output) against `reference` of the same size.
fn dssim_of(dssim: &Dssim, reference: &DssimImage<f32>, back: &DynamicImage) -> f64 {
    f64::from(dssim.compare(reference, dssim_image(dssim, back)).0)
}

/// The median CPU time of encoding `pixels` with `tuning`, over `runs` encodes.
fn encode_cpu_ms(pixels: &DynamicImage, quality: u8, tuning: WebpTuning, runs: usize) -> f64 {
    let mut cpu = Vec::new();
    for _ in 0..runs.max(1) {
        let t = thread_cpu_ms();
        encode_webp(pixels, quality, tuning).expect("encode");
        cpu.push(thread_cpu_ms() - t);
    }
    median(&mut cpu)
}

/// Methods, spatial noise shaping and qualities tried by `--search`.
const SEARCH_METHODS: std::ops::RangeInclusive<i32> = 2..=6;
const SEARCH_SNS: [i32; 8] = [0, 10, 20, 25, 30, 40, 50, 70];
const SEARCH_Q: std::ops::RangeInclusive<i32> = -3..=6;

/// `--search`: for the preview and the thumbnail, every setting of SEARCH_* that is no bigger
/// and no worse (DSSIM) than both today's output (m2 sns 50 at the preset's quality) and
/// vips' (its default effort, same quality) on every input at once, cheapest first by the
/// encode CPU summed over the inputs.
fn search(inputs: &[(&str, PathBuf)], presets: &Presets, o: &Options) {
    let preset = &presets.image;
    let dssim = Dssim::new();
    let today = BEFORE;
    struct Case {
        name: String,
        pixels: DynamicImage,
        reference: DssimImage<f32>,
        bytes: usize,
        dssim: f64,
        today: (usize, f64),
        vips: Option<(usize, f64)>,
    }
    for (variant, edge, today_q) in [
        ("preview", preset.preview.max_edge, preset.preview.quality),
        (
            "thumbnail",
            preset.thumbnail.max_edge,
            preset.thumbnail.quality,
        ),
    ] {
        // --thumb-filter changes only the thumbnail.
        if variant == "preview" && o.thumb_filter.is_some() {
            continue;
        }
        let mut cases = Vec::new();
        for (name, path) in inputs {
            let JobPixels {
                full,
                preview,
                thumbnail,
                ..
            } = job_pixels(path, presets);
            // Today's output is the job's own, whatever the candidates are made from.
            let job_output = if variant == "preview" {
                preview.clone()
            } else {
                thumbnail.clone()
            };
            let thumbnail = match o.thumb_filter {
                Some(filter) => {
                    let (w, h) = (thumbnail.width(), thumbnail.height());
                    resize::resize_with(&preview, w, h, filter).expect("resize")
                }
                None => thumbnail,
            };
            let pixels = if variant == "preview" {
                preview
            } else {
                thumbnail
            };
            // With --truth every output is scored against one ground truth, the whole original
            // decoded at full size and downscaled with Lanczos3 to the output's size, so that a
            // resize counts as well as the encode, for vips' and for ours alike.
            let full = match o.truth {
                true => {
                    let all = decode::decode(path, preset, u32::MAX).expect("decode");
                    resize::normalize(all.image)
                }
                false => full,
            };
            let truth = |w: u32, h: u32| {
                resize::resize_with(&full, w, h, resize::FilterType::Lanczos3).expect("resize")
            };
            let reference = match o.truth {
                true => dssim_image(&dssim, &truth(pixels.width(), pixels.height())),
                false => dssim_image(&dssim, &pixels),
            };
            // vips may round a side differently: then the truth at its size.
            let score = |out: &[u8]| -> f64 {
                let back = decode_webp(out);
                let (w, h) = (back.width(), back.height());
                match (w, h) == (pixels.width(), pixels.height()) {
                    true => dssim_of(&dssim, &reference, &back),
                    false => dssim_of(&dssim, &dssim_image(&dssim, &truth(w, h)), &back),
                }
            };
            let mine = encode_webp(&job_output, today_q, today).expect("encode");
            let today_row = (mine.len(), score(&mine));
            let stem = format!("search-{}", name.split_whitespace().next().unwrap_or("in"))
                .replace('/', "_");
            let vips = o.vips.as_ref().map(|py| {
                let rows = vips_rows_at(py, path, &o.out, &stem, 1, edge, today_q);
                let v = rows.first().expect("one vips row");
                (v.data.len(), score(&v.data))
            });
            let bytes = vips.map_or(today_row.0, |v| v.0.min(today_row.0));
            let bar = vips.map_or(today_row.1, |v| v.1.min(today_row.1));
            cases.push(Case {
                name: name.to_string(),
                pixels,
                reference,
                bytes,
                dssim: bar,
                today: today_row,
                vips,
            });
        }
        println!(
            "### {variant}: settings no bigger and no worse than today and vips on every input\n"
        );
        for c in &cases {
            println!(
                "- {}: today {} B / {:.3}; vips {}; bar {} B / {:.3}",
                c.name,
                c.today.0,
                c.today.1 * 1e3,
                c.vips.map_or("not run".into(), |v| format!(
                    "{} B / {:.3}",
                    v.0,
                    v.1 * 1e3
                )),
                c.bytes,
                c.dssim * 1e3
            );
        }
        let mut scored = Vec::new();
        for method in SEARCH_METHODS {
            for sns in SEARCH_SNS {
                for dq in SEARCH_Q {
                    let q = (i32::from(today_q) + dq).clamp(1, 100) as u8;
                    let tuning = WebpTuning::of(method, sns);
                    let results: Vec<(usize, f64)> = cases
                        .iter()
                        .map(|c| {
                            let out = encode_webp(&c.pixels, q, tuning).expect("encode");
                            (
                                out.len(),
                                dssim_of(&dssim, &c.reference, &decode_webp(&out)),
                            )
                        })
                        .collect();
                    let margins: Vec<(f64, f64)> = results
                        .iter()
                        .zip(&cases)
                        .map(|(r, c)| (r.0 as f64 / c.bytes as f64, r.1 / c.dssim))
                        .collect();
                    let worst = margins.iter().fold(0f64, |m, (b, d)| m.max(*b).max(*d));
                    scored.push((tuning, q, results, worst));
                }
            }
        }
        // The nearest misses are worth seeing too: sort by the worst ratio to the bar first.
        scored.sort_by(|a, b| a.3.total_cmp(&b.3));
        let ok: Vec<_> = scored.iter().filter(|p| p.3 <= 1.0).collect();
        println!(
            "\n{} of {} settings pass on every input.\n",
            ok.len(),
            scored.len()
        );
        let mut timed: Vec<(f64, String)> = ok
            .iter()
            .map(|(tuning, q, results, worst)| {
                let ms: Vec<f64> = cases
                    .iter()
                    .map(|c| encode_cpu_ms(&c.pixels, *q, *tuning, o.runs))
                    .collect();
                let cells: Vec<String> = results
                    .iter()
                    .zip(&ms)
                    .map(|(r, ms)| format!("{} / {:.3} / {ms:.1}", r.0, r.1 * 1e3))
                    .collect();
                let total: f64 = ms.iter().sum();
                (
                    total,
                    format!(
                        "| m{} sns {} q{q} | {:.4} | {} | {total:.1} |",
                        tuning.method,
                        tuning.sns_strength,
                        worst,
                        cells.join(" | ")
                    ),
                )
            })
            .collect();
        timed.sort_by(|a, b| a.0.total_cmp(&b.0));
        let header: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        println!(
            "| setting | worst ratio to bar | {} | CPU ms summed |\n|---|---|{}---|",
            header.join(" | "),
            "---|".repeat(cases.len())
        );
        let today_ms: f64 = cases
            .iter()
            .map(|c| encode_cpu_ms(&c.pixels, today_q, today, o.runs))
            .sum();
        println!(
            "| today m2 sns 50 q{today_q} | – | {} | {today_ms:.1} |",
            "– | ".repeat(cases.len()).trim_end_matches(" | ")
        );
        for (_, line) in timed.iter().take(12) {
            println!("{line}");
        }
        println!("\nNearest misses (worst ratio to the bar above 1):\n");
        for (tuning, q, results, worst) in scored.iter().filter(|p| p.3 > 1.0).take(6) {
            let cells: Vec<String> = results
                .iter()
                .map(|r| format!("{} / {:.3}", r.0, r.1 * 1e3))
                .collect();
            println!(
                "- m{} sns {} q{q}: {:.4}: {}",
                tuning.method,
                tuning.sns_strength,
                worst,
                cells.join("; ")
            );
        }
        println!();
    }
}

fn dssim_image(dssim: &Dssim, img: &DynamicImage) -> DssimImage<f32> {
    let rgb = img.to_rgb8();
    let px: Vec<rgb::RGB8> = rgb
        .pixels()
        .map(|p| rgb::RGB8::new(p[0], p[1], p[2]))
        .collect();
    dssim
        .create_image_rgb(&px, rgb.width() as usize, rgb.height() as usize)
        .expect("a DSSIM image")
}

fn print_tables(title: &str, today_q: u8, grid: &[Row], extra: &[Row], peer: &[Row]) {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### {title}\n\nEach cell: bytes / DSSIM×1000 / median encode CPU ms. Today: m{} q{today_q}.\n",
        BEFORE.method
    );
    let _ = write!(s, "| method |");
    for q in QUALITIES {
        let _ = write!(s, " q{q} |");
    }
    let _ = write!(s, "\n|---|");
    for _ in QUALITIES {
        let _ = write!(s, "---|");
    }
    s.push('\n');
    for method in METHODS {
        let _ = write!(s, "| m{method} |");
        for q in QUALITIES {
            if let Some(r) = grid
                .iter()
                .find(|r| r.quality == q && r.tuning.is_some_and(|t| t.method == method))
            {
                let _ = write!(s, " {} / {:.3} / {:.1} |", r.bytes, r.dssim * 1e3, r.ms);
            }
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "\n| setting | q | bytes | DSSIM×1000 | cpu ms | wall ms |\n|---|---|---|---|---|---|"
    );
    for r in extra.iter().chain(peer) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {:.1} | {:.1} |",
            r.label,
            r.quality,
            r.bytes,
            r.dssim * 1e3,
            r.ms,
            r.wall
        );
    }
    // Settings no worse than today's nor than vips' at the same quality, on both counts.
    let today = grid
        .iter()
        .find(|r| r.quality == today_q && r.tuning.is_some_and(|t| t.method == BEFORE.method));
    let vips = peer.iter().find(|r| r.quality == today_q);
    if let Some(today) = today {
        let bytes = vips.map_or(today.bytes, |v| v.bytes.min(today.bytes));
        let dssim = vips.map_or(today.dssim, |v| v.dssim.min(today.dssim));
        let mut ok: Vec<&Row> = grid
            .iter()
            .chain(extra)
            .filter(|r| r.bytes <= bytes && r.dssim <= dssim)
            .collect();
        ok.sort_by(|a, b| a.ms.total_cmp(&b.ms));
        let _ = writeln!(
            s,
            "\nAt most {bytes} bytes and DSSIM×1000 {:.3} (today{}), fastest first:",
            dssim * 1e3,
            if vips.is_some() { " and vips" } else { "" }
        );
        for r in ok.iter().take(8) {
            let _ = writeln!(
                s,
                "- {} q{}: {} B, {:.3}, {:.1} ms",
                r.label,
                r.quality,
                r.bytes,
                r.dssim * 1e3,
                r.ms
            );
        }
    }
    println!("{s}");
}

fn write_tsv<'r>(out: &Path, stem: &str, variant: &str, rows: impl Iterator<Item = &'r Row>) {
    let mut s = String::from("setting\tquality\tbytes\tdssim\tcpu_ms\twall_ms\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{}\t{}\t{}\t{:.6}\t{:.3}\t{:.3}",
            r.label, r.quality, r.bytes, r.dssim, r.ms, r.wall
        );
    }
    std::fs::write(out.join(format!("{stem}-{variant}.tsv")), s).expect("write the TSV");
}

struct VipsOut {
    edge: u32,
    quality: u8,
    data: Vec<u8>,
    ms: f64,
    wall: f64,
}

fn vips_rows(
    python: &Path,
    input: &Path,
    out: &Path,
    stem: &str,
    runs: usize,
    edges: &[u32],
) -> Vec<VipsOut> {
    let qs = QUALITIES.map(|q| q.to_string()).join(",");
    let specs: Vec<String> = edges.iter().map(|e| format!("{e}:{qs}")).collect();
    run_vips(python, input, out, stem, runs, &specs)
}

/// vips' WebP of `input` at one edge and one quality.
fn vips_rows_at(
    python: &Path,
    input: &Path,
    out: &Path,
    stem: &str,
    runs: usize,
    edge: u32,
    quality: u8,
) -> Vec<VipsOut> {
    run_vips(
        python,
        input,
        out,
        stem,
        runs,
        &[format!("{edge}:{quality}")],
    )
}

fn run_vips(
    python: &Path,
    input: &Path,
    out: &Path,
    stem: &str,
    runs: usize,
    specs: &[String],
) -> Vec<VipsOut> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/vips_webp.py");
    let done = Command::new(python)
        .arg(script)
        .arg(input)
        .arg(out)
        .arg(stem)
        .arg(runs.to_string())
        .args(specs)
        .output()
        .expect("run vips_webp.py");
    assert!(
        done.status.success(),
        "vips_webp.py: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&done.stderr));
    String::from_utf8_lossy(&done.stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let (edge, quality): (u32, u8) = (f[0].parse().unwrap(), f[1].parse().unwrap());
            let file = out.join(format!("{stem}-{edge}-q{quality}.webp"));
            VipsOut {
                edge,
                quality,
                data: std::fs::read(file).expect("read vips' output"),
                ms: f[5].parse().unwrap(),
                wall: f[6].parse().unwrap(),
            }
        })
        .collect()
}

/// The whole image job, as the service runs it (this build's settings and the preset).
fn pipeline(inputs: &[(&str, PathBuf)], presets: &Presets, o: &Options) {
    println!("### The whole image job (median of {} runs)\n", o.runs);
    println!(
        "Wall ms is elapsed (median, and min: the least disturbed run); CPU ms is all threads'.\n"
    );
    println!("| input | job wall ms | min | job CPU ms | encode step wall ms | preview bytes | thumbnail bytes |\n|---|---|---|---|---|---|---|");
    let dir = o.out.join("job");
    std::fs::create_dir_all(&dir).expect("create the job directory");
    for (name, path) in inputs {
        let (mut total, mut encode, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
        let mut sizes = (0, 0);
        for _ in 0..o.runs.max(1) {
            let (started, started_cpu) = (Instant::now(), process_cpu_ms());
            let done = process(MediaKind::Image, path, presets, &dir, None).expect("the image job");
            total.push(started.elapsed().as_secs_f64() * 1e3);
            cpu.push(process_cpu_ms() - started_cpu);
            let step = done.steps.iter().find(|s| s.name == "encode");
            encode.push(step.map_or(0.0, |s| s.took.as_secs_f64() * 1e3));
            let size = |n: &str| done.variants.iter().find(|v| v.name == n).map(|v| v.size);
            sizes = (size("preview").unwrap_or(0), size("thumbnail").unwrap_or(0));
        }
        let wall = median(&mut total);
        println!(
            "| {name} | {wall:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            total[0],
            median(&mut cpu),
            median(&mut encode),
            sizes.0,
            sizes.1
        );
    }
}

fn thread_cpu_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

fn process_cpu_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
