//! The catalog, written once for SQLite and PostgreSQL.
//!
//! sqlx's `Any` driver runs the same statements on both: `$N` placeholders (SQLite reads
//! `$N` as the N-th argument), `ON CONFLICT`, `RETURNING`, integer times and JSON text. The
//! engines' real differences (pool set-up, migrations, the job claim's row lock, the member
//! lock) are in [`super::engine`].

use super::engine::{classify as db, Engine};
use super::rows::*;
use super::*;
use crate::domain::NewEvent;
use read::{chat_media_on, media_on};
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::watch;

mod events;
mod jobs;
mod read;
mod tus;
mod usage;

pub struct SqlCatalog {
    pool: AnyPool,
    engine: Engine,
    /// Where every event goes: each gets one outbox row per sink.
    sinks: Vec<Sink>,
    /// Bumped after each commit that wrote events.
    written: watch::Sender<u64>,
}

fn new_membership() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// Rows per multi-row INSERT: far below either engine's limit on bound parameters.
const INSERT_CHUNK: usize = 200;

impl SqlCatalog {
    /// Opens the catalog named by `url` (`sqlite:...` or `postgres://...`) and migrates it;
    /// `max_connections` sizes a PostgreSQL pool (SQLite's is fixed). Every event is written
    /// for each of `sinks` (none: no events are kept).
    pub async fn open(url: &str, max_connections: u32, sinks: Vec<Sink>) -> anyhow::Result<Self> {
        let engine = Engine::of(url)?;
        let pool = engine.open(url, max_connections).await?;
        Ok(Self {
            pool,
            engine,
            sinks,
            written: watch::Sender::new(0),
        })
    }

