//! The S3 store (AWS, Garage, MinIO, Ceph): one private bucket per chat, uploads streamed as
//! multipart uploads that are aborted unless they complete, so a half-written object is never
//! visible and no orphaned parts are billed.

mod bucket_name;
mod errors;
mod sink;
mod stage;

use super::{AppendSink, BlobStore, Object, PutSink, Result, StorageError};
use crate::config::S3Settings;
use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, Delete, ExpirationStatus,
    LifecycleRule, LifecycleRuleFilter, ObjectIdentifier, PublicAccessBlockConfiguration,
};
use aws_sdk_s3::Client;
use base64::Engine;
use bucket_name::{bucket_name, check_prefix, legacy_bucket_name};
use bytes::BytesMut;
use errors::{classify, ignore_not_found, other, tolerate_not_implemented};
use secrecy::{ExposeSecret, SecretSlice};
use sink::S3Sink;
use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// S3 refuses parts under 5 MiB (except the last one).
pub const MIN_PART_SIZE: usize = 5 << 20;
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
pub const DEFAULT_CONCURRENCY: usize = 4;
/// How an upload is cut up: memory held per upload is at most `part_size × (concurrency + 1)`.
#[derive(Debug, Clone, Copy)]
pub struct PartPlan {
    pub part_size: usize,
    pub concurrency: usize,
    /// False: bodies go unsigned with a CRC32C instead of a SHA-256 payload hash, which is
    /// half the API node's CPU on an upload (`s3_payload_signing`).
    pub sign_payloads: bool,
}

impl PartPlan {
    /// The plan that `s3_part_size_bytes`, `s3_upload_concurrency` and `s3_payload_signing`
    /// describe.
    pub fn of(settings: &S3Settings) -> Self {
        Self {
            part_size: settings.part_size_bytes,
            concurrency: settings.upload_concurrency,
            sign_payloads: settings.sign_payloads(),
        }
    }

    /// The CRC32C that an unsigned body carries instead of a payload hash; `None` when bodies
    /// are signed.
    pub fn checksum(&self, body: &[u8]) -> Option<String> {
        (!self.sign_payloads).then(|| crc32c(body))
    }
}

/// CRC32C in the form of S3's `x-amz-checksum-crc32c`: base64 of the big-endian value.
pub fn crc32c(body: &[u8]) -> String {
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, body) as u32;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

impl Default for PartPlan {
    fn default() -> Self {
        Self {
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            sign_payloads: true,
        }
    }
}

pub struct S3Store {
    client: Client,
    prefix: String,
    /// `s3_bucket_key`: names new chat buckets, so that a chat id does not predict its bucket.
    bucket_key: SecretSlice<u8>,
    plan: PartPlan,
    /// Buckets this process has already given their public-access block and lifecycle rule.
    configured: Mutex<HashSet<String>>,
}

