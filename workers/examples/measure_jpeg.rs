//! A measurement, not a test: how long each JPEG decoder takes at the scale it would be asked
//! for by the image pipeline (whose largest output, the preview, needs a longest edge of 1280),
//! how long the pipeline's own decode step and the whole image job take, and `djpeg` (Debian's
//! libjpeg-turbo-progs) on the same files as a reference from outside this process:
//!
//! `cargo run --release -p satchel-workers --example measure_jpeg [-- RUNS]` (default 11 runs).
//!
//! The inputs are the bench's seeded photo (bench/src/inputs.rs `photo`: smooth colour fields,
//! texture and per-pixel sensor noise, JPEG quality 90), made the same way here and cached in
//! `$SATCHEL_MEASURE_DIR` (default: the temp dir's `satchel-measure-jpeg`). Every method runs
//! once per round, round after round, so a noisy neighbour on a shared machine hits them alike;
//! each row is the median over the rounds, of wall time and of CPU time (user + system, all of
//! this process's threads, or the waited-for child's for djpeg): on a machine shared with
//! other builds the CPU time is the steadier of the two, and a decoder that uses more than
//! one thread shows it as CPU above wall.

#[path = "common/photo.rs"]
mod photo;

use photo::photo;
use satchel_workers::image::{decode, turbo};
use satchel_workers::{process, MediaKind, Presets};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SIZES: [(u32, u32); 4] = [(640, 480), (1600, 1200), (4032, 3024), (6000, 4000)];
const SEED: u64 = 1;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("RUNS: a number"))
        .unwrap_or(11);
    let dir = std::env::var_os("SATCHEL_MEASURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("satchel-measure-jpeg"));
    std::fs::create_dir_all(&dir).unwrap();
    let presets = Presets::default();
    let preset = &presets.image;
    let min_edge = [&preset.thumbnail, &preset.preview, &preset.blurred]
        .iter()
        .map(|o| o.max_edge)
        .max()
        .unwrap();
    let djpeg = Command::new("djpeg").arg("-version").output().is_ok();
    println!("min_edge {min_edge}, {runs} runs, medians in ms");
    if !djpeg {
        println!("(no djpeg on PATH: apt-get install libjpeg-turbo-progs for the reference)");
    }
    println!("| input | method | scale | decoded | wall | wall min-max | CPU |");
    println!("|---|---|---|---|---|---|---|");

    for (w, h) in SIZES {
        let path = photo(&dir, w, h, SEED);
        let bytes = std::fs::read(&path).unwrap();
        let pow2 = pow2_eighths(w, h, min_edge);
        let eighths = fine_eighths(w, h, min_edge);
        let out = tempfile::tempdir().unwrap();

        let mut methods: Vec<Method> = vec![
            Method::new(
                "jpeg-decoder",
                pow2,
                Box::new(move |b: &[u8]| jpeg_decoder_at(b, pow2)),
            ),
            Method::new("zune-jpeg", 8, Box::new(|b: &[u8]| zune_full(b))),
            Method::new(
                "turbojpeg",
                pow2,
                Box::new(move |b: &[u8]| turbo_at(b, pow2)),
            ),
        ];
        if eighths != pow2 {
            methods.push(Method::new(
                "turbojpeg",
                eighths,
                Box::new(move |b: &[u8]| turbo_at(b, eighths)),
            ));
        }
        let p = path.clone();
        methods.push(Method::new(
            "pipeline decode step",
            0,
            Box::new(move |_: &[u8]| {
                let d = decode::decode(&p, &presets_image(), min_edge).unwrap();
                (d.image.width(), d.image.height())
            }),
        ));
        let (p, o) = (path.clone(), out.path().to_path_buf());
        methods.push(Method::new(
            "whole process()",
            0,
            Box::new(move |_: &[u8]| {
                let done = process(MediaKind::Image, &p, &Presets::default(), &o, None).unwrap();
                (done.metadata.width.unwrap(), done.metadata.height.unwrap())
            }),
        ));
        if djpeg {
            for scale in [pow2, eighths, 2] {
                if methods
                    .iter()
                    .any(|m| m.name == "djpeg" && m.eighths == scale)
                {
                    continue;
                }
                // The brief's reference is 1/4 on the 24 MP photo; elsewhere, the scales used.
                if scale == 2 && (w, h) != (6000, 4000) {
                    continue;
                }
                let p = path.clone();
                methods.push(Method::new(
                    "djpeg",
                    scale,
                    Box::new(move |_: &[u8]| djpeg_at(&p, scale)),
                ));
            }
        }

        for _ in 0..runs {
            for m in &mut methods {
                let (cpu, started) = (cpu_time(), Instant::now());
                m.decoded = (m.run)(&bytes);
                m.took.push(started.elapsed());
                m.cpu.push(cpu_time() - cpu);
            }
        }
        let name = format!("{w}x{h} ({} KB)", bytes.len() / 1000);
        for m in &mut methods {
            m.took.sort();
            m.cpu.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let scale = match m.eighths {
                0 => "-".to_string(),
                8 => "8/8".to_string(),
                e => format!("{e}/8"),
            };
            let decoded = match m.decoded {
                (0, 0) => "-".to_string(),
                (w, h) => format!("{w}x{h}"),
            };
            println!(
                "| {name} | {} | {scale} | {decoded} | {:.1} | {:.1}-{:.1} | {:.1} |",
                m.name,
                ms(m.took[m.took.len() / 2]),
                ms(m.took[0]),
                ms(m.took[m.took.len() - 1]),
                ms(m.cpu[m.cpu.len() / 2]),
            );
        }
    }
}

