//! The embedded store: `DATA_DIR/objects/<bucket>/<key>`, one private directory per chat.
//! Writes go to `DATA_DIR/tmp` and are renamed into place, so a reader never sees half a file.

use super::{staged_key, AppendSink, BlobStore, Object, PutSink, Result, StorageError};
use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::path::{Path, PathBuf};
use tempfile::TempPath;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

pub struct FsStore {
    objects: PathBuf,
    tmp: PathBuf,
}

impl FsStore {
    /// Opens the store under `data_dir`, discarding temp files a crash may have left.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let objects = data_dir.join("objects");
        let tmp = data_dir.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        for dir in [&objects, &tmp] {
            std::fs::create_dir_all(dir)?;
            restrict(dir)?;
        }
        Ok(Self { objects, tmp })
    }

    fn bucket_dir(&self, bucket: &str) -> Result<PathBuf> {
        check_segment(bucket)?;
        Ok(self.objects.join(bucket))
    }

    fn path(&self, bucket: &str, key: &str) -> Result<PathBuf> {
        let mut path = self.bucket_dir(bucket)?;
        for segment in key.split('/') {
            check_segment(segment)?;
            path.push(segment);
        }
        Ok(path)
    }

    fn temp_file(&self) -> Result<(std::fs::File, TempPath)> {
        let file = tempfile::NamedTempFile::new_in(&self.tmp)?;
        let (file, path) = file.into_parts();
        Ok((file, path))
    }
}

/// Our keys are generated, never taken from a client; this is the belt to that braces.
fn check_segment(segment: &str) -> Result<()> {
    let ok = !segment.is_empty()
        && segment != "."
        && segment != ".."
        && !segment.contains(['/', '\\', '\0']);
    match ok {
        true => Ok(()),
        false => Err(StorageError::Other(anyhow::anyhow!(
            "refusing object path segment {segment:?}"
        ))),
    }
}

