//! The commands both binaries have: `process` and the hidden `transform`.
//!
//! `satchel` is the service and does not link FFmpeg (about 170 shared libraries, ~40 ms of CPU
//! to load at every start); `satchel-transform`, installed beside it, has every codec and is
//! where each job's transform runs (`jobs/host.rs`). So `satchel process` makes a still itself
//! and hands audio, video and animated pictures to `satchel-transform process`, and `satchel
//! transform` is `satchel-transform transform` but for `--stills`, which either binary runs
//! itself (a worker's stills hosts are `satchel`'s). [`Av`] is what a binary has: `None` in
//! `satchel`, FFmpeg in `satchel-transform`.

use crate::domain::{sniff, Kind};
use anyhow::Context;
use satchel_workers::{Av, Presets, WorkerError};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The binary that runs every job's transform, with FFmpeg; beside `satchel`.
pub const TRANSFORM_BINARY: &str = "satchel-transform";

/// Run the media pipeline on a local file and print what it produced.
#[derive(clap::Args)]
pub struct ProcessArgs {
    /// The media file to process; its type is sniffed from its bytes.
    file: PathBuf,
    /// A preset TOML file (sizes, codecs, limits) [default: the built-in presets/default.toml].
    #[arg(long)]
    preset: Option<PathBuf>,
    /// The directory to write the variants into (created if missing).
    #[arg(long)]
    out: PathBuf,
}

/// One transform, reported as JSON on stdout: it confines itself to FILE (read) and OUT (read
/// and write) before it opens FILE. With `--host`, a worker's transform host instead: one
/// forked, confined child per request read from stdin (`jobs/host.rs`).
#[derive(clap::Args)]
pub struct TransformArgs {
    #[arg(required_unless_present = "host")]
    file: Option<PathBuf>,
    #[arg(long, required_unless_present_any = ["probe", "host"])]
    kind: Option<String>,
    #[arg(long)]
    preset: Option<PathBuf>,
    #[arg(long, required_unless_present = "host")]
    out: Option<PathBuf>,
    /// Be a transform host for the worker that started it.
    #[arg(long, requires = "within", conflicts_with_all = ["probe", "kind", "file"])]
    host: bool,
    /// With `--host`: the scratch directory every job's files are in.
    #[arg(long)]
    within: Option<PathBuf>,
    /// Without FFmpeg, whichever binary this is: what needs it reports `needs_av`.
    #[arg(long)]
    stills: bool,
    /// Instead of the transform, be the child of `satchel sandbox-probe`.
    #[arg(long)]
    probe: bool,
    /// With `--probe`: try to read this file (repeatable).
    #[arg(long)]
    probe_open: Vec<PathBuf>,
    /// With `--probe`: try to reach this address over TCP and UDP.
    #[arg(long)]
    probe_connect: Option<SocketAddr>,
}

/// The `satchel-transform` beside the running binary.
pub fn transform_binary() -> anyhow::Result<PathBuf> {
    beside(TRANSFORM_BINARY)
}

/// `name` in the running binary's directory.
pub fn beside(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    Ok(exe.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
}

/// Replaces this process with `program args…`, whose `argv[0]` is `arg0`; returns only on
/// failure.
pub fn exec(program: &Path, arg0: &str, args: impl IntoIterator<Item = OsString>) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    if !program.is_file() {
        return anyhow::anyhow!(
            "{} is missing: it is installed beside this binary (`cargo build --release \
             --workspace` builds it)",
            program.display()
        );
    }
    let error = std::process::Command::new(program)
        .arg0(arg0)
        .args(args)
        .exec();
    anyhow::Error::new(error).context(format!("cannot run {}", program.display()))
}

fn presets(preset: Option<&Path>) -> anyhow::Result<Presets> {
    match preset {
        Some(path) => Presets::load(path).map_err(anyhow::Error::msg),
        None => Ok(Presets::default()),
    }
}

