//! Object storage: where originals and variants live, one private bucket per chat.
//!
//! The seam is narrow on purpose (pict-rs's `Store`): create a bucket, stream an object in,
//! stream one out, remove. The filesystem store is the embedded default; S3 plugs in here.

mod fs;
mod naming;
mod s3;

pub use fs::FsStore;
pub use naming::base32_lower;
pub use s3::{crc32c, PartPlan, S3Store};

use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncRead;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no such object")]
    NotFound,
    /// The store did not answer; the request may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    #[error("storage error: {0}")]
    Other(#[source] anyhow::Error),
    /// The chat's bucket name exists in the store and belongs to another account
    /// (`BucketAlreadyExists`): squatted, or satchel's key lost its access.
    #[error("bucket {0} exists and belongs to another account of the object store")]
    BucketTaken(String),
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound,
            _ => StorageError::Other(e.into()),
        }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// An object being read: its full size and a reader over the requested bytes.
pub struct Object {
    pub total_size: u64,
    pub body: Pin<Box<dyn AsyncRead + Send>>,
}

/// An object being written. Nothing is visible under its key until [`PutSink::finish`]
/// succeeds; dropping the sink without finishing discards everything written.
#[async_trait]
pub trait PutSink: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<()>;
    async fn finish(self: Box<Self>) -> Result<()>;
}

/// More bytes of a resumable upload, staged in the chat's bucket under [`staging_prefix`].
/// What is written counts only once [`AppendSink::commit`] has returned the new stage and the
/// catalog has recorded it: the catalog's offset and stage are the truth, so bytes written
/// past them (a request cut short, a failed checksum, a crash) are overwritten or ignored by
/// the next append.
#[async_trait]
pub trait AppendSink: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<()>;
    /// Makes everything written durable and returns the stage that describes the upload's
    /// bytes so far (opaque to everyone but this store).
    async fn commit(&mut self) -> Result<String>;
    /// The catalog has recorded the stage [`commit`](Self::commit) returned: what only the
    /// stage before needed may go.
    async fn recorded(self: Box<Self>) {}
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// For `readyz` and logs: `filesystem`, `s3`.
    fn name(&self) -> &'static str;

    /// The bucket that holds this chat's objects: valid for the store, distinct for
    /// distinct chats. The catalog records it, so a later naming change never loses data.
    /// The bucket of one generation of a chat (a chat erased and used again gets a new
    /// generation, so a new bucket). An empty generation names the chat's first-ever bucket
    /// as earlier versions did.
    fn bucket_for(&self, chat: &crate::domain::ChatId, generation: &str) -> String;

    /// Creates the bucket if it does not exist; safe to call again.
    async fn ensure_bucket(&self, bucket: &str) -> Result<()>;

    async fn begin_put(&self, bucket: &str, key: &str) -> Result<Box<dyn PutSink>>;

    /// Stores a local file under `key`, replacing any object there (jobs are idempotent). The
    /// file may be moved, not copied (the filesystem store renames it into place).
    async fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<()>;

    /// Reads `range` of the object (all of it when `None`); the range must lie inside it.
    async fn get(&self, bucket: &str, key: &str, range: Option<Range<u64>>) -> Result<Object>;

    async fn size(&self, bucket: &str, key: &str) -> Result<u64>;

    /// Copies the object into a local file, for workers that need a path; the filesystem
    /// store links it instead, so the file is to be read, never written.
    async fn fetch_to(&self, bucket: &str, key: &str, dest: &Path) -> Result<u64> {
        let mut object = self.get(bucket, key, None).await?;
        let mut file = tokio::fs::File::create(dest).await?;
        let n = tokio::io::copy(&mut object.body, &mut file).await?;
        file.sync_data().await?;
        Ok(n)
    }

    /// Opens resumable upload `upload`'s staged bytes for more, after the first `offset`
    /// described by `stage` (`""` before the first append).
    async fn begin_append(
        &self,
        bucket: &str,
        upload: &str,
        stage: &str,
        offset: u64,
    ) -> Result<Box<dyn AppendSink>>;

    /// Reads the `length` staged bytes of a finished resumable upload, in order (on S3 this
    /// completes the multipart upload they are parts of). Safe to call again.
    async fn read_staged(
        &self,
        bucket: &str,
        upload: &str,
        stage: &str,
        length: u64,
    ) -> Result<Object>;

    /// Removes every object whose key starts with `prefix`, and multipart uploads in progress
    /// under it; absent objects are not an error.
    async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<()>;

    /// Removes the bucket and everything in it; an absent bucket is not an error.
    async fn delete_bucket(&self, bucket: &str) -> Result<()>;

    async fn check(&self) -> Result<()>;

    /// A URL that downloads the object straight from the store from `signed_at` until `ttl`
    /// after it, answering with these `Content-Type` and `Content-Disposition`; `None` when the
    /// store cannot make one (the filesystem store), so the service serves downloads itself.
    async fn presign_get(
        &self,
        _bucket: &str,
        _key: &str,
        _signed_at: std::time::SystemTime,
        _ttl: Duration,
        _content_type: &str,
        _content_disposition: &str,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}

/// The key of the original upload of a media.
pub fn original_key(media: &crate::domain::MediaId) -> String {
    format!("{media}/original")
}

pub fn variant_key(media: &crate::domain::MediaId, variant: &str) -> String {
    format!("{media}/{variant}")
}

/// Where a resumable upload's bytes wait for the rest: removed with `delete_prefix`.
pub fn staging_prefix(upload: &str) -> String {
    format!("tus/{upload}/")
}

/// The key of a resumable upload's staged bytes: the append file, or the multipart upload.
pub fn staged_key(upload: &str) -> String {
    format!("{}data", staging_prefix(upload))
}

pub fn media_prefix(media: &crate::domain::MediaId) -> String {
    format!("{media}/")
}