type Run = Box<dyn FnMut(&[u8]) -> (u32, u32)>;

struct Method {
    name: &'static str,
    /// The DCT scale asked for, in eighths; 0 where the method picks its own.
    eighths: u32,
    run: Run,
    took: Vec<Duration>,
    cpu: Vec<Duration>,
    /// The size of what came out (the displayed original's for process()).
    decoded: (u32, u32),
}

impl Method {
    fn new(name: &'static str, eighths: u32, run: Run) -> Self {
        Method {
            name,
            eighths,
            run,
            took: Vec::new(),
            cpu: Vec::new(),
            decoded: (0, 0),
        }
    }
}

/// User + system CPU time of this process's threads and of its waited-for children.
fn cpu_time() -> Duration {
    let of = |who: libc::c_int| {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    of(libc::RUSAGE_SELF) + of(libc::RUSAGE_CHILDREN)
}

fn presets_image() -> satchel_workers::preset::ImagePreset {
    Presets::default().image
}

/// The scale jpeg-decoder offers (1/8, 1/4, 1/2, 1) that keeps the longest edge >= min_edge.
fn pow2_eighths(w: u32, h: u32, min_edge: u32) -> u32 {
    [1, 2, 4]
        .into_iter()
        .find(|&e| turbo::scaled(w.max(h), e) >= min_edge)
        .unwrap_or(8)
}

/// The same in any eighth, which libjpeg-turbo offers.
fn fine_eighths(w: u32, h: u32, min_edge: u32) -> u32 {
    (1..8)
        .find(|&e| turbo::scaled(w.max(h), e) >= min_edge)
        .unwrap_or(8)
}

fn jpeg_decoder_at(bytes: &[u8], eighths: u32) -> (u32, u32) {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    d.read_info().unwrap();
    let info = d.info().unwrap();
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let (w, h) = d
        .scale(
            turbo::scaled(w, eighths) as u16,
            turbo::scaled(h, eighths) as u16,
        )
        .unwrap();
    let pixels = d.decode().unwrap();
    assert_eq!(pixels.len(), usize::from(w) * usize::from(h) * 3);
    (u32::from(w), u32::from(h))
}

fn zune_full(bytes: &[u8]) -> (u32, u32) {
    let mut d = zune_jpeg::JpegDecoder::new(std::io::Cursor::new(bytes));
    let pixels = d.decode().unwrap();
    let info = d.info().unwrap();
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    assert_eq!(pixels.len(), w as usize * h as usize * 3);
    (w, h)
}

fn turbo_at(bytes: &[u8], eighths: u32) -> (u32, u32) {
    let limits = turbo::Limits {
        max_pixels: 100_000_000,
        max_memory_bytes: 512 << 20,
        max_scans: 100,
    };
    let mut d = turbo::Decompressor::new(&limits).unwrap();
    let (header, _) = d.read_header(bytes).unwrap();
    let (pixels, warning) = d
        .decode(bytes, &header, eighths, turbo::Format::Rgb)
        .unwrap();
    assert!(warning.is_none(), "{warning:?}");
    (pixels.width, pixels.height)
}

fn djpeg_at(path: &Path, eighths: u32) -> (u32, u32) {
    let status = Command::new("djpeg")
        .args(["-scale", &format!("{eighths}/8"), "-outfile", "/dev/null"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    (0, 0)
}
