//! `satchel-bench`, which `satchel bench` runs: see the library for what it measures.

use clap::Parser;

/// Benchmark satchel against the tools ops would otherwise use; writes report.md,
/// report.json and SVG charts.
#[derive(Parser)]
#[command(name = "satchel-bench", version)]
struct Cli {
    #[command(flatten)]
    args: satchel_bench::BenchArgs,
}

fn main() -> anyhow::Result<()> {
    satchel::app::init_process()?;
    satchel_bench::run(Cli::parse().args)
}
