//! The catalog: chats, members, media records, variants, the job outbox and the event outbox.
//!
//! One trait with one implementation, [`SqlCatalog`], written once for both engines: SQLite
//! is the embedded default; PostgreSQL serves several processes with the same semantics.

mod engine;
mod rows;
mod sql;

pub use sql::SqlCatalog;

use crate::domain::{
    ChatId, EraseReason, Kind, Media, MediaError, MediaId, MediaMetadata, MediaPlaceholder, Sink,
    UserId, VariantInfo,
};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    #[error("catalog error: {0}")]
    Other(#[source] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, CatalogError>;

/// A media and the bucket its objects live in.
#[derive(Debug, Clone)]
pub struct StoredMedia {
    pub media: Media,
    pub bucket: String,
}

pub struct NewMedia {
    pub media: Media,
    pub bucket: String,
    /// The chat generation the upload began in: recorded only while it is still the chat's.
    pub generation: String,
    pub idempotency_key: Option<String>,
    /// The storage quotas the insert must keep (checked in its transaction).
    pub quota: Quota,
}

/// Storage quotas in bytes (originals and variants); `None`: no quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub chat_bytes: Option<u64>,
    pub user_bytes: Option<u64>,
}

/// Whose quota an upload would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaScope {
    Chat,
    User,
}

impl QuotaScope {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaScope::Chat => "chat",
            QuotaScope::User => "user",
        }
    }
}

/// What a chat or an uploader keeps in storage: bytes of originals and variants, and media.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Originals and variants, in bytes.
    pub bytes: u64,
    /// Media stored.
    pub media: u64,
}

pub enum Inserted {
    New,
    /// The chat already had a media under this idempotency key; nothing was written.
    Existing(Box<Media>),
    /// The chat was erased after the upload began (it may exist again, as a new
    /// generation); nothing was written.
    ChatErased,
    /// The media would take the chat or its uploader over the quota; nothing was written.
    OverQuota(QuotaScope),
}

/// A chat's recorded bucket and generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRecord {
    pub bucket: String,
    pub generation: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub media_id: MediaId,
    pub kind: Kind,
    /// 1 on the first run.
    pub attempt: u32,
}

pub enum JobResult {
    Ready {
        metadata: MediaMetadata,
        placeholder: Option<MediaPlaceholder>,
        variants: BTreeMap<String, VariantInfo>,
    },
    Failed(MediaError),
}

#[derive(Debug, Clone)]
pub struct Garbage {
    pub id: i64,
    pub bucket: String,
    /// `None`: the whole bucket.
    pub prefix: Option<String>,
    /// Failed deletions so far.
    pub attempts: u32,
}

/// An outbox row leased to one node for delivery to one sink.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub seq: i64,
    pub event_id: String,
    pub event: String,
    pub chat_id: String,
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Unix ms: when the change was written (for the delivery latency).
    pub created_at: i64,
    /// Unix ms: written or last re-queued (the age limit counts from here).
    pub queued_at: i64,
}

/// A delivery given up on (`GET /v1/events/dead`).
#[derive(Debug, Clone)]
pub struct DeadEvent {
    pub event: OutboxEvent,
    pub sink: Sink,
    pub media_id: Option<String>,
    pub last_error: Option<String>,
}

/// What a failed delivery does next.
#[derive(Debug, Clone, Copy)]
pub enum Redelivery {
    /// Due again after this long.
    After(Duration),
    /// Given up: kept as dead until re-queued.
    Dead,
}

/// Outbox rows by sink: pending (including leased) and dead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCounts {
    pub pending: Vec<(Sink, u64)>,
    pub dead: Vec<(Sink, u64)>,
}

/// A resumable upload (tus), as the catalog keeps it: the whole truth of it, so any node can
/// take its next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TusUpload {
    /// The ticket's nonce: one upload per ticket.
    pub id: String,
    pub chat: ChatId,
    pub user: UserId,
    /// The membership its ticket was issued under (`members.since`): leaving the chat ends
    /// the upload for good, as it ends links.
    pub membership: String,
    /// The chat generation and bucket it was created in: it can only become a media of that
    /// generation.
    pub chat_record: ChatRecord,
    pub length: u64,
    pub offset: u64,
    pub filename: Option<String>,
    /// The media's own `ttl_seconds` (secret chats).
    pub media_ttl_seconds: Option<u64>,
    /// The store's description of the bytes staged so far (opaque here).
    pub stage: String,
    pub state: TusState,
    pub media_id: Option<MediaId>,
    /// Unix ms until which a request holds the upload (0: none).
    pub lease_until: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: an open upload is removed after this (`Upload-Expires`).
    pub expires_at: i64,
    /// Unix seconds: the ticket's end; a finished upload answers `HEAD` until then.
    pub ticket_expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TusState {
    /// Taking bytes.
    Open,
    /// Became a media (`media_id`).
    Done,
    /// `DELETE`d, or refused when it completed (membership, quota): its ticket is spent.
    Terminated,
    /// Not finished in time; its bytes are removed.
    Expired,
    /// Its chat was erased.
    Erased,
}

