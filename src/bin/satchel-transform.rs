//! `satchel-transform`: where every job's transform runs, with every codec. It is a binary of
//! its own because it links FFmpeg, which the service's `satchel` does not (`cli.rs`): a worker
//! starts it as its transform hosts (`jobs/host.rs`), and `satchel process` hands it what needs
//! FFmpeg.

use clap::{Parser, Subcommand};

/// satchel's media transforms, FFmpeg's included; started by `satchel`, not by hand.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Process(satchel::cli::ProcessArgs),
    #[command(hide = true)]
    Transform(satchel::cli::TransformArgs),
}

/// An error ends the process with one line: the error and its causes, no backtrace.
fn main() -> std::process::ExitCode {
    let done = satchel::app::init_process().and_then(|()| match Cli::parse().command {
        Command::Process(args) => satchel::cli::process(args, Some(&satchel_workers_av::FFMPEG)),
        Command::Transform(args) => {
            satchel::cli::transform(args, Some(&satchel_workers_av::FFMPEG))
        }
    });
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("satchel-transform: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
