//! A resumable upload's bytes in S3 between its requests, with no state on any node: the
//! parts of one multipart upload of `tus/<upload>/data` (each at least [`MIN_PART_SIZE`]),
//! and the remainder that has not made a part yet as a tail object of its own. The stage,
//! which the catalog keeps, names the multipart upload, its parts and the tail.
//!
//! An append reads the tail back (under 5 MiB), sends a part each time `part_size` bytes
//! have gathered, and at the end sends the rest as a part if it is 5 MiB or more, else as a
//! new tail object under a fresh key. Until the catalog records the new stage, the old one
//! stays whole: its parts are not touched (new parts have higher numbers) and its tail is
//! deleted only once the new stage is recorded ([`AppendSink::recorded`]).

use super::sink::{create_multipart, put_object};
use super::{classify, other, MIN_PART_SIZE};
use crate::storage::{
    staged_key, staging_prefix, AppendSink, Object, PartPlan, Result, StorageError,
};
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// What the catalog keeps of a staged upload (as JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stage {
    /// The multipart upload of `tus/<upload>/data`, once a part was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<Part>,
    /// The object holding the bytes after the parts, if there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Part {
    number: i32,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crc32c: Option<String>,
}

impl Stage {
    fn parse(stage: &str) -> Result<Self> {
        match stage {
            "" => Ok(Self::default()),
            s => serde_json::from_str(s)
                .map_err(|e| other(anyhow::anyhow!("unreadable upload stage: {e}"))),
        }
    }

    fn parts_size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }
}

pub(super) struct S3Append {
    client: Client,
    bucket: String,
    upload: String,
    plan: PartPlan,
    stage: Stage,
    /// The tail the recorded stage names: deleted once the new stage is recorded.
    old_tail: Option<String>,
    /// The tail read back, then what was written since.
    buffer: BytesMut,
}

impl S3Append {
    pub(super) async fn open(
        client: Client,
        bucket: &str,
        upload: &str,
        stage: &str,
        offset: u64,
        plan: PartPlan,
    ) -> Result<Self> {
        let stage = Stage::parse(stage)?;
        // Exactly a part's size, handed whole to its request: a growing buffer split into
        // parts would keep its doubled capacity alive.
        let mut buffer = BytesMut::with_capacity(plan.part_size);
        if let Some(tail) = &stage.tail {
            buffer.extend_from_slice(&read_tail(&client, bucket, tail).await?);
        }
        let have = stage.parts_size() + buffer.len() as u64;
        if have != offset {
            return Err(other(anyhow::anyhow!(
                "staged upload {upload} holds {have} bytes, the catalog says {offset}"
            )));
        }
        Ok(Self {
            client,
            bucket: bucket.to_owned(),
            upload: upload.to_owned(),
            plan,
            old_tail: stage.tail.clone(),
            stage,
            buffer,
        })
    }

    async fn send_part(&mut self, body: Bytes) -> Result<()> {
        let key = staged_key(&self.upload);
        let upload_id = match &self.stage.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = create_multipart(&self.client, &self.bucket, &key, &self.plan).await?;
                self.stage.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.stage.parts.last().map_or(1, |p| p.number + 1);
        let part = upload_part(
            &self.client,
            &self.bucket,
            &key,
            &upload_id,
            number,
            body,
            &self.plan,
        )
        .await?;
        self.stage.parts.push(part);
        Ok(())
    }
}

/// A tail object, whole: under [`MIN_PART_SIZE`] by construction.
async fn read_tail(client: &Client, bucket: &str, key: &str) -> Result<Bytes> {
    Ok(client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(classify)?
        .body
        .collect()
        .await
        .map_err(other)?
        .into_bytes())
}

