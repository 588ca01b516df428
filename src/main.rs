use anyhow::Context;
use clap::{Parser, Subcommand};
use satchel::app::Role;
use satchel::domain::{sniff, Kind};
use satchel::{Application, Config};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

/// Media processing for chat backends.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API with its worker pool (embedded backends unless configured otherwise).
    Serve {
        /// A TOML file with the same keys as the SATCHEL_* variables, in lowercase.
        #[arg(long)]
        config: Option<PathBuf>,
        /// With a broker configured, also run a worker pool in this process (embedded
        /// deployments always do).
        #[arg(long)]
        with_workers: bool,
    },
    /// Consume jobs from the broker; serves only /healthz, /readyz and /metrics.
    Worker {
        /// A TOML file with the same keys as the SATCHEL_* variables, in lowercase.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Which worker pools to run.
        #[arg(long, value_delimiter = ',', default_value = "image,audio,video")]
        pools: Vec<String>,
        /// Jobs at once (default: SATCHEL_WORKERS, the number of cores).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Run the media pipeline on a local file and print what it produced.
    Process {
        /// The media file to process; its type is sniffed from its bytes.
        file: PathBuf,
        /// A preset TOML file (sizes, codecs, limits) [default: the built-in presets/default.toml].
        #[arg(long)]
        preset: Option<PathBuf>,
        /// The directory to write the variants into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// One transform, reported as JSON on stdout: it confines itself to FILE (read) and OUT
    /// (read and write) before it opens FILE. With `--host`, a worker's transform host instead:
    /// one forked, confined child per request read from stdin (`jobs/host.rs`).
    #[command(hide = true)]
    Transform {
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
        /// Instead of the transform, be the child of `satchel sandbox-probe`.
        #[arg(long)]
        probe: bool,
        /// With `--probe`: try to read this file (repeatable).
        #[arg(long)]
        probe_open: Vec<PathBuf>,
        /// With `--probe`: try to reach this address over TCP and UDP.
        #[arg(long)]
        probe_connect: Option<SocketAddr>,
    },
    /// Starts a transform child as a job does and has it try what a subverted decoder would:
    /// read its input, write its output directory, read each `--open` file, connect to
    /// `--connect`, list its environment and descriptors. Prints what it got, as JSON.
    #[command(hide = true)]
    SandboxProbe {
        #[arg(long)]
        open: Vec<PathBuf>,
        #[arg(long)]
        connect: Option<SocketAddr>,
    },
    /// Benchmark satchel against the tools ops would otherwise use; writes report.md,
    /// report.json and SVG charts. Runs `satchel-bench` from this binary's directory
    /// (`satchel bench --help` lists its options).
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// An error ends the process with one line: the error and its causes, no backtrace.
fn main() -> std::process::ExitCode {
    match main_inner() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("satchel: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main_inner() -> anyhow::Result<()> {
    satchel::app::init_process()?;
    match Cli::parse().command {
        Command::Serve {
            config,
            with_workers,
        } => {
            let config = load(config)?;
            let mut role = Role::default_for(&config);
            if with_workers {
                role.workers = Some((Kind::ALL_PROCESSED.to_vec(), config.workers));
            }
            run(config, role)
        }
        Command::Worker {
            config,
            pools,
            concurrency,
        } => {
            let config = load(config)?;
            if config.amqp_url.is_none() {
                anyhow::bail!("`satchel worker` consumes from a broker: set SATCHEL_AMQP_URL (embedded `serve` runs its own workers)");
            }
            let kinds = pools
                .iter()
                .map(|p| match Kind::parse(p) {
                    Some(k) if k != Kind::File => Ok(k),
                    _ => Err(anyhow::anyhow!(
                        "unknown pool {p:?}: use image, audio, video"
                    )),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let concurrency = concurrency.unwrap_or(config.workers).max(1);
            run(
                config,
                Role {
                    api: false,
                    workers: Some((kinds, concurrency)),
                },
            )
        }
        Command::Process { file, preset, out } => process(file, preset, out),
        Command::Transform {
            file,
            kind,
            preset,
            out,
            host,
            within,
            probe,
            probe_open,
            probe_connect,
        } => {
            // The presets are the worker's own file: read before the sandbox closes the
            // filesystem.
            let presets = presets(preset)?;
            if host {
                let within = within.expect("clap requires --within");
                return satchel::jobs::host::serve(&within, &presets);
            }
            let (file, out) = (file.expect("clap"), out.expect("clap"));
            let task = match kind {
                Some(kind) if !probe => satchel::jobs::host::Task::Transform { kind },
                _ => satchel::jobs::host::Task::Probe {
                    open: probe_open,
                    connect: probe_connect,
                    neighbour: None,
                },
            };
            transform(&task, &file, &out, &presets)
        }
        Command::SandboxProbe { open, connect } => sandbox_probe(&open, connect),
        Command::Bench { args } => bench(args),
    }
}

/// `satchel bench` is the `satchel-bench` binary beside this one, so that the service does
/// not link the bench; it takes the same arguments and names itself `satchel bench`, as before.
fn bench(args: Vec<OsString>) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let bench = exe.with_file_name(format!("satchel-bench{}", std::env::consts::EXE_SUFFIX));
    if !bench.is_file() {
        anyhow::bail!(
            "`satchel bench` runs satchel-bench, which is not next to this binary ({} is \
             missing): build it with `cargo build --release -p satchel-bench`",
            bench.display()
        );
    }
    let mut command = std::process::Command::new(&bench);
    command.args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let error = command.arg0("satchel bench").exec();
        Err(anyhow::Error::new(error).context(format!("cannot run {}", bench.display())))
    }
    #[cfg(not(unix))]
    {
        let status = command
            .status()
            .with_context(|| format!("cannot run {}", bench.display()))?;
        std::process::exit(status.code().unwrap_or(1));
    }
}

/// Logs go to stderr, filtered by `SATCHEL_LOG`; `SATCHEL_LOG_FORMAT=json` writes one JSON
/// object per line, and text has colours only on a terminal.
fn load(config: Option<PathBuf>) -> anyhow::Result<Config> {
    Config::load(config.as_deref()).map_err(anyhow::Error::msg)
}

fn run(config: Config, role: Role) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let app = Application::build(config).await?.with_role(role);
        app.run(shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = interrupt => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown signal received");
}

fn presets(preset: Option<PathBuf>) -> anyhow::Result<satchel_workers::Presets> {
    match preset {
        Some(path) => satchel_workers::Presets::load(&path).map_err(anyhow::Error::msg),
        None => Ok(satchel_workers::Presets::default()),
    }
}

/// `satchel transform` without a host: what one job's child does, in this process.
fn transform(
    task: &satchel::jobs::host::Task,
    file: &std::path::Path,
    out: &std::path::Path,
    presets: &satchel_workers::Presets,
) -> anyhow::Result<()> {
    let report = satchel::jobs::host::execute(task, file, out, presets);
    if report.is_empty() {
        anyhow::bail!("the transform made no report");
    }
    std::io::Write::write_all(&mut std::io::stdout().lock(), &report)?;
    println!();
    Ok(())
}

/// `satchel sandbox-probe`: a scratch directory laid out as a job's (an input file and an
/// empty output directory), and a probe child started through the job's own code.
fn sandbox_probe(open: &[PathBuf], connect: Option<SocketAddr>) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new().prefix("probe-").tempdir()?;
    let input = scratch.path().join("original");
    std::fs::write(&input, b"probe input")?;
    let out_dir = scratch.path().join("out");
    std::fs::create_dir(&out_dir)?;
    // Another job's original beside this one, as in a worker's scratch directory.
    let neighbour = scratch.path().join("neighbour");
    std::fs::create_dir(&neighbour)?;
    std::fs::write(neighbour.join("original"), b"another job's input")?;
    let isolation = satchel::jobs::isolate::Isolation::new(
        std::env::current_exe()?,
        None,
        256 << 20,
        scratch.path().to_path_buf(),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let probe = runtime.block_on(isolation.probe(
        &input,
        &out_dir,
        open,
        connect,
        Some(&neighbour.join("original")),
    ))?;
    println!("{}", serde_json::to_string(&probe)?);
    Ok(())
}

fn process(file: PathBuf, preset: Option<PathBuf>, out: PathBuf) -> anyhow::Result<()> {
    let presets = presets(preset)?;
    let mut head = vec![0u8; satchel::domain::sniff::SNIFF_BYTES];
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
    let processed = satchel_workers::process(pipeline, &file, &presets, &out)
        .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
    let total = started.elapsed();
    println!(
        "{} ({}, {})",
        file.display(),
        sniffed.mime,
        kind_name(sniffed.kind)
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

/// A metadata value as `satchel process` prints it: the number, or `none`.
fn number(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "none".into(), |v| v.to_string())
}

fn kind_name(kind: Kind) -> &'static str {
    kind.as_str()
}
