use clap::{Parser, Subcommand};
use satchel::app::Role;
use satchel::domain::Kind;
use satchel::{Application, Config};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    Process(satchel::cli::ProcessArgs),
    #[command(hide = true)]
    Transform(satchel::cli::TransformArgs),
    /// Starts a transform child as a job does and has it try what a subverted decoder would:
    /// read its input, write its output directory, read each `--open` file, connect to
    /// `--connect`, list its environment and descriptors. Prints what it got, as JSON.
    #[command(hide = true)]
    SandboxProbe {
        #[arg(long)]
        open: Vec<PathBuf>,
        #[arg(long)]
        connect: Option<SocketAddr>,
        /// In a stills host (`satchel transform --host --stills`) rather than an FFmpeg one.
        #[arg(long)]
        stills: bool,
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
        // No FFmpeg in this binary: what needs it runs in `satchel-transform`.
        Command::Process(args) => satchel::cli::process(args, None),
        Command::Transform(args) => satchel::cli::transform(args, None),
        Command::SandboxProbe {
            open,
            connect,
            stills,
        } => sandbox_probe(&open, connect, stills),
        Command::Bench { args } => bench(args),
    }
}

/// `satchel bench` is the `satchel-bench` binary beside this one, so that the service does
/// not link the bench; it takes the same arguments and names itself `satchel bench`, as before.
fn bench(args: Vec<OsString>) -> anyhow::Result<()> {
    Err(satchel::cli::exec(
        &satchel::cli::beside("satchel-bench")?,
        "satchel bench",
        args,
    ))
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

/// `satchel sandbox-probe`: a scratch directory laid out as a job's (an input file and an
/// empty output directory), and a probe child started through the job's own code.
fn sandbox_probe(
    open: &[PathBuf],
    connect: Option<SocketAddr>,
    stills: bool,
) -> anyhow::Result<()> {
    use satchel::jobs::isolate::Hosts;
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
        satchel::cli::transform_binary()?,
        None,
        256 << 20,
        scratch.path().to_path_buf(),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let probe = runtime.block_on(isolation.probe(
        if stills { Hosts::Stills } else { Hosts::Av },
        &input,
        &out_dir,
        open,
        connect,
        Some(&neighbour.join("original")),
    ))?;
    println!("{}", serde_json::to_string(&probe)?);
    Ok(())
}