#[cfg(unix)]
fn restrict(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Renames a finished temp file into place. As on S3, the bucket must exist: a write into a
/// bucket erased meanwhile (a chat erased while its upload or job ran) fails with `NotFound`
/// instead of bringing the bucket back.
async fn commit(temp: TempPath, dest: PathBuf) -> Result<()> {
    prepare(&dest).await?;
    tokio::task::spawn_blocking(move || temp.persist(&dest).map_err(|e| e.error))
        .await
        .map_err(|e| StorageError::Other(e.into()))??;
    Ok(())
}

/// Makes the directory `dest` goes into, in a bucket that must exist.
async fn prepare(dest: &Path) -> Result<()> {
    if let Some(media_dir) = dest.parent() {
        if !media_dir.parent().is_some_and(Path::is_dir) {
            return Err(StorageError::NotFound);
        }
        match tokio::fs::create_dir(media_dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

struct FsSink {
    writer: BufWriter<tokio::fs::File>,
    temp: TempPath,
    dest: PathBuf,
}

#[async_trait]
impl PutSink for FsSink {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.writer.write_all(&chunk).await?;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        self.writer.flush().await?;
        self.writer.get_mut().sync_data().await?;
        let FsSink { temp, dest, .. } = *self;
        commit(temp, dest).await
    }
}

/// A resumable upload's append file, `<bucket>/tus/<upload>/data`: truncated to the
/// catalog's offset when opened, so bytes written past it by a request that did not commit
/// are gone.
struct FsAppend {
    writer: BufWriter<tokio::fs::File>,
}

#[async_trait]
impl AppendSink for FsAppend {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.writer.write_all(&chunk).await?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<String> {
        self.writer.flush().await?;
        self.writer.get_mut().sync_data().await?;
        Ok(String::new())
    }
}

impl FsStore {
    fn staged_path(&self, bucket: &str, upload: &str) -> Result<PathBuf> {
        self.path(bucket, &staged_key(upload))
    }
}

#[async_trait]
impl BlobStore for FsStore {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn bucket_for(&self, chat: &crate::domain::ChatId, generation: &str) -> String {
        let name = format!("chat-{}", super::base32_lower(chat.as_str().as_bytes()));
        match generation {
            "" => name,
            g => format!("{name}-{g}"),
        }
    }

    async fn ensure_bucket(&self, bucket: &str) -> Result<()> {
        let dir = self.bucket_dir(bucket)?;
        tokio::fs::create_dir_all(&dir).await?;
        restrict(&dir)?;
        Ok(())
    }

    async fn begin_put(&self, bucket: &str, key: &str) -> Result<Box<dyn PutSink>> {
        let dest = self.path(bucket, key)?;
        let (file, temp) = self.temp_file()?;
        Ok(Box::new(FsSink {
            writer: BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file)),
            temp,
            dest,
        }))
    }

    /// Moves the file into place (a job's output: no process of the job that wrote it is
    /// left to hold it, `jobs/sandbox.rs`), readable by this user alone; copies it when it
    /// is on another filesystem. Fewer files made and deleted per job: on ext4 without a
    /// journal, every file made scans past the inodes deleted in the last minutes.
    async fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<()> {
        let dest = self.path(bucket, key)?;
        prepare(&dest).await?;
        let moved = {
            let (path, dest) = (path.to_path_buf(), dest.clone());
            tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                // Atomic: a reader sees the old object or the whole new one.
                std::fs::rename(&path, &dest)
            })
            .await
            .map_err(|e| StorageError::Other(e.into()))?
        };
        match moved {
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let (_, temp) = self.temp_file()?;
                tokio::fs::copy(path, &temp).await?;
                commit(temp, dest).await
            }
            // The bucket erased since `prepare`: the media directory is gone.
            moved => Ok(moved?),
        }
    }

    async fn get(&self, bucket: &str, key: &str, range: Option<Range<u64>>) -> Result<Object> {
        let mut file = tokio::fs::File::open(self.path(bucket, key)?).await?;
        let total_size = file.metadata().await?.len();
        let body: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> = match range {
            None => Box::pin(file),
            Some(r) => {
                file.seek(std::io::SeekFrom::Start(r.start)).await?;
                Box::pin(file.take(r.end - r.start))
            }
        };
        Ok(Object { total_size, body })
    }

    async fn size(&self, bucket: &str, key: &str) -> Result<u64> {
        Ok(tokio::fs::metadata(self.path(bucket, key)?).await?.len())
    }

    /// A hard link, not a copy, where the two are on one filesystem: the job's child may
    /// only read its input (`jobs/sandbox.rs`), and no file is made and deleted for it.
    async fn fetch_to(&self, bucket: &str, key: &str, dest: &Path) -> Result<u64> {
        let source = self.path(bucket, key)?;
        match tokio::fs::hard_link(&source, dest).await {
            Ok(()) => Ok(tokio::fs::metadata(dest).await?.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound),
            Err(_) => Ok(tokio::fs::copy(source, dest).await?),
        }
    }

    async fn begin_append(
        &self,
        bucket: &str,
        upload: &str,
        _stage: &str,
        offset: u64,
    ) -> Result<Box<dyn AppendSink>> {
        let path = self.staged_path(bucket, upload)?;
        let dir = path.parent().expect("a key has a directory");
        // As for every write, the bucket must exist: a chat erased meanwhile stays erased.
        if !self.bucket_dir(bucket)?.is_dir() {
            return Err(StorageError::NotFound);
        }
        tokio::fs::create_dir_all(dir).await?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .await?;
        if file.metadata().await?.len() < offset {
            return Err(StorageError::Other(anyhow::anyhow!(
                "{} is shorter than the upload's offset {offset}",
                path.display()
            )));
        }
        file.set_len(offset).await?;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        Ok(Box::new(FsAppend {
            writer: BufWriter::with_capacity(256 * 1024, file),
        }))
    }

    async fn read_staged(
        &self,
        bucket: &str,
        upload: &str,
        _stage: &str,
        length: u64,
    ) -> Result<Object> {
        let file = tokio::fs::File::open(self.staged_path(bucket, upload)?).await?;
        if file.metadata().await?.len() < length {
            return Err(StorageError::Other(anyhow::anyhow!(
                "the staged upload {upload} is shorter than {length} bytes"
            )));
        }
        Ok(Object {
            total_size: length,
            body: Box::pin(file.take(length)),
        })
    }

    async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<()> {
        // Keys are `<media>/<name>`, so a prefix names one media's directory.
        let dir = self.path(bucket, prefix.trim_end_matches('/'))?;
        match tokio::fs::remove_dir_all(&dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        match tokio::fs::remove_dir_all(self.bucket_dir(bucket)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Both directories are there and writable; nothing is written (`/readyz` calls this).
    async fn check(&self) -> Result<()> {
        for dir in [&self.objects, &self.tmp] {
            let usable =
                std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) && nix_access_writable(dir);
            if !usable {
                return Err(StorageError::Unavailable(anyhow::anyhow!(
                    "{} is not a writable directory",
                    dir.display()
                )));
            }
        }
        Ok(())
    }
}

/// `access(2)` with `W_OK`: whether this process may create files in `dir`.
fn nix_access_writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
}