async fn upload_part(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    number: i32,
    body: Bytes,
    plan: &PartPlan,
) -> Result<Part> {
    let size = body.len() as u64;
    let crc32c = plan.checksum(&body);
    let request = client
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(number)
        .set_checksum_crc32_c(crc32c.clone())
        .body(ByteStream::from(body));
    let sent = match crc32c.is_some() {
        true => request.customize().disable_payload_signing().send().await,
        false => request.send().await,
    }
    .map_err(classify)?;
    Ok(Part {
        number,
        size,
        etag: sent.e_tag().map(str::to_owned),
        crc32c,
    })
}

#[async_trait]
impl AppendSink for S3Append {
    async fn write(&mut self, mut chunk: Bytes) -> Result<()> {
        let part_size = self.plan.part_size;
        while !chunk.is_empty() {
            if self.buffer.capacity() == 0 {
                self.buffer = BytesMut::with_capacity(part_size);
            }
            let take = (part_size - self.buffer.len()).min(chunk.len());
            self.buffer.extend_from_slice(&chunk.split_to(take));
            if self.buffer.len() == part_size {
                let part = std::mem::take(&mut self.buffer).freeze();
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<String> {
        let rest = std::mem::take(&mut self.buffer).freeze();
        self.stage.tail = None;
        if rest.len() >= MIN_PART_SIZE {
            self.send_part(rest).await?;
        } else if !rest.is_empty() {
            let key = format!(
                "{}tail-{}",
                staging_prefix(&self.upload),
                ulid::Ulid::new().to_string().to_lowercase()
            );
            put_object(&self.client, &self.bucket, &key, rest, &self.plan).await?;
            self.stage.tail = Some(key);
        }
        serde_json::to_string(&self.stage).map_err(other)
    }

    async fn recorded(self: Box<Self>) {
        let Some(old) = self
            .old_tail
            .filter(|old| Some(old) != self.stage.tail.as_ref())
        else {
            return;
        };
        // Left behind, it goes with the upload's prefix when the upload ends.
        if let Err(e) = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&old)
            .send()
            .await
        {
            tracing::debug!(key = old, error = %e, "cannot delete an upload's old tail yet");
        }
    }
}

/// The whole of a finished staged upload: its multipart upload completed (the tail as its
/// last part, which may be small), or the tail alone when no part was ever sent.
pub(super) async fn read(
    client: &Client,
    bucket: &str,
    upload: &str,
    stage: &str,
    length: u64,
    plan: &PartPlan,
) -> Result<Object> {
    let stage = Stage::parse(stage)?;
    let key = match (&stage.upload_id, &stage.tail) {
        (None, Some(tail)) => tail.clone(),
        (None, None) => {
            return Ok(Object {
                total_size: 0,
                body: Box::pin(tokio::io::empty()),
            })
        }
        (Some(upload_id), tail) => {
            let key = staged_key(upload);
            let mut parts = stage.parts.clone();
            if let Some(tail) = tail {
                let bytes = read_tail(client, bucket, tail).await?;
                let number = parts.last().map_or(1, |p| p.number + 1);
                parts
                    .push(upload_part(client, bucket, &key, upload_id, number, bytes, plan).await?);
            }
            let completed = parts
                .iter()
                .map(|p| {
                    CompletedPart::builder()
                        .part_number(p.number)
                        .set_e_tag(p.etag.clone())
                        .set_checksum_crc32_c(p.crc32c.clone())
                        .build()
                })
                .collect();
            let done = client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(&key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(completed))
                        .build(),
                )
                .send()
                .await
                .map_err(classify);
            match done {
                // Completed by an earlier attempt that did not get to record it.
                Ok(_) | Err(StorageError::NotFound) => key,
                Err(e) => return Err(e),
            }
        }
    };
    let object = client
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .map_err(classify)?;
    let size = object.content_length().unwrap_or(0).max(0) as u64;
    if size != length {
        return Err(other(anyhow::anyhow!(
            "staged upload {upload} holds {size} bytes, not {length}"
        )));
    }
    Ok(Object {
        total_size: size,
        body: Box::pin(object.body.into_async_read()),
    })
}