impl S3Store {
    /// `bucket_key` is `s3_bucket_key`, configured or generated; an `https://` endpoint is
    /// verified against `trust` (the system roots plus `tls_ca_file`).
    pub fn new(
        settings: &S3Settings,
        plan: PartPlan,
        bucket_key: &[u8],
        trust: &crate::tls::Trust,
    ) -> anyhow::Result<Self> {
        check_prefix(&settings.bucket_prefix)?;
        anyhow::ensure!(
            plan.part_size >= MIN_PART_SIZE,
            "s3_part_size_bytes must be at least {MIN_PART_SIZE}"
        );
        anyhow::ensure!(
            plan.concurrency >= 1,
            "s3_upload_concurrency must be at least 1"
        );
        let credentials = Credentials::new(
            &settings.access_key_id,
            settings.secret_access_key.expose_secret(),
            None,
            None,
            "satchel-config",
        );
        let mut config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(credentials)
            .region(Region::new(settings.region.clone()))
            .force_path_style(settings.path_style)
            // A dead store must fail a request in seconds, not hang it: readiness and uploads
            // answer 503 quickly and the client retries later.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(100)),
            )
            // Integrity comes from the SigV4 payload hash, or the CRC32C header the sink adds
            // to unsigned bodies, and our own SHA-256; the SDK's own CRC trailers are not
            // understood by every S3 implementation.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        if let Some(pem) = trust.pem() {
            config = config.http_client(https_client(pem)?);
        }
        Ok(Self {
            client: Client::from_conf(config.build()),
            prefix: settings.bucket_prefix.clone(),
            bucket_key: bucket_key.to_vec().into(),
            plan,
            configured: Mutex::new(HashSet::new()),
        })
    }

    /// Blocks public access and makes the server abort forgotten multipart uploads. Servers
    /// that do not implement a setting (Garage has no public-access block) are tolerated:
    /// buckets are private unless made public anyway.
    async fn configure_bucket(&self, bucket: &str) -> Result<()> {
        let block = self
            .client
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await;
        tolerate_not_implemented(block.map(drop), bucket, "public access block")?;

        let rule = LifecycleRule::builder()
            .id("satchel-abort-incomplete-uploads")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build()
            .map_err(other)?;
        let lifecycle = self
            .client
            .put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .rules(rule)
                    .build()
                    .map_err(other)?,
            )
            .send()
            .await;
        tolerate_not_implemented(lifecycle.map(drop), bucket, "lifecycle rule")
    }

    /// Aborts the multipart uploads in progress under `prefix` (`""`: all of the bucket's).
    async fn abort_uploads(&self, bucket: &str, prefix: &str) -> Result<()> {
        loop {
            let listed = self
                .client
                .list_multipart_uploads()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .map_err(classify)?;
            let uploads = listed.uploads();
            if uploads.is_empty() {
                return Ok(());
            }
            for upload in uploads {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let aborted = self
                    .client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
                ignore_not_found(aborted.map(drop).map_err(classify))?;
            }
            if !listed.is_truncated().unwrap_or(false) {
                return Ok(());
            }
        }
    }

    fn sink(&self, bucket: &str, key: &str) -> S3Sink {
        S3Sink::new(self.client.clone(), bucket, key, self.plan)
    }
}

#[async_trait]
impl BlobStore for S3Store {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn bucket_for(&self, chat: &crate::domain::ChatId, generation: &str) -> String {
        match generation {
            "" => legacy_bucket_name(&self.prefix, chat.as_str()),
            g => bucket_name(
                self.bucket_key.expose_secret(),
                &self.prefix,
                chat.as_str(),
                g,
            ),
        }
    }

    async fn ensure_bucket(&self, bucket: &str) -> Result<()> {
        let created = self.client.create_bucket().bucket(bucket).send().await;
        let new = match created {
            Ok(_) => true,
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => false,
            // The name is someone else's: nothing of this chat can be stored until an
            // operator frees the bucket or grants it to satchel's key.
            Err(e) if e.code() == Some("BucketAlreadyExists") => {
                return Err(StorageError::BucketTaken(bucket.to_owned()))
            }
            Err(e) => return Err(classify(e)),
        };
        let known = self
            .configured
            .lock()
            .expect("never poisoned")
            .contains(bucket);
        if new || !known {
            self.configure_bucket(bucket).await?;
            self.configured
                .lock()
                .expect("never poisoned")
                .insert(bucket.to_owned());
        }
        Ok(())
    }

    async fn begin_put(&self, bucket: &str, key: &str) -> Result<Box<dyn PutSink>> {
        Ok(Box::new(self.sink(bucket, key)))
    }

    /// Streams the file through the same sink as uploads, so a large video variant goes
    /// up in parts with bounded memory and per-request timeouts.
    async fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<()> {
        let mut file = tokio::fs::File::open(path).await?;
        let mut sink = Box::new(self.sink(bucket, key));
        loop {
            let mut chunk = BytesMut::with_capacity(1 << 20);
            if file.read_buf(&mut chunk).await? == 0 {
                break;
            }
            sink.write(chunk.freeze()).await?;
        }
        sink.finish().await
    }