/// `transform`: a host, a probe or one transform; in a binary without FFmpeg,
/// `satchel-transform transform` with the same arguments unless they say `--stills`.
pub fn transform(args: TransformArgs, av: Option<&'static dyn Av>) -> anyhow::Result<()> {
    let av = match (args.stills, av) {
        (true, _) => None,
        (false, Some(av)) => Some(av),
        (false, None) => {
            return Err(exec(
                &transform_binary()?,
                TRANSFORM_BINARY,
                std::env::args_os().skip(1),
            ))
        }
    };
    // The presets are the worker's own file: read before the sandbox closes the filesystem.
    let presets = presets(args.preset.as_deref())?;
    if args.host {
        let within = args.within.expect("clap requires --within");
        return crate::jobs::host::serve(&within, &presets, av);
    }
    let (file, out) = (args.file.expect("clap"), args.out.expect("clap"));
    let task = match args.kind {
        Some(kind) if !args.probe => crate::jobs::host::Task::Transform { kind },
        _ => crate::jobs::host::Task::Probe {
            open: args.probe_open,
            connect: args.probe_connect,
            neighbour: None,
        },
    };
    let report = crate::jobs::host::execute(&task, &file, &out, &presets, av);
    if report.is_empty() {
        anyhow::bail!("the transform made no report");
    }
    std::io::Write::write_all(&mut std::io::stdout().lock(), &report)?;
    println!();
    Ok(())
}

/// `process`: the pipeline in this process, or, for what needs FFmpeg in a binary without it,
/// `satchel-transform process` with the same arguments.
pub fn process(args: ProcessArgs, av: Option<&dyn Av>) -> anyhow::Result<()> {
    let ProcessArgs { file, preset, out } = args;
    let presets = presets(preset.as_deref())?;
    let mut head = vec![0u8; sniff::SNIFF_BYTES];
    let n = std::io::Read::read(
        &mut std::fs::File::open(&file)
            .with_context(|| format!("cannot open {}", file.display()))?,
        &mut head,
    )?;
    let sniffed = sniff(&head[..n]);
    let Some(pipeline) = sniffed.kind.pipeline() else {
        anyhow::bail!(
            "{} is a plain file ({}): nothing to process",
            file.display(),
            sniffed.mime
        );
    };
    std::fs::create_dir_all(&out)?;
    let started = Instant::now();
    let processed = match satchel_workers::process(pipeline, &file, &presets, &out, av) {
        Ok(processed) => processed,
        // Refused before anything was decoded or written.
        Err(WorkerError::NeedsAv(_)) if av.is_none() => {
            let mut forwarded: Vec<OsString> = vec!["process".into(), file.into(), "--out".into()];
            forwarded.push(out.into());
            if let Some(preset) = preset {
                forwarded.extend(["--preset".into(), preset.into()]);
            }
            return Err(exec(&transform_binary()?, TRANSFORM_BINARY, forwarded));
        }
        Err(e) => anyhow::bail!("{}: {e}", e.code()),
    };
    let total = started.elapsed();
    println!(
        "{} ({}, {})",
        file.display(),
        sniffed.mime,
        Kind::as_str(sniffed.kind)
    );
    let m = &processed.metadata;
    println!(
        "  metadata: width={} height={} duration_ms={} waveform={}",
        number(m.width),
        number(m.height),
        number(m.duration_ms),
        m.waveform.as_ref().map_or(0, Vec::len)
    );
    if let Some(p) = &processed.placeholder {
        println!("  blurhash: {}\n  thumbhash: {}", p.blurhash, p.thumbhash);
    }
    for v in &processed.variants {
        println!(
            "  {:<10} {:<11} {:>9} bytes  {}x{}  {}",
            v.name,
            v.mime,
            v.size,
            v.width.unwrap_or(0),
            v.height.unwrap_or(0),
            v.path.display()
        );
    }
    for step in &processed.steps {
        println!(
            "  step {:<16} {:>8.1} ms",
            step.name,
            step.took.as_secs_f64() * 1e3
        );
    }
    println!("  total {:>21.1} ms", total.as_secs_f64() * 1e3);
    Ok(())
}

/// A metadata value as `process` prints it: the number, or `none`.
fn number(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "none".into(), |v| v.to_string())
}
