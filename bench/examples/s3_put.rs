//! The baseline of the 1 GiB upload measurement (scripts/bench-real.sh): a multipart PUT of a
//! file straight to the S3 store satchel is configured with (`SATCHEL_S3_*`), with the same
//! SDK, part size, parts in flight and payload signing as satchel, without satchel in between.
//! The file is read
//! into memory first, so only the PUT is timed.
//!
//! cargo run --release -p satchel-bench --example s3_put -- /path/to/file

use satchel_bench::DirectS3;
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).expect("usage: s3_put FILE");
    let config = satchel::Config::load(None).map_err(anyhow::Error::msg)?;
    let settings = config
        .s3
        .ok_or_else(|| anyhow::anyhow!("no S3 store configured: set SATCHEL_S3_*"))?;
    let body = bytes::Bytes::from(tokio::fs::read(&path).await?);
    let direct = DirectS3::connect(&settings).await?;
    let started = Instant::now();
    let put = direct.put("s3_put", body.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    direct.clean_up(&["s3_put".to_owned()]).await;
    put?;
    println!(
        "{} bytes in {seconds:.2} s: {:.1} MiB/s",
        body.len(),
        body.len() as f64 / seconds / (1 << 20) as f64
    );
    Ok(())
}
