//! Workload 1: the image job on a 24 MP JPEG against vipsthumbnail and ImageMagick.

use super::progress;
use super::report::Workload;
use super::transform::{add_api_row, compare_all, scratch, time_jobs, Job};
use super::{inputs, Ctx};
use satchel_workers::preset::{ImageFormat, ImageOutputPreset};

const SATCHEL: &str = "satchel process (thumbnail + preview + blurred + hashes)";
const VIPS_THUMB: &str = "vipsthumbnail -s 320 (thumbnail only)";
const VIPS_SAME: &str = "vipsthumbnail ×2 (thumbnail + preview)";
const IM_THUMB: &str = "convert -thumbnail 320x320 (thumbnail only)";
const IM_SAME: &str = "convert (preview + thumbnail + blurred, one decode)";

pub async fn run(ctx: &Ctx) -> anyhow::Result<Workload> {
    let (w, h) = ctx.plan.photo;
    let mut work = Workload::new("image", "Image job on a large JPEG");
    let pb = progress::spinner(format!("generating a {w}x{h} JPEG (cached)"));
    let input = inputs::photo(&ctx.cache, w, h, ctx.seed)?;
    let size = std::fs::metadata(&input)?.len();
    progress::finish(&pb, format!("input {}", input.display()));
    work.inputs.push(format!(
        "{} ({w}x{h} = {:.1} MP, {:.1} MB, quality 90, seed {})",
        input.display(),
        f64::from(w * h) / 1e6,
        size as f64 / 1e6,
        ctx.seed
    ));

    let p = &ctx.presets.image;
    let dir = scratch(&ctx.work, "image")?;
    let out = |name: &str, preset: &ImageOutputPreset| {
        let ext = match preset.format {
            ImageFormat::Webp => "webp",
            ImageFormat::Jpeg => "jpg",
        };
        dir.join(format!("{name}.{ext}")).display().to_string()
    };
    let input_s = input.display().to_string();
    let vips = |preset: &ImageOutputPreset, name: &str| {
        vec![
            input_s.clone(),
            "-s".into(),
            preset.max_edge.to_string(),
            "-o".into(),
            format!("{}[Q={},strip]", out(name, preset), preset.quality),
        ]
    };
    let edge = |preset: &ImageOutputPreset| format!("{0}x{0}>", preset.max_edge);
    let jobs = vec![
        Job::satchel(
            SATCHEL,
            &ctx.exe,
            &input,
            &scratch(&dir, "satchel")?,
            ctx.preset_path.as_deref(),
        ),
        Job::peer(
            VIPS_THUMB,
            &ctx.peers.vips,
            vec![vips(&p.thumbnail, "vips-thumbnail")],
        ),
        Job::peer(
            VIPS_SAME,
            &ctx.peers.vips,
            vec![
                vips(&p.thumbnail, "vips-thumbnail"),
                vips(&p.preview, "vips-preview"),
            ],
        ),
        Job::peer(
            IM_THUMB,
            &ctx.peers.magick,
            vec![vec![
                input_s.clone(),
                "-thumbnail".into(),
                format!("{0}x{0}", p.thumbnail.max_edge),
                "-quality".into(),
                p.thumbnail.quality.to_string(),
                out("im-thumbnail", &p.thumbnail),
            ]],
        ),
        Job::peer(
            IM_SAME,
            &ctx.peers.magick,
            vec![vec![
                // Lets libjpeg decode at a reduced scale, as satchel and vips do.
                "-define".into(),
                format!("jpeg:size={0}x{0}", 2 * p.preview.max_edge),
                input_s.clone(),
                "-auto-orient".into(),
                "-strip".into(),
                "-resize".into(),
                edge(&p.preview),
                "-quality".into(),
                p.preview.quality.to_string(),
                "-write".into(),
                out("im-preview", &p.preview),
                "-resize".into(),
                edge(&p.thumbnail),
                "-quality".into(),
                p.thumbnail.quality.to_string(),
                "-write".into(),
                out("im-thumbnail", &p.thumbnail),
                "-resize".into(),
                edge(&p.blurred),
                "-blur".into(),
                format!("0x{}", p.blurred.blur_sigma),
                "-quality".into(),
                p.blurred.quality.to_string(),
                out("im-blurred", &p.blurred),
            ]],
        ),
    ];
    let pb = progress::bar(0, "image job");
    let timed = time_jobs(jobs, ctx.plan.transform_runs, &pb).await;
    progress::finish(&pb, "image job: satchel and peers timed");
    work.rows.extend(timed.iter().map(|t| t.row()));

    add_api_row(ctx, &mut work, &input, "photo.jpg", "image job").await;

    compare_all(
        &mut work,
        SATCHEL,
        &[VIPS_SAME, IM_SAME, VIPS_THUMB, IM_THUMB],
    );
    work.method = format!(
        "Each command is a child process timed from spawn to exit (start-up included), {} run(s) \
         each, interleaved; peak memory is the child's own VmHWM, sampled every 5 ms. satchel runs as `satchel \
         process` (the same code as its image workers) and makes more than the peers: a WebP \
         thumbnail, preview and blurred image, BlurHash and ThumbHash. The \"×2\" and \"one \
         decode\" peers make the nearest equivalent set of files; the thumbnail-only ones are \
         the one-liners ops reach for.",
        ctx.plan.transform_runs
    );
    Ok(work)
}
