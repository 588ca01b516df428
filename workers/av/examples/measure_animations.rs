//! A measurement, not a test: `scripts/measure-animations.sh` runs it on the GIFs it makes,
//! printing each one's size against its `animation` variant's and the time it took.

use satchel_workers::{MediaKind, Presets};
use satchel_workers_av::process;
use std::time::Instant;

fn main() {
    let dir = std::env::var("SATCHEL_ANIMATIONS").expect("SATCHEL_ANIMATIONS: a directory");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gif" || e == "webp"))
        .collect();
    inputs.sort();
    println!("| input | size | frames' canvas | animation | ratio | job | of which animation |");
    println!("|---|---|---|---|---|---|---|");
    for input in inputs {
        let out = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let done = process(MediaKind::Image, &input, &Presets::default(), out.path())
            .unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let took = started.elapsed();
        let video = done
            .variants
            .iter()
            .find(|v| v.name == "animation")
            .unwrap();
        let size = std::fs::metadata(&input).unwrap().len();
        let step = done.steps.iter().find(|s| s.name == "animation").unwrap();
        println!(
            "| {} | {} KB | {}x{}, {} ms | {} KB, {}x{} | {:.1}x | {:.2} s | {:.2} s |",
            input.file_name().unwrap().to_string_lossy(),
            size / 1000,
            done.metadata.width.unwrap(),
            done.metadata.height.unwrap(),
            done.metadata.duration_ms.unwrap(),
            video.size / 1000,
            video.width.unwrap(),
            video.height.unwrap(),
            size as f64 / video.size as f64,
            took.as_secs_f64(),
            step.took.as_secs_f64(),
        );
    }
}
