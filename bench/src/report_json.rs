//! report.json: every figure, ratio, sample, the machine and the versions, for machines to
//! read and for runs to be compared later.

use super::report::Report;
use std::path::Path;

pub fn write(report: &Report, dir: &Path) -> anyhow::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(dir.join("report.json"))?);
    serde_json::to_writer_pretty(file, report)?;
    Ok(())
}