    async fn fetch_media(&self, id: &str, only_live: bool) -> Result<Option<StoredMedia>> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        media_on(&mut conn, id, only_live).await
    }

    /// Writes `events` inside `tx` for every sink of this deployment.
    async fn write_events(&self, conn: &mut AnyConnection, events: &[NewEvent]) -> Result<()> {
        if self.sinks.is_empty() || events.is_empty() {
            return Ok(());
        }
        events::write(conn, &self.sinks, events).await
    }

    /// After a commit that wrote events: wakes this process's delivery loops.
    fn announce_events(&self) {
        if !self.sinks.is_empty() {
            self.written.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

#[async_trait]
impl Catalog for SqlCatalog {
    fn name(&self) -> &'static str {
        self.engine.name()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| CatalogError::Unavailable(e.into()))?;
        Ok(())
    }

    async fn ensure_chat(&self, chat: &ChatId, new: &ChatRecord) -> Result<ChatRecord> {
        // No conflict target: two first uploads to a chat race on both unique columns, and
        // either conflict means the other one already recorded the chat.
        sqlx::query(
            "INSERT INTO chats (chat_id, bucket, created_at, generation) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(chat.as_str())
        .bind(&new.bucket)
        .bind(OffsetDateTime::now_utc().unix_timestamp())
        .bind(&new.generation)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        let row = sqlx::query("SELECT bucket, generation FROM chats WHERE chat_id = $1")
            .bind(chat.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(ChatRecord {
            bucket: row.get(0),
            generation: row.get(1),
        })
    }

    async fn add_member(&self, chat: &ChatId, user: &UserId) -> Result<()> {
        sqlx::query(
            "INSERT INTO members (chat_id, user_id, since) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(chat.as_str())
        .bind(user.as_str())
        .bind(new_membership())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn remove_member(&self, chat: &ChatId, user: &UserId) -> Result<()> {
        sqlx::query("DELETE FROM members WHERE chat_id = $1 AND user_id = $2")
            .bind(chat.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn set_members(&self, chat: &ChatId, users: &[UserId]) -> Result<()> {
        let users: std::collections::BTreeSet<&str> = users.iter().map(UserId::as_str).collect();
        let users: Vec<&str> = users.into_iter().collect();
        let mut tx = self.pool.begin().await.map_err(db)?;
        if let Some(lock) = self.engine.members_lock() {
            sqlx::query(lock)
                .bind(chat.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        // Members who stay keep their membership (and their links). A write first: on
        // SQLite, a read before it would have to upgrade its lock, which racing replaces fail.
        let kept: std::collections::HashMap<String, String> =
            sqlx::query("DELETE FROM members WHERE chat_id = $1 RETURNING user_id, since")
                .bind(chat.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
        for chunk in users.chunks(INSERT_CHUNK) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3))
                .collect();
            let sql = format!(
                "INSERT INTO members (chat_id, user_id, since) VALUES {} ON CONFLICT DO NOTHING",
                rows.join(", ")
            );
            let mut insert = sqlx::query(&sql).bind(chat.as_str());
            for user in chunk {
                let since = kept.get(*user).cloned().unwrap_or_else(new_membership);
                insert = insert.bind(*user).bind(since);
            }
            insert.execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn members(&self, chat: &ChatId) -> Result<Vec<UserId>> {
        let mut rows: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM members WHERE chat_id = $1")
                .bind(chat.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        // Byte order, whatever the database's collation.
        rows.sort_unstable();
        rows.iter()
            .map(|u| UserId::parse(u).map_err(|e| CatalogError::Other(e.into())))
            .collect()
    }

    async fn membership(&self, chat: &ChatId, user: &UserId) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT since FROM members WHERE chat_id = $1 AND user_id = $2")
            .bind(chat.as_str())
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn media_by_idempotency_key(&self, chat: &ChatId, key: &str) -> Result<Option<Media>> {
        let id: Option<String> = sqlx::query_scalar::<_, String>(
            "SELECT id FROM media WHERE chat_id = $1 AND idempotency_key = $2",
        )
        .bind(chat.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match id {
            Some(id) => Ok(self.fetch_media(&id, false).await?.map(|s| s.media)),
            None => Ok(None),
        }
    }

    async fn insert_media(&self, new: NewMedia) -> Result<Inserted> {
        let m = &new.media;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // A concurrent insert with the same key makes this one wait for it to commit, then do
        // nothing; so the winner's row is committed and visible when we fetch it below.
        let inserted = sqlx::query(
            "INSERT INTO media (id, chat_id, uploader, filename, kind, mime, size, sha256, \
             created_at, expires_at, status, idempotency_key, stored_bytes, uploaded_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $7, $13) \
             ON CONFLICT (chat_id, idempotency_key) DO NOTHING",
        )
        .bind(m.id.to_string())
        .bind(m.chat_id.as_str())
        .bind(m.uploader.as_str())
        .bind(&m.filename)
        .bind(m.kind.as_str())
        .bind(&m.mime)
        .bind(m.size as i64)
        .bind(&m.sha256)
        .bind(m.created_at.unix_timestamp())
        .bind(m.expires_at.map(|t| t.unix_timestamp()))
        .bind(m.status.as_str())
        .bind(&new.idempotency_key)
        .bind(&m.uploaded_sha256)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if inserted == 0 {
            drop(tx);
            let key = new.idempotency_key.as_deref().unwrap_or_default();
            return match self.media_by_idempotency_key(&m.chat_id, key).await? {
                Some(existing) => Ok(Inserted::Existing(Box::new(existing))),
                None => Err(CatalogError::Other(anyhow::anyhow!(
                    "insert ignored without a conflict"
                ))),
            };
        }
        // After the insert, which takes SQLite's write lock first (a read before it would
        // have to upgrade, and racing upgrades fail at once with SQLITE_BUSY).
        let chat_live: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT 1 FROM chats WHERE chat_id = $1 AND generation = $2{}",
            self.engine.row_lock()
        ))
        .bind(m.chat_id.as_str())
        .bind(&new.generation)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if chat_live.is_none() {
            // Dropping the transaction rolls the insert back.
            return Ok(Inserted::ChatErased);
        }
        // After the chat row, which an erase takes first: the usage rows are always taken in
        // the order chat, then user.
        if let Some(scope) = usage::add_original(&mut tx, m, new.quota).await? {
            // Dropping the transaction rolls the insert back.
            return Ok(Inserted::OverQuota(scope));
        }
        if m.status == crate::domain::Status::Processing {
            sqlx::query(
                "INSERT INTO jobs (media_id, chat_id, kind, state, available_at) \
                 VALUES ($1, $2, $3, 'queued', $4)",
            )
            .bind(m.id.to_string())
            .bind(m.chat_id.as_str())
            .bind(m.kind.as_str())
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        // A media that needs no processing is ready at once, and says so like any other.
        let event = NewEvent::status(m);
        self.write_events(&mut tx, event.as_slice()).await?;
        tx.commit().await.map_err(db)?;
        if event.is_some() {
            self.announce_events();
        }
        Ok(Inserted::New)
    }

    async fn chat_usage(&self, chat: &ChatId) -> Result<Usage> {
        usage::of(&self.pool, "chat_usage", "chat_id", chat.as_str()).await
    }

    async fn user_usage(&self, user: &UserId) -> Result<Usage> {
        usage::of(&self.pool, "user_usage", "user_id", user.as_str()).await
    }

    async fn get_media(&self, id: &MediaId) -> Result<Option<StoredMedia>> {
        self.fetch_media(&id.to_string(), true).await
    }

    async fn media_and_membership(
        &self,
        id: &MediaId,
        user: &UserId,
    ) -> Result<Option<(StoredMedia, Option<String>)>> {
        read::media_and_membership(&self.pool, &id.to_string(), user.as_str()).await
    }

    async fn delete_media(&self, id: &MediaId, reason: EraseReason) -> Result<Option<StoredMedia>> {
        let key = id.to_string();
        let mut tx = self.pool.begin().await.map_err(db)?;
        // A write first, to hold the row (and SQLite's write lock) while we read it: a job
        // finishing at the same moment either commits before (and the event below shows its
        // outcome) or finds the media gone.
        let held = sqlx::query("UPDATE media SET id = id WHERE id = $1")
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if held == 0 {
            return Ok(None);
        }
        let Some(stored) = media_on(&mut tx, &key, false).await? else {
            return Ok(None);
        };
        let bytes: i64 =
            sqlx::query_scalar("DELETE FROM media WHERE id = $1 RETURNING stored_bytes")
                .bind(&key)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        usage::add(
            &mut tx,
            &stored.media.chat_id,
            &stored.media.uploader,
            -bytes,
            -1,
        )
        .await?;
        sqlx::query("INSERT INTO garbage (bucket, prefix) VALUES ($1, $2)")
            .bind(&stored.bucket)
            .bind(crate::storage::media_prefix(id))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        self.write_events(&mut tx, &[NewEvent::erased(&stored.media, reason)])
            .await?;
        tx.commit().await.map_err(db)?;
        self.announce_events();
        Ok(Some(stored))
    }

    async fn erase_chat(&self, chat: &ChatId) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The chat row first: an upload's insert holding it (see `insert_media`) has
        // committed by the time this goes on, so its media is erased below.
        let bucket: Option<String> =
            sqlx::query_scalar("DELETE FROM chats WHERE chat_id = $1 RETURNING bucket")
                .bind(chat.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let mut events = Vec::new();
        if !self.sinks.is_empty() {
            for media in chat_media_on(&mut tx, chat).await? {
                events.push(NewEvent::erased(&media, EraseReason::ChatErased));
            }
            events.push(NewEvent::chat_erased(chat, OffsetDateTime::now_utc()));
        }
        sqlx::query("DELETE FROM members WHERE chat_id = $1")
            .bind(chat.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tus::erase_chat(&mut tx, chat).await?;
        // Each media as it is when deleted (a job finishing meanwhile has committed its
        // variants' bytes by then): what goes back to each uploader.
        let erased =
            sqlx::query("DELETE FROM media WHERE chat_id = $1 RETURNING uploader, stored_bytes")
                .bind(chat.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
        let mut by_uploader: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for row in &erased {
            let total = by_uploader.entry(row.get(0)).or_default();
            total.0 += row.get::<i64, _>(1);
            total.1 += 1;
        }
        let by_uploader: Vec<(String, i64, i64)> = by_uploader
            .into_iter()
            .map(|(user, (bytes, media))| (user, bytes, media))
            .collect();
        // A chat used again starts from zero.
        sqlx::query("DELETE FROM chat_usage WHERE chat_id = $1")
            .bind(chat.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        usage::give_back_users(&mut tx, &by_uploader).await?;
        if let Some(bucket) = bucket {
            sqlx::query("INSERT INTO garbage (bucket, prefix) VALUES ($1, NULL)")
                .bind(bucket)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        self.write_events(&mut tx, &events).await?;
        tx.commit().await.map_err(db)?;
        self.announce_events();
        Ok(())
    }

    async fn expired_media(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<MediaId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM media WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2",
        )
        .bind(now.unix_timestamp())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(ids.iter().filter_map(|s| MediaId::parse(s)).collect())
    }

    async fn garbage(&self, limit: u32) -> Result<Vec<Garbage>> {
        let rows = sqlx::query(
            "SELECT id, bucket, prefix, attempts FROM garbage WHERE next_at <= $1 \
             ORDER BY next_at, id LIMIT $2",
        )
        .bind(now_ms())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| Garbage {
                id: r.get(0),
                bucket: r.get(1),
                prefix: r.get(2),
                attempts: r.get::<i64, _>(3) as u32,
            })
            .collect())
    }

    async fn garbage_failed(&self, id: i64, after: Duration) -> Result<()> {
        sqlx::query("UPDATE garbage SET attempts = attempts + 1, next_at = $1 WHERE id = $2")
            .bind(now_ms() + after.as_millis() as i64)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn remove_garbage(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM garbage WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn claim_job(
        &self,
        kinds: &[Kind],
        lease: Duration,
        owner: &str,
        per_chat: Option<u32>,
    ) -> Result<Option<Job>> {
        jobs::claim_job(self, kinds, lease, owner, per_chat).await
    }

    async fn finish_job(&self, id: &MediaId, result: JobResult) -> Result<Option<Media>> {
        jobs::finish_job(self, id, result).await
    }

    async fn retry_job(&self, id: &MediaId, after: Duration) -> Result<()> {
        jobs::retry_job(self, id, after).await
    }

    async fn begin_job(&self, id: &MediaId, lease: Duration) -> Result<Option<Job>> {
        jobs::begin_job(self, id, lease).await
    }

    async fn outbox(&self, limit: u32, per_chat: u32) -> Result<Vec<Job>> {
        jobs::outbox(self, limit, per_chat).await
    }

    async fn mark_published(&self, id: &MediaId) -> Result<()> {
        jobs::mark_published(self, id).await
    }

    async fn release_leases(&self, owner: &str) -> Result<u64> {
        jobs::release_leases(self, owner).await
    }

    async fn queue_depth(&self) -> Result<u64> {
        jobs::queue_depth(self).await
    }

    fn events_written(&self) -> watch::Receiver<u64> {
        self.written.subscribe()
    }

    async fn claim_events(
        &self,
        sink: Sink,
        limit: u32,
        lease: Duration,
        owner: &str,
    ) -> Result<Vec<OutboxEvent>> {
        events::claim(self, sink, limit, lease, owner).await
    }

    async fn events_delivered(&self, seqs: &[i64]) -> Result<()> {
        events::delivered(self, seqs).await
    }

    async fn event_failed(&self, seq: i64, error: &str, next: Redelivery) -> Result<()> {
        events::failed(self, seq, error, next).await
    }

    async fn dead_events(&self, limit: u32) -> Result<Vec<DeadEvent>> {
        events::dead(self, limit).await
    }

    async fn retry_dead_events(&self) -> Result<u64> {
        let n = events::retry_dead(self).await?;
        self.announce_events();
        Ok(n)
    }

    async fn event_counts(&self) -> Result<EventCounts> {
        events::counts(self).await
    }

    async fn release_event_leases(&self, owner: &str) -> Result<u64> {
        events::release_leases(self, owner).await
    }

    async fn create_tus_upload(&self, upload: &TusUpload) -> Result<bool> {
        tus::create(&self.pool, upload).await
    }

    async fn tus_upload(&self, id: &str) -> Result<Option<TusUpload>> {
        tus::get(&self.pool, id).await
    }

    async fn lease_tus_upload(&self, id: &str, token: &str, until: i64, now: i64) -> Result<bool> {
        tus::lease(&self.pool, id, token, until, now).await
    }

    async fn tus_appended(
        &self,
        id: &str,
        token: &str,
        from: u64,
        to: (u64, &str),
        release: bool,
    ) -> Result<bool> {
        tus::appended(&self.pool, id, token, from, to, release).await
    }

    async fn release_tus_upload(&self, id: &str, token: &str) -> Result<()> {
        tus::release(&self.pool, id, token).await
    }

    async fn end_tus_upload(
        &self,
        id: &str,
        token: Option<&str>,
        state: TusState,
        media: Option<&MediaId>,
    ) -> Result<bool> {
        tus::end(&self.pool, id, token, state, media).await
    }

    async fn tus_staged(&self, chat: &ChatId, user: &UserId, except: &str) -> Result<(u64, u64)> {
        tus::staged(&self.pool, chat, user, except).await
    }

    async fn release_tus_leases(&self, node: &str) -> Result<u64> {
        tus::release_node(&self.pool, node).await
    }

    async fn expired_tus_uploads(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<String>> {
        tus::expired(&self.pool, now, limit).await
    }

    async fn forget_tus_uploads(&self, before: OffsetDateTime) -> Result<u64> {
        tus::forget(&self.pool, before).await
    }
}
