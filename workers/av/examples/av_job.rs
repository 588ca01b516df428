//! Runs one audio or video job through the crate's entry point, for benchmarks and poking:
//! `cargo run --release -p satchel-workers --example av_job -- <audio|video> <input> <out_dir>`.

use satchel_workers::{MediaKind, Presets};
use satchel_workers_av::process;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, input, out_dir] = args.as_slice() else {
        eprintln!("usage: av_job <audio|video> <input> <out_dir>");
        return ExitCode::from(2);
    };
    let kind = match kind.as_str() {
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        other => {
            eprintln!("unknown kind {other}: audio or video");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(out_dir) {
        eprintln!("cannot create {out_dir}: {e}");
        return ExitCode::FAILURE;
    }
    match process(
        kind,
        Path::new(input),
        &Presets::default(),
        Path::new(out_dir),
    ) {
        Ok(done) => {
            for step in &done.steps {
                eprintln!(
                    "{:>10} {:>8.1} ms",
                    step.name,
                    step.took.as_secs_f64() * 1000.0
                );
            }
            println!("{:?}", done.metadata);
            for v in &done.variants {
                println!(
                    "{} {} {} bytes {}x{} {} ms",
                    v.name,
                    v.mime,
                    v.size,
                    v.width.unwrap_or(0),
                    v.height.unwrap_or(0),
                    v.duration_ms.unwrap_or(0)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", e.code());
            ExitCode::FAILURE
        }
    }
}
