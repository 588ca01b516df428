//! Runs the whole image job once, as the service would, and prints what it produced:
//! `cargo run --release -p satchel-workers --example image_job -- INPUT [OUT_DIR]`.
//! Used to compare satchel against vipsthumbnail and ImageMagick with hyperfine.

use satchel_workers::{process, MediaKind, Presets};
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(input) = args.next().map(PathBuf::from) else {
        eprintln!("usage: image_job INPUT [OUT_DIR]");
        std::process::exit(2);
    };
    let out_dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("satchel-image-job"));
    std::fs::create_dir_all(&out_dir).expect("create the output directory");

    match process(
        MediaKind::Image,
        &input,
        &Presets::default(),
        &out_dir,
        None,
    ) {
        Ok(done) => {
            let m = &done.metadata;
            println!("{}x{}", m.width.unwrap_or(0), m.height.unwrap_or(0));
            for v in &done.variants {
                let (w, h) = (v.width.unwrap_or(0), v.height.unwrap_or(0));
                println!(
                    "{:<9} {w}x{h} {} bytes {}",
                    v.name,
                    v.size,
                    v.path.display()
                );
            }
            if let Some(p) = &done.placeholder {
                println!("blurhash  {}\nthumbhash {}", p.blurhash, p.thumbhash);
            }
            for s in &done.steps {
                println!("{:<11} {:>8.2} ms", s.name, s.took.as_secs_f64() * 1e3);
            }
        }
        Err(e) => {
            eprintln!("{}: {e}", e.code());
            std::process::exit(1);
        }
    }
}