impl TusState {
    pub fn as_str(self) -> &'static str {
        match self {
            TusState::Open => "open",
            TusState::Done => "done",
            TusState::Terminated => "terminated",
            TusState::Expired => "expired",
            TusState::Erased => "erased",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TusState::Open,
            TusState::Done,
            TusState::Terminated,
            TusState::Expired,
            TusState::Erased,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

#[async_trait]
pub trait Catalog: Send + Sync {
    fn name(&self) -> &'static str;
    async fn ping(&self) -> Result<()>;

    /// Records the chat with `new`'s bucket and generation unless it is recorded already;
    /// returns what is recorded.
    async fn ensure_chat(&self, chat: &ChatId, new: &ChatRecord) -> Result<ChatRecord>;

    async fn add_member(&self, chat: &ChatId, user: &UserId) -> Result<()>;
    async fn remove_member(&self, chat: &ChatId, user: &UserId) -> Result<()>;
    async fn set_members(&self, chat: &ChatId, users: &[UserId]) -> Result<()>;
    async fn members(&self, chat: &ChatId) -> Result<Vec<UserId>>;
    async fn is_member(&self, chat: &ChatId, user: &UserId) -> Result<bool> {
        Ok(self.membership(chat, user).await?.is_some())
    }
    /// The user's current membership of the chat (stable while they stay; a new one each time
    /// they are added again), or `None` if they are not a member.
    async fn membership(&self, chat: &ChatId, user: &UserId) -> Result<Option<String>>;

    async fn media_by_idempotency_key(&self, chat: &ChatId, key: &str) -> Result<Option<Media>>;
    /// Inserts the media and, while it is `processing`, its job, and adds its original to
    /// the chat's and the uploader's usage, in one transaction; refused (nothing written) if
    /// that would exceed `new.quota`.
    async fn insert_media(&self, new: NewMedia) -> Result<Inserted>;
    /// What the chat keeps in storage now (zeros for a chat with nothing).
    async fn chat_usage(&self, chat: &ChatId) -> Result<Usage>;
    /// What the user has uploaded that is still stored, over every chat.
    async fn user_usage(&self, user: &UserId) -> Result<Usage>;
    /// A media that exists and has not expired.
    async fn get_media(&self, id: &MediaId) -> Result<Option<StoredMedia>>;
    /// The live media `id` (as [`get_media`](Self::get_media)) and `user`'s membership of its
    /// chat (as [`membership`](Self::membership)), read at once: what issuing a link and every
    /// signed download check, in one round trip.
    async fn media_and_membership(
        &self,
        id: &MediaId,
        user: &UserId,
    ) -> Result<Option<(StoredMedia, Option<String>)>>;
    /// Removes the media's rows, gives its bytes back to the chat's and the uploader's usage,
    /// records its objects as garbage and writes its `media.erased` event, in one transaction.
    async fn delete_media(&self, id: &MediaId, reason: EraseReason) -> Result<Option<StoredMedia>>;
    /// Removes the chat, its members, media and usage (giving each uploader's bytes back),
    /// records its bucket as garbage, and writes a `media.erased` event per media and then
    /// `chat.erased`, in one transaction.
    async fn erase_chat(&self, chat: &ChatId) -> Result<()>;
    async fn expired_media(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<MediaId>>;
    /// Garbage rows that are due, the longest waiting first.
    async fn garbage(&self, limit: u32) -> Result<Vec<Garbage>>;
    async fn remove_garbage(&self, id: i64) -> Result<()>;
    /// The row's deletion failed again: counts the attempt, due again after `after`.
    async fn garbage_failed(&self, id: i64, after: Duration) -> Result<()>;

    /// Leases a runnable job of one of `kinds` for `lease` to `owner` (a process's lasting
    /// identity), fairly across chats: of the chats with the fewest jobs running, the oldest
    /// job; none of a chat that runs `per_chat` already.
    async fn claim_job(
        &self,
        kinds: &[Kind],
        lease: Duration,
        owner: &str,
        per_chat: Option<u32>,
    ) -> Result<Option<Job>>;
    /// Records the outcome, drops the job, adds the variants' bytes to the usage (a re-run
    /// counts only what changed) and writes the `media.ready` / `media.failed` event, in one
    /// transaction. `None` if the media is gone.
    async fn finish_job(&self, id: &MediaId, result: JobResult) -> Result<Option<Media>>;
    /// Puts a leased job back, runnable after `after`.
    async fn retry_job(&self, id: &MediaId, after: Duration) -> Result<()>;
    /// Marks a delivered job as running and counts the attempt; `None` if the job is gone
    /// (finished or erased), so a duplicate delivery is dropped. With a broker, the broker's
    /// delivery is the lease: a job is redelivered only when its consumer died.
    async fn begin_job(&self, id: &MediaId, lease: Duration) -> Result<Option<Job>>;

    /// Jobs written but not yet handed to the broker (the outbox) that may go now: of each
    /// chat and kind, only as many as keep its jobs in the broker or running at `per_chat`,
    /// the oldest first, the chats taking turns.
    async fn outbox(&self, limit: u32, per_chat: u32) -> Result<Vec<Job>>;

    /// The broker confirmed the job: the relay must not publish it again.
    async fn mark_published(&self, id: &MediaId) -> Result<()>;

    /// Makes the jobs leased to `owner` runnable again: for the start-up of an embedded
    /// process, whose previous run may have died holding them. Other owners' leases stay.
    async fn release_leases(&self, owner: &str) -> Result<u64>;
    async fn queue_depth(&self) -> Result<u64>;

    /// Changes each time a transaction that wrote events commits (in this process): the
    /// delivery loops wait on it, and poll for other nodes' events.
    fn events_written(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Leases up to `limit` due events for `sink` to `owner`: per order key only the oldest
    /// pending one, so one media's events go out in order and a dead one holds nothing back.
    /// Nodes claiming at once get different rows.
    async fn claim_events(
        &self,
        sink: Sink,
        limit: u32,
        lease: Duration,
        owner: &str,
    ) -> Result<Vec<OutboxEvent>>;
    /// The sink has these rows (a confirm, a 2xx): they are removed.
    async fn events_delivered(&self, seqs: &[i64]) -> Result<()>;
    /// A delivery failed: counts the attempt and keeps `error`, then retries or gives up.
    async fn event_failed(&self, seq: i64, error: &str, next: Redelivery) -> Result<()>;
    /// Dead deliveries, oldest first.
    async fn dead_events(&self, limit: u32) -> Result<Vec<DeadEvent>>;
    /// Makes every dead delivery pending again, due now, its age counted afresh.
    async fn retry_dead_events(&self) -> Result<u64>;
    async fn event_counts(&self) -> Result<EventCounts>;
    /// Makes the events leased to `owner` due again (its previous run died delivering them).
    async fn release_event_leases(&self, owner: &str) -> Result<u64>;

    /// Records a new resumable upload; `false` if its ticket has one already.
    async fn create_tus_upload(&self, upload: &TusUpload) -> Result<bool>;
    async fn tus_upload(&self, id: &str) -> Result<Option<TusUpload>>;
    /// Takes (or renews) the upload for a request: `token` holds it until `until` (unix ms)
    /// unless the upload is no longer open, or another token holds it past `now`. A
    /// conditional `UPDATE`, never a lock held over a body.
    async fn lease_tus_upload(&self, id: &str, token: &str, until: i64, now: i64) -> Result<bool>;
    /// Records the bytes a request appended from offset `from` to `offset` and, with
    /// `release`, lets the upload go: only while `token` holds it, it is open and still at
    /// `from`.
    async fn tus_appended(
        &self,
        id: &str,
        token: &str,
        from: u64,
        to: (u64, &str),
        release: bool,
    ) -> Result<bool>;
    /// Lets the upload go without a change.
    async fn release_tus_upload(&self, id: &str, token: &str) -> Result<()>;
    /// Ends an open upload held by `token` (`None`: held by no one) as `state`: `Done` with
    /// its media, or `Terminated` / `Expired`; its staged bytes become garbage in the same
    /// transaction.
    async fn end_tus_upload(
        &self,
        id: &str,
        token: Option<&str>,
        state: TusState,
        media: Option<&MediaId>,
    ) -> Result<bool>;
    /// Bytes staged by the open resumable uploads of `chat` and of `user` (each a sum of
    /// offsets), leaving out upload `except`.
    async fn tus_staged(&self, chat: &ChatId, user: &UserId, except: &str) -> Result<(u64, u64)>;
    /// Lets go of the uploads that requests of `node` held (tokens `<node>:...`): for the
    /// start-up of a node whose previous run died holding them.
    async fn release_tus_leases(&self, node: &str) -> Result<u64>;
    /// Open uploads past their `expires_at` that no request holds: the sweeper ends them.
    async fn expired_tus_uploads(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<String>>;
    /// Removes the rows of ended uploads whose ticket and upload lifetimes are both over.
    async fn forget_tus_uploads(&self, before: OffsetDateTime) -> Result<u64>;
}