    async fn get(&self, bucket: &str, key: &str, range: Option<Range<u64>>) -> Result<Object> {
        let mut request = self.client.get_object().bucket(bucket).key(key);
        if let Some(r) = &range {
            if r.start == r.end {
                // An empty range cannot be asked of S3; the caller gets an empty body.
                let total_size = self.size(bucket, key).await?;
                return Ok(Object {
                    total_size,
                    body: Box::pin(tokio::io::empty()),
                });
            }
            request = request.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        let output = request.send().await.map_err(classify)?;
        let total_size = match output.content_range() {
            Some(cr) => cr
                .rsplit_once('/')
                .and_then(|(_, total)| total.parse().ok())
                .ok_or_else(|| other(anyhow::anyhow!("bad Content-Range {cr:?}")))?,
            None => output.content_length().unwrap_or(0).max(0) as u64,
        };
        Ok(Object {
            total_size,
            body: Box::pin(output.body.into_async_read()),
        })
    }

    async fn size(&self, bucket: &str, key: &str) -> Result<u64> {
        let head = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        Ok(head.content_length().unwrap_or(0).max(0) as u64)
    }

    async fn begin_append(
        &self,
        bucket: &str,
        upload: &str,
        stage: &str,
        offset: u64,
    ) -> Result<Box<dyn AppendSink>> {
        let sink = stage::S3Append::open(
            self.client.clone(),
            bucket,
            upload,
            stage,
            offset,
            self.plan,
        )
        .await?;
        Ok(Box::new(sink))
    }

    async fn read_staged(
        &self,
        bucket: &str,
        upload: &str,
        stage: &str,
        length: u64,
    ) -> Result<Object> {
        stage::read(&self.client, bucket, upload, stage, length, &self.plan).await
    }

    async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<()> {
        ignore_not_found(self.abort_uploads(bucket, prefix).await)?;
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page.map_err(classify) {
                Err(StorageError::NotFound) => return Ok(()),
                other => other?,
            };
            let objects: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            if objects.is_empty() {
                continue;
            }
            let deleted = self
                .client
                .delete_objects()
                .bucket(bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(objects))
                        .quiet(true)
                        .build()
                        .map_err(other)?,
                )
                .send()
                .await
                .map_err(classify)?;
            if let Some(failed) = deleted.errors().first() {
                return Err(other(anyhow::anyhow!(
                    "cannot delete {:?}: {:?}",
                    failed.key(),
                    failed.code()
                )));
            }
        }
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.configured
            .lock()
            .expect("never poisoned")
            .remove(bucket);
        // An upload racing the erase can add an object between emptying and deleting;
        // a second round catches it.
        for _ in 0..3 {
            self.delete_prefix(bucket, "").await?;
            match self.client.delete_bucket().bucket(bucket).send().await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some("BucketNotEmpty") => continue,
                Err(e) => return ignore_not_found(Err(classify(e))),
            }
        }
        Err(other(anyhow::anyhow!(
            "bucket {bucket} keeps filling while being deleted"
        )))
    }

    /// A HEAD of a bucket name no chat can have: any answer, 404 included, shows the server
    /// is up, and it costs the same however many buckets there are.
    async fn check(&self) -> Result<()> {
        let probe = format!("{}readyz-probe", self.prefix);
        match self.client.head_bucket().bucket(probe).send().await {
            Ok(_) => Ok(()),
            Err(e) => match classify(e) {
                StorageError::NotFound => Ok(()),
                StorageError::Unavailable(e) | StorageError::Other(e) => {
                    Err(StorageError::Unavailable(e))
                }
                taken @ StorageError::BucketTaken(_) => Err(taken),
            },
        }
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        signed_at: std::time::SystemTime,
        ttl: Duration,
        content_type: &str,
        content_disposition: &str,
    ) -> Result<Option<String>> {
        let config = PresigningConfig::builder()
            .start_time(signed_at)
            .expires_in(ttl)
            .build()
            .map_err(other)?;
        let request = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .response_content_type(content_type)
            .response_content_disposition(content_disposition)
            // As service downloads: never kept by a shared cache.
            .response_cache_control("private")
            .presigned(config)
            .await
            .map_err(other)?;
        Ok(Some(request.uri().to_owned()))
    }
}

/// The SDK's own HTTPS client (rustls, aws-lc-rs) trusting the system roots plus `pem`.
fn https_client(pem: &str) -> anyhow::Result<aws_sdk_s3::config::SharedHttpClient> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let trust = TrustStore::default().with_pem_certificate(pem.as_bytes());
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| anyhow::anyhow!("tls_ca_file for S3: {e}"))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}
