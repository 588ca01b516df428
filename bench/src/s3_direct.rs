//! The peer of the upload workload: a multipart PUT straight to the S3 store satchel is
//! configured with, with satchel's own part size, parts in flight and payload signing (as
//! examples/s3_put.rs): unsigned bodies carry the same CRC32C as satchel's.

use anyhow::Context;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use satchel::config::S3Settings;
use satchel::storage::PartPlan;
use secrecy::ExposeSecret;
use tokio::task::JoinSet;

pub struct DirectS3 {
    client: Client,
    bucket: String,
    /// satchel's own plan, so that both cut and sign the file alike.
    plan: PartPlan,
}

impl DirectS3 {
    /// Creates a scratch bucket of its own (named with satchel's prefix), removed by
    /// [`DirectS3::clean_up`].
    pub async fn connect(settings: &S3Settings) -> anyhow::Result<Self> {
        let mut config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new(
                &settings.access_key_id,
                settings.secret_access_key.expose_secret(),
                None,
                None,
                "satchel-bench",
            ))
            .region(Region::new(settings.region.clone()))
            .force_path_style(settings.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let client = Client::from_conf(config.build());
        let bucket = format!(
            "{}bench-{:016x}",
            settings.bucket_prefix,
            rand::random::<u64>()
        );
        client
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .with_context(|| format!("creating the scratch bucket {bucket}"))?;
        Ok(DirectS3 {
            client,
            bucket,
            plan: PartPlan::of(settings),
        })
    }

    pub async fn put(&self, key: &str, body: Bytes) -> anyhow::Result<()> {
        let unsigned = !self.plan.sign_payloads;
        let part_size = self.plan.part_size;
        if body.len() <= part_size {
            let request = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .set_checksum_crc32_c(self.plan.checksum(&body))
                .body(ByteStream::from(body));
            match unsigned {
                true => request.customize().disable_payload_signing().send().await?,
                false => request.send().await?,
            };
            return Ok(());
        }
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_checksum_algorithm(unsigned.then_some(ChecksumAlgorithm::Crc32C))
            .send()
            .await?;
        let id = upload.upload_id().context("no upload id")?.to_owned();
        let mut tasks = JoinSet::new();
        let mut parts = Vec::new();
        for (i, start) in (0..body.len()).step_by(part_size).enumerate() {
            if tasks.len() >= self.plan.concurrency.max(1) {
                parts.push(tasks.join_next().await.expect("a task")??);
            }
            let number = i as i32 + 1;
            let part = body.slice(start..(start + part_size).min(body.len()));
            let checksum = self.plan.checksum(&part);
            let request = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&id)
                .part_number(number)
                .set_checksum_crc32_c(checksum.clone())
                .body(ByteStream::from(part));
            tasks.spawn(async move {
                let sent = match unsigned {
                    true => request.customize().disable_payload_signing().send().await?,
                    false => request.send().await?,
                };
                anyhow::Ok(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(sent.e_tag().map(str::to_owned))
                        .set_checksum_crc32_c(checksum)
                        .build(),
                )
            });
        }
        while let Some(part) = tasks.join_next().await {
            parts.push(part??);
        }
        parts.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await?;
        Ok(())
    }

    pub async fn clean_up(&self, keys: &[String]) {
        for key in keys {
            let _ = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await;
        }
        let _ = self
            .client
            .delete_bucket()
            .bucket(&self.bucket)
            .send()
            .await;
    }
}
