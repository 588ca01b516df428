//! The baseline for the upload throughput measurement: a multipart PUT of a file straight to
//! S3 with the same SDK, part size and concurrency as satchel, without satchel in between.
//!
//! eval "$(scripts/garage.sh env)"
//! cargo run --release --example s3_put -- /path/to/file [bucket]

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

const PART: usize = 8 << 20;
const IN_FLIGHT: usize = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: s3_put FILE [BUCKET]");
    let bucket = args.next().unwrap_or_else(|| "satchel-bench".into());
    let var = |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"));
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new(
            var("SATCHEL_TEST_S3_ACCESS_KEY_ID")?,
            var("SATCHEL_TEST_S3_SECRET_ACCESS_KEY")?,
            None,
            None,
            "s3_put",
        ))
        .region(Region::new(var("SATCHEL_TEST_S3_REGION")?))
        .endpoint_url(var("SATCHEL_TEST_S3_ENDPOINT")?)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let _ = client.create_bucket().bucket(&bucket).send().await;

    let started = Instant::now();
    let upload = client
        .create_multipart_upload()
        .bucket(&bucket)
        .key("s3_put")
        .send()
        .await?;
    let id = upload.upload_id().unwrap().to_owned();
    let mut file = tokio::fs::File::open(&path).await?;
    let mut tasks = JoinSet::new();
    let mut parts = Vec::new();
    let mut size = 0u64;
    for number in 1.. {
        let mut buf = Vec::with_capacity(PART);
        while buf.len() < PART {
            if (&mut file)
                .take((PART - buf.len()) as u64)
                .read_to_end(&mut buf)
                .await?
                == 0
            {
                break;
            }
        }
        if buf.is_empty() {
            break;
        }
        size += buf.len() as u64;
        if tasks.len() >= IN_FLIGHT {
            parts.push(tasks.join_next().await.unwrap()??);
        }
        let request = client
            .upload_part()
            .bucket(&bucket)
            .key("s3_put")
            .upload_id(&id)
            .part_number(number)
            .body(ByteStream::from(buf));
        tasks.spawn(async move {
            let sent = request.send().await?;
            anyhow::Ok(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(sent.e_tag().map(str::to_owned))
                    .build(),
            )
        });
    }
    while let Some(part) = tasks.join_next().await {
        parts.push(part??);
    }
    parts.sort_by_key(|p| p.part_number());
    client
        .complete_multipart_upload()
        .bucket(&bucket)
        .key("s3_put")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{size} bytes in {seconds:.2} s: {:.1} MiB/s",
        size as f64 / seconds / (1 << 20) as f64
    );
    Ok(())
}
