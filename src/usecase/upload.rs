//! Storing an upload: checks before a byte is stored, the body streamed into the chat's
//! bucket, then the media (and its job) recorded in one transaction.

use super::ingest::{ingest, IngestError, Room};
use crate::catalog::{ChatRecord, Inserted, NewMedia, QuotaScope};
use crate::domain::{sniff, ChatId, Kind, Media, MediaId, MediaMetadata, Status, UserId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{media_prefix, original_key};
use bytes::Bytes;
use futures_util::Stream;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Secret-chat TTLs longer than this are refused as a likely mistake.
const MAX_MEDIA_TTL: u64 = 366 * 24 * 3600;

/// An upload as asked for, before its body.
pub struct Upload {
    pub chat: ChatId,
    pub user: UserId,
    /// A hint only: the type is sniffed from the bytes.
    pub filename: Option<String>,
    /// Secret chats: erase the media and its variants after this many seconds.
    pub ttl_seconds: Option<u64>,
    pub idempotency_key: Option<String>,
    /// The SHA-256 the body must have (`Content-Digest`).
    pub digest: Option<[u8; 32]>,
    /// The body's length as announced, counted against the limit before a byte is read.
    pub declared_size: Option<u64>,
    /// Bytes of framing around the file (multipart) that the announced length may exceed the
    /// limit by.
    pub framing: u64,
    /// Bytes that other resumable uploads of the chat (`.0`) and of the uploader (`.1`) hold
    /// staged, counted against the storage quotas' room like the usage.
    pub staged: (u64, u64),
}

pub enum Begun {
    /// The chat already has a media under this idempotency key: nothing to receive.
    Existing(Media),
    /// Checked; the body may come.
    Receiving(Receiving),
}

/// What the upload's outcome is: a new media, or the earlier one with the same key.
pub enum Stored {
    New(Media),
    Existing(Media),
}

enum Checked {
    Existing(Box<Media>),
    Fits {
        ttl: Option<u64>,
        room: Option<Room>,
    },
}

/// A media's `ttl_seconds` (secret chats), if it is one that can be taken.
pub fn check_media_ttl(ttl: Option<u64>) -> Result<Option<u64>, ApiError> {
    match ttl {
        Some(0) => Err(ApiError::BadRequest(
            "ttl_seconds must be at least 1".into(),
        )),
        Some(t) if t > MAX_MEDIA_TTL => Err(ApiError::BadRequest(format!(
            "ttl_seconds must be at most {MAX_MEDIA_TTL}"
        ))),
        t => Ok(t),
    }
}

pub struct Receiving {
    upload: Upload,
    ttl: Option<u64>,
    /// The chat as it was when the upload began.
    chat: ChatRecord,
    /// Counts this upload against the in-flight caps until it is over (a resumed upload's
    /// request holds its own).
    _slot: Option<crate::limits::inflight::Slot>,
    /// What was left of the storage quotas then: the stream is cut past it.
    room: Option<Room>,
}

impl Upload {
    /// Everything that is refused before a byte is stored: the TTL, membership, a known
    /// idempotency key, an announced length over the limit or over what is left of the
    /// storage quotas. Records the chat's bucket.
    pub async fn begin(self, state: &AppState) -> Result<Begun, ApiError> {
        let (ttl, room) = match self.check(state).await? {
            Checked::Existing(media) => return Ok(Begun::Existing(*media)),
            Checked::Fits { ttl, room } => (ttl, room),
        };
        let slot = self.limits(state).await.inspect_err(|_| {
            state.metrics.upload("unknown", "rate_limited");
        })?;
        // Used only if the chat is new (or was erased): a fresh generation, its own bucket.
        let generation = ulid::Ulid::new().to_string().to_lowercase();
        let candidate = ChatRecord {
            bucket: state.store.bucket_for(&self.chat, &generation),
            generation,
        };
        let chat = state.catalog.ensure_chat(&self.chat, &candidate).await?;
        state.store.ensure_bucket(&chat.bucket).await?;
        Ok(Begun::Receiving(Receiving {
            upload: self,
            ttl,
            chat,
            _slot: Some(slot),
            room,
        }))
    }

    /// An upload whose bytes were staged first (a resumable upload), as it completes: checked
    /// again as a new one is (membership, quota), without charging its rate limits or
    /// in-flight caps again (its creation was charged), and only into `chat`, the chat
    /// generation it began in: a chat erased meanwhile makes it `410 gone`.
    pub async fn resume(self, state: &AppState, chat: ChatRecord) -> Result<Begun, ApiError> {
        let (ttl, room) = match self.check(state).await? {
            Checked::Existing(media) => return Ok(Begun::Existing(*media)),
            Checked::Fits { ttl, room } => (ttl, room),
        };
        Ok(Begun::Receiving(Receiving {
            upload: self,
            ttl,
            chat,
            _slot: None,
            room,
        }))
    }

    /// The TTL, membership, a known idempotency key, an announced length over the limit or
    /// over what is left of the storage quotas.
    async fn check(&self, state: &AppState) -> Result<Checked, ApiError> {
        let ttl = check_media_ttl(self.ttl_seconds)?;
        if !state.catalog.is_member(&self.chat, &self.user).await? {
            state.metrics.upload("unknown", "not_a_member");
            return Err(ApiError::NotAMember);
        }
        if let Some(key) = &self.idempotency_key {
            if let Some(media) = state
                .catalog
                .media_by_idempotency_key(&self.chat, key)
                .await?
            {
                same_upload(&media, &self.user, self.digest.map(hex::encode).as_deref())?;
                return Ok(Checked::Existing(Box::new(media)));
            }
        }
        let limit = state.config.max_upload_bytes;
        if self.declared_size.is_some_and(|n| n > limit + self.framing) {
            state.metrics.upload("unknown", "too_large");
            return Err(ApiError::TooLarge(limit));
        }
        let room = room(state, &self.chat, &self.user, self.staged).await?;
        if let Some(room) = room {
            // Nothing fits, or the announced length cannot (framing aside).
            let announced = self.declared_size.map(|n| n.saturating_sub(self.framing));
            if room.left == 0 || announced.is_some_and(|n| n > room.left) {
                state.metrics.quota_refused("unknown", room.scope);
                return Err(ApiError::QuotaExceeded(room.scope));
            }
        }
        Ok(Checked::Fits { ttl, room })
    }

    /// The in-flight caps, then the rates: per user, per chat and, when the length is
    /// announced, the chat's bytes (an unannounced body is charged once its size is known).
    async fn limits(&self, state: &AppState) -> Result<crate::limits::inflight::Slot, ApiError> {
        use crate::limits::Name;
        let slot = state.in_flight.enter(self.user.as_str())?;
        let limits = &state.limits;
        limits
            .check(Name::UploadsPerUser, self.user.as_str(), 1)
            .await?;
        limits
            .check(Name::UploadsPerChat, self.chat.as_str(), 1)
            .await?;
        if let Some(size) = self.declared_size {
            limits
                .check(Name::UploadBytesPerChat, self.chat.as_str(), size.max(1))
                .await?;
        }
        Ok(slot)
    }
}

impl Receiving {
    /// The chat generation and bucket the upload goes into.
    pub fn chat(&self) -> &ChatRecord {
        &self.chat
    }

    /// Streams `body` into the store as the media's original, then records the media and, for
    /// image/audio/video, its job. `part_name` is the filename the body itself carried (a
    /// multipart part's), used when the upload named none. On any error nothing stays stored.
    pub async fn receive<S>(
        self,
        state: &AppState,
        body: S,
        part_name: Option<String>,
    ) -> Result<Stored, ApiError>
    where
        S: Stream<Item = Result<Bytes, IngestError>>,
    {
        let Receiving {
            upload,
            ttl,
            chat,
            _slot,
            room,
        } = self;
        let bucket = chat.bucket;
        let limit = state.config.max_upload_bytes;
        let id = MediaId::generate();
        let mut sink = state.store.begin_put(&bucket, &original_key(&id)).await?;
        let policy = state.config.original_metadata;
        let ingested = ingest(body, sink.as_mut(), limit, room, policy)
            .await
            .map_err(|e| {
                match e {
                    IngestError::OverQuota(scope) => state.metrics.quota_refused("unknown", scope),
                    _ => state.metrics.upload("unknown", e.code()),
                }
                ApiError::from(e)
            })?;
        if ingested.uploaded_size == 0 {
            return Err(ApiError::EmptyFile);
        }
        if upload.declared_size.is_none() {
            // Not checked up front: the next upload to the chat pays for these bytes.
            state
                .limits
                .charge(
                    crate::limits::Name::UploadBytesPerChat,
                    upload.chat.as_str(),
                    ingested.uploaded_size,
                )
                .await;
        }
        if upload.digest.is_some_and(|d| d != ingested.uploaded_sha256) {
            state.metrics.upload("unknown", "digest_mismatch");
            return Err(ApiError::DigestMismatch);
        }
        sink.finish().await?;

        let sniffed = sniff(&ingested.head);
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("0 ns is valid");
        let media = Media {
            id,
            chat_id: upload.chat,
            uploader: upload.user,
            filename: clean_filename(upload.filename.or(part_name).as_deref()),
            kind: sniffed.kind,
            mime: sniffed.mime.to_owned(),
            size: ingested.size,
            sha256: hex::encode(ingested.sha256),
            uploaded_sha256: hex::encode(ingested.uploaded_sha256),
            created_at: now,
            expires_at: ttl.map(|t| now + Duration::from_secs(t)),
            status: match sniffed.kind {
                Kind::File => Status::Ready,
                _ => Status::Processing,
            },
            error: None,
            metadata: MediaMetadata::default(),
            placeholder: None,
            variants: BTreeMap::new(),
        };
        let inserted = state
            .catalog
            .insert_media(NewMedia {
                media: media.clone(),
                bucket: bucket.clone(),
                generation: chat.generation,
                idempotency_key: upload.idempotency_key,
                quota: state.config.quota,
            })
            .await;
        match inserted {
            Ok(Inserted::New) => {
                state.queue.notify();
                state.metrics.upload(media.kind.as_str(), "accepted");
                state.metrics.upload_bytes.inc_by(media.size);
                tracing::info!(media_id = %media.id, kind = media.kind.as_str(), size = media.size, "upload stored");
                Ok(Stored::New(media))
            }
            Ok(Inserted::Existing(first)) => {
                // A concurrent request with the same key won: keep one copy, if it is the same.
                let _ = state.store.delete_prefix(&bucket, &media_prefix(&id)).await;
                same_upload(&first, &media.uploader, Some(&media.uploaded_sha256))?;
                Ok(Stored::Existing(*first))
            }
            Ok(Inserted::ChatErased) => {
                // The erase won: nothing of this upload may stay, whatever became of the chat.
                state.metrics.upload("unknown", "chat_erased");
                state
                    .store
                    .delete_prefix(&bucket, &media_prefix(&id))
                    .await?;
                Err(ApiError::Gone)
            }
            Ok(Inserted::OverQuota(scope)) => {
                // Another upload took the room while this one streamed: nothing of it stays.
                state.metrics.quota_refused(media.kind.as_str(), scope);
                state
                    .store
                    .delete_prefix(&bucket, &media_prefix(&id))
                    .await?;
                Err(ApiError::QuotaExceeded(scope))
            }
            Err(e) => {
                let _ = state.store.delete_prefix(&bucket, &media_prefix(&id)).await;
                Err(e.into())
            }
        }
    }
}

/// What is left of the tightest storage quota for an upload into `chat` by `user`, and whose
/// it is; `None` when no quota is configured. The catalog checks again, atomically, when the
/// media is recorded.
/// `staged` counts as used: the bytes that resumable uploads of the chat (`.0`) and of the
/// user (`.1`) hold staged, not media yet.
pub(super) async fn room(
    state: &AppState,
    chat: &ChatId,
    user: &UserId,
    staged: (u64, u64),
) -> Result<Option<Room>, ApiError> {
    let quota = state.config.quota;
    let mut room: Option<Room> = None;
    if let Some(max) = quota.chat_bytes {
        let used = state.catalog.chat_usage(chat).await?.bytes + staged.0;
        room = Some(Room {
            left: max.saturating_sub(used),
            scope: QuotaScope::Chat,
        });
    }
    if let Some(max) = quota.user_bytes {
        let used = state.catalog.user_usage(user).await?.bytes + staged.1;
        let left = max.saturating_sub(used);
        if room.is_none_or(|r| left < r.left) {
            room = Some(Room {
                left,
                scope: QuotaScope::User,
            });
        }
    }
    Ok(room)
}

/// An idempotency key names one upload: the earlier media answers only a retry of it, by the
/// same uploader and, where the bytes are known (`uploaded_sha256`, the body as received), of
/// the same bytes.
fn same_upload(earlier: &Media, uploader: &UserId, sha256: Option<&str>) -> Result<(), ApiError> {
    if &earlier.uploader != uploader || sha256.is_some_and(|s| s != earlier.uploaded_sha256) {
        return Err(ApiError::IdempotencyConflict);
    }
    Ok(())
}

impl IngestError {
    /// The outcome label of `satchel_uploads_total`.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::TooLarge { .. } => "too_large",
            IngestError::OverQuota(_) => "quota_exceeded",
            IngestError::Body(_) => "client_gone",
            IngestError::Idle(_) => "upload_timeout",
            IngestError::TooSlow { .. } => "too_slow",
            IngestError::Storage(_) => "storage_error",
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::TooLarge { limit } => ApiError::TooLarge(limit),
            IngestError::OverQuota(scope) => ApiError::QuotaExceeded(scope),
            IngestError::Body(cause) => {
                ApiError::BadRequest(format!("the upload was cut short: {cause}"))
            }
            IngestError::Idle(after) => ApiError::UploadTimeout(after.as_secs()),
            IngestError::TooSlow {
                bytes_per_second,
                window,
            } => ApiError::UploadTooSlow {
                bytes_per_second,
                window: window.as_secs(),
            },
            IngestError::Storage(e) => e.into(),
        }
    }
}

/// Unicode format characters (general category Cf): bidi overrides and isolates that make
/// `exe.jpg` display as something else, zero-width characters, tags.
fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// The name a download will carry: no directories, no control or format characters (bidi
/// overrides), bounded length.
pub fn clean_filename(declared: Option<&str>) -> String {
    let base = declared
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .filter(|c| !c.is_control() && !is_format_char(*c))
        .collect();
    let mut end = name.len().min(255);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    match name.trim() {
        "" | "." | ".." => "file".into(),
        n => n.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_lose_directories_and_control_characters() {
        assert_eq!(clean_filename(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_filename(Some("C:\\x\\a\nb.jpg")), "ab.jpg");
        assert_eq!(clean_filename(Some("..")), "file");
        assert_eq!(clean_filename(None), "file");
        assert_eq!(
            clean_filename(Some("invoice\u{202E}fdp.exe\u{2066}\u{200B}")),
            "invoicefdp.exe"
        );
    }
}
