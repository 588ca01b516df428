//! `satchel-bench` (run as `satchel bench`): the numbers ops size satchel from, side by side
//! with the tools they would otherwise use, measured on their own machine and deployment in
//! one run. It drives the `satchel` binary that sits next to its own executable.
//!
//! Seven workloads (`image`, `voice`, `video`, `upload`, `load`, `links`, `photos`) each
//! yield rows of figures and comparisons (satchel ÷ peer); a workload that fails is reported
//! as failed and the run goes on. Inputs are generated from a seed, so two runs measure the same bytes.

mod charts;
mod client;
mod image;
pub mod inputs;
mod links;
mod load;
mod machine;
mod measure;
mod options;
pub mod peers;
mod photos;
mod progress;
mod pyvips;
mod report;
mod report_json;
mod report_md;
mod s3_direct;
mod server;
mod stats;
mod transform;
mod upload;
mod video;
mod voice;

pub use options::{BenchArgs, Suite, WorkloadId};
pub use s3_direct::DirectS3;

use anyhow::Context;
use client::Api;
use machine::Machine;
use options::Plan;
use peers::Peers;
use report::{PeerInfo, Report, Status, TargetInfo, Workload};
use satchel::config::S3Settings;
use satchel_workers::Presets;
use server::Target;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Everything a workload needs, built once per run.
pub struct Ctx {
    /// The `satchel` binary next to this one: its `process` and `serve` are what is measured.
    pub exe: PathBuf,
    pub plan: Plan,
    pub seed: u64,
    pub cache: PathBuf,
    /// Scratch outputs of the transform commands, kept for a look at their quality.
    pub work: PathBuf,
    pub presets: Presets,
    pub preset_path: Option<PathBuf>,
    pub peers: Peers,
    pub api: Api,
    pub target: Target,
    /// The S3 store to PUT to directly, or why that comparison does not apply.
    pub s3: Result<S3Settings, String>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(run_async(args))
}

async fn run_async(args: BenchArgs) -> anyhow::Result<()> {
    let exe = satchel_exe()?;
    let started = Instant::now();
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut machine = Machine::probe();
    let presets = match &args.preset {
        Some(path) => Presets::load(path).map_err(anyhow::Error::msg)?,
        None => Presets::default(),
    };
    let mut peers = Peers::find();
    let selected = |id: WorkloadId| args.only.is_empty() || args.only.contains(&id);
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(|| args.out.join("inputs"));
    if selected(WorkloadId::Photos) {
        let venv = args
            .pyvips_venv
            .clone()
            .unwrap_or_else(|| cache.join("pyvips-venv"));
        let pb = progress::spinner(format!(
            "setting up pyvips in {} (once; pip needs PyPI)",
            venv.display()
        ));
        let peer = pyvips::setup(&venv);
        progress::finish(
            &pb,
            match &peer.version {
                Some(v) => format!("pyvips peer: {v}"),
                None => format!("pyvips peer missing: {}", peer.missing_note()),
            },
        );
        peers.pyvips = Some(peer);
    }
    eprintln!(
        "satchel bench: {} suite, output in {}",
        args.suite.name(),
        args.out.display()
    );

    let target = match (&args.target, &args.token) {
        (Some(url), Some(token)) => Target::remote(url, token),
        _ => {
            let pb = progress::spinner("starting satchel serve on a free port");
            let target = Target::embedded(&exe, &args.out, args.preset.as_deref()).await?;
            progress::finish(&pb, format!("satchel serve at {}", target.base));
            target
        }
    };
    let api = Api::new(&target.base, &target.token)?;
    let ready = api
        .readyz()
        .await
        .with_context(|| format!("{}/readyz does not answer", target.base))?;
    api.check_token().await?;
    let backend = |key: &str| ready[key].as_str().unwrap_or("unknown").to_owned();
    let target_info = TargetInfo {
        mode: if target.embedded.is_some() {
            "embedded"
        } else {
            "remote"
        },
        url: target.base.clone(),
        storage: backend("storage"),
        catalog: backend("catalog"),
        queue: backend("queue"),
    };
    let s3 = s3_settings(&target_info.storage);

    let ctx = Ctx {
        exe,
        plan: args.suite.plan(),
        seed: args.seed,
        cache,
        work: args.out.join("work"),
        presets,
        preset_path: args.preset.clone(),
        peers,
        api,
        target,
        s3,
    };
    let mut workloads = Vec::new();
    for id in [
        WorkloadId::Image,
        WorkloadId::Voice,
        WorkloadId::Video,
        WorkloadId::Upload,
        WorkloadId::Load,
        WorkloadId::Links,
        WorkloadId::Photos,
    ] {
        if !selected(id) {
            continue;
        }
        let mut workload = run_workload(&ctx, id).await;
        let transform = matches!(
            id,
            WorkloadId::Image | WorkloadId::Voice | WorkloadId::Video
        );
        if transform && ctx.target.embedded.is_none() {
            workload.notes.push(
                "`satchel process` ran on this machine with this build, not on the deployment; \
                 the deployment's own job time is the \"via HTTP API\" row."
                    .into(),
            );
        }
        workloads.push(workload);
    }
    machine.load_at_end = machine::load_average();

    let Ctx {
        plan,
        peers,
        target,
        ..
    } = ctx;
    target.stop().await;
    let mut versions = BTreeMap::new();
    versions.insert(
        "satchel".to_owned(),
        format!("{} ({})", env!("CARGO_PKG_VERSION"), machine.satchel_build),
    );
    for p in peers.all() {
        if let Some(v) = &p.version {
            versions.insert(p.name.to_owned(), v.clone());
        }
    }
    let report = Report {
        suite: args.suite.name(),
        started_at,
        wall_seconds: started.elapsed().as_secs_f64(),
        seed: args.seed,
        target: target_info,
        machine,
        versions,
        peers: peers
            .all()
            .iter()
            .map(|p| PeerInfo {
                name: p.name.to_owned(),
                status: if p.path.is_some() {
                    Status::Measured
                } else {
                    Status::Missing
                },
                path: p.path.as_ref().map(|p| p.display().to_string()),
                version: p.version.clone(),
                note: p.path.is_none().then(|| p.missing_note()),
            })
            .collect(),
        plan,
        workloads,
    };
    let charts = charts::write(&report, &args.out)?;
    report_json::write(&report, &args.out)?;
    report_md::write(&report, &args.out, &charts)?;
    println!("{}", report_md::render(&report, &charts));
    eprintln!(
        "wrote {0}/report.md, {0}/report.json and {1} chart(s) in {2:.0} s",
        args.out.display(),
        charts.len(),
        report.wall_seconds
    );
    Ok(())
}

