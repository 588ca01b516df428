//! An upload into S3 as a multipart upload: parts go out as they fill, a few at a time, and
//! an upload that is not completed is aborted, so nothing partial is ever visible.

use super::{classify, other, PartPlan};
use crate::storage::{PutSink, Result};
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;

/// A multipart upload in progress. Parts go out as soon as they fill, at most
/// `concurrency` at a time; a body smaller than one part becomes a single PutObject.
pub(super) struct S3Sink {
    client: Client,
    bucket: String,
    key: String,
    plan: PartPlan,
    buffer: BytesMut,
    upload_id: Option<String>,
    next_part: i32,
    in_flight: JoinSet<Result<(CompletedPart, Bytes)>>,
    done: Vec<CompletedPart>,
    /// Buffers of parts already sent, reused for the next parts: a fresh 8 MiB buffer costs
    /// 2048 page faults, an eighth of the upload path's CPU.
    spare: Vec<BytesMut>,
    completed: bool,
}

/// Starts a multipart upload of `key` (with CRC32C checksums when bodies go unsigned); its id.
pub(super) async fn create_multipart(
    client: &Client,
    bucket: &str,
    key: &str,
    plan: &PartPlan,
) -> Result<String> {
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .set_checksum_algorithm((!plan.sign_payloads).then_some(ChecksumAlgorithm::Crc32C))
        .send()
        .await
        .map_err(classify)?;
    Ok(created
        .upload_id()
        .ok_or_else(|| other(anyhow::anyhow!("CreateMultipartUpload gave no id")))?
        .to_owned())
}

/// One PutObject of `body`, unsigned with a CRC32C or signed, as `plan` says.
pub(super) async fn put_object(
    client: &Client,
    bucket: &str,
    key: &str,
    body: Bytes,
    plan: &PartPlan,
) -> Result<()> {
    let checksum = plan.checksum(&body);
    let unsigned = checksum.is_some();
    let request = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .set_checksum_crc32_c(checksum)
        .body(ByteStream::from(body));
    match unsigned {
        true => request.customize().disable_payload_signing().send().await,
        false => request.send().await,
    }
    .map_err(classify)?;
    Ok(())
}

impl S3Sink {
    pub(super) fn new(client: Client, bucket: &str, key: &str, plan: PartPlan) -> Self {
        Self {
            client,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            plan,
            buffer: BytesMut::new(),
            upload_id: None,
            next_part: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            spare: Vec::new(),
            completed: false,
        }
    }

    async fn send_part(&mut self, body: Bytes) -> Result<()> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id =
                    create_multipart(&self.client, &self.bucket, &self.key, &self.plan).await?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        // The bound on memory: wait for a slot before taking another part off the buffer.
        while self.in_flight.len() >= self.plan.concurrency {
            self.reap_one().await?;
        }
        let part_number = self.next_part;
        self.next_part += 1;
        let checksum = self.plan.checksum(&body);
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(part_number)
            .set_checksum_crc32_c(checksum.clone())
            .body(ByteStream::from(body.clone()));
        let unsigned = checksum.is_some();
        self.in_flight.spawn(async move {
            let sent = match unsigned {
                true => request.customize().disable_payload_signing().send().await,
                false => request.send().await,
            }
            .map_err(classify)?;
            let part = CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(sent.e_tag().map(str::to_owned))
                .set_checksum_crc32_c(checksum)
                .build();
            Ok((part, body))
        });
        Ok(())
    }

    async fn reap_one(&mut self) -> Result<()> {
        match self.in_flight.join_next().await {
            None => Ok(()),
            Some(Ok(sent)) => {
                let (part, body) = sent?;
                self.done.push(part);
                // Ours alone once the request is over; if the SDK still holds it, let it go.
                if let Ok(mut buffer) = body.try_into_mut() {
                    buffer.clear();
                    self.spare.push(buffer);
                }
                Ok(())
            }
            Some(Err(e)) => Err(other(e)),
        }
    }
}

#[async_trait]
impl PutSink for S3Sink {
    async fn write(&mut self, mut chunk: Bytes) -> Result<()> {
        // Each part gets a buffer of exactly its size, handed whole to the request: a growing
        // buffer split into parts would keep its doubled capacity alive under every part in
        // flight.
        while !chunk.is_empty() {
            if self.buffer.capacity() == 0 {
                let part_size = self.plan.part_size;
                self.buffer = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| BytesMut::with_capacity(part_size));
            }
            let room = self.plan.part_size - self.buffer.len();
            let take = room.min(chunk.len());
            self.buffer.extend_from_slice(&chunk.split_to(take));
            if self.buffer.len() == self.plan.part_size {
                let part = std::mem::take(&mut self.buffer).freeze();
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        let rest = std::mem::take(&mut self.buffer).freeze();
        let Some(upload_id) = self.upload_id.clone() else {
            put_object(&self.client, &self.bucket, &self.key, rest, &self.plan).await?;
            self.completed = true;
            return Ok(());
        };
        if !rest.is_empty() {
            self.send_part(rest).await?;
        }
        while !self.in_flight.is_empty() {
            self.reap_one().await?;
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(classify)?;
        self.completed = true;
        Ok(())
    }
}

impl Drop for S3Sink {
    /// Dropped unfinished (client gone, size limit, digest mismatch, storage error): abort,
    /// so that the parts already sent are freed and nothing appears under the key. The
    /// lifecycle rule is the backstop if this process dies first.
    fn drop(&mut self) {
        let (false, Some(upload_id)) = (self.completed, self.upload_id.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut in_flight = std::mem::take(&mut self.in_flight);
        let request = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id);
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        runtime.spawn(async move {
            // A part still arriving after the abort could outlive it; stop them first.
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
            if let Err(e) = request.send().await {
                tracing::warn!(bucket, key, error = %e, "cannot abort a multipart upload; the lifecycle rule will");
            }
        });
    }
}