async fn run_workload(ctx: &Ctx, id: WorkloadId) -> Workload {
    let (name, result) = match id {
        WorkloadId::Image => ("image", image::run(ctx).await),
        WorkloadId::Voice => ("voice", voice::run(ctx).await),
        WorkloadId::Video => ("video", video::run(ctx).await),
        WorkloadId::Upload => ("upload", upload::run(ctx).await),
        WorkloadId::Load => ("load", load::run(ctx).await),
        WorkloadId::Links => ("links", links::run(ctx).await),
        WorkloadId::Photos => ("photos", photos::run(ctx).await),
    };
    result.unwrap_or_else(|e| {
        eprintln!("workload {name} failed: {e:#}");
        Workload::failed(name, name, &e)
    })
}

/// The direct-PUT peer needs the same S3 store satchel writes to, read from `SATCHEL_S3_*`
/// as the service reads them.
fn s3_settings(target_storage: &str) -> Result<S3Settings, String> {
    let config = satchel::Config::load(None).map_err(|e| format!("SATCHEL_* settings: {e}"))?;
    match (config.s3, target_storage) {
        (Some(s3), "s3") => Ok(s3),
        (None, "s3") => {
            Err("the target stores in S3, but SATCHEL_S3_* are not set for the bench".into())
        }
        _ => Err(format!(
            "no S3 store configured (the target's storage is {target_storage})"
        )),
    }
}

/// The `satchel` binary beside this executable, as cargo builds them (both in one target
/// directory) and as they are installed.
fn satchel_exe() -> anyhow::Result<PathBuf> {
    let own = std::env::current_exe()?;
    let exe = own.with_file_name(format!("satchel{}", std::env::consts::EXE_SUFFIX));
    if !exe.is_file() {
        anyhow::bail!(
            "satchel-bench measures the satchel binary next to it, and {} does not exist: \
             build both with `cargo build --release -p satchel -p satchel-bench`",
            exe.display()
        );
    }
    Ok(exe)
}
