//! The embedded catalog: one SQLite file in the data directory, WAL mode.

use super::rows::*;
use super::*;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;

pub struct SqliteCatalog {
    pool: SqlitePool,
}

impl SqliteCatalog {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    async fn variants_of(&self, id: &str) -> Result<BTreeMap<String, VariantInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {VARIANT_COLUMNS} FROM variants WHERE media_id = ?"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        Ok(rows.iter().map(decode_variant).collect())
    }

    async fn load(&self, row: SqliteRow) -> Result<StoredMedia> {
        let id: String = row.get(0);
        let variants = self.variants_of(&id).await?;
        decode_media(&row, variants)
    }

    async fn fetch_media(&self, id: &str, only_live: bool) -> Result<Option<StoredMedia>> {
        let row = sqlx::query(&format!(
            "SELECT {MEDIA_COLUMNS} FROM media m JOIN chats c ON c.chat_id = m.chat_id \
             WHERE m.id = ? AND (? = 0 OR m.expires_at IS NULL OR m.expires_at > ?)"
        ))
        .bind(id)
        .bind(only_live)
        .bind(OffsetDateTime::now_utc().unix_timestamp())
        .fetch_optional(&self.pool)
        .await
        .map_err(other)?;
        match row {
            Some(row) => Ok(Some(self.load(row).await?)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl Catalog for SqliteCatalog {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| CatalogError::Unavailable(e.into()))?;
        Ok(())
    }

    async fn ensure_chat(&self, chat: &ChatId, bucket: &str) -> Result<String> {
        sqlx::query("INSERT INTO chats (chat_id, bucket, created_at) VALUES (?, ?, ?) ON CONFLICT (chat_id) DO NOTHING")
            .bind(chat.as_str())
            .bind(bucket)
            .bind(OffsetDateTime::now_utc().unix_timestamp())
            .execute(&self.pool)
            .await
            .map_err(other)?;
        sqlx::query_scalar("SELECT bucket FROM chats WHERE chat_id = ?")
            .bind(chat.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(other)
    }

    async fn add_member(&self, chat: &ChatId, user: &UserId) -> Result<()> {
        sqlx::query("INSERT INTO members (chat_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(chat.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn remove_member(&self, chat: &ChatId, user: &UserId) -> Result<()> {
        sqlx::query("DELETE FROM members WHERE chat_id = ? AND user_id = ?")
            .bind(chat.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn set_members(&self, chat: &ChatId, users: &[UserId]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        sqlx::query("DELETE FROM members WHERE chat_id = ?")
            .bind(chat.as_str())
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        for user in users {
            sqlx::query(
                "INSERT INTO members (chat_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(chat.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        }
        tx.commit().await.map_err(other)
    }

    async fn members(&self, chat: &ChatId) -> Result<Vec<UserId>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM members WHERE chat_id = ? ORDER BY user_id")
                .bind(chat.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(other)?;
        rows.iter()
            .map(|u| UserId::parse(u).map_err(|e| CatalogError::Other(e.into())))
            .collect()
    }

    async fn is_member(&self, chat: &ChatId, user: &UserId) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM members WHERE chat_id = ? AND user_id = ?")
                .bind(chat.as_str())
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(other)?;
        Ok(found.is_some())
    }

    async fn media_by_idempotency_key(&self, chat: &ChatId, key: &str) -> Result<Option<Media>> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM media WHERE chat_id = ? AND idempotency_key = ?")
                .bind(chat.as_str())
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(other)?;
        match id {
            Some(id) => Ok(self.fetch_media(&id, false).await?.map(|s| s.media)),
            None => Ok(None),
        }
    }

    async fn insert_media(&self, new: NewMedia) -> Result<Inserted> {
        let m = &new.media;
        let mut tx = self.pool.begin().await.map_err(other)?;
        let inserted = sqlx::query(
            "INSERT INTO media (id, chat_id, uploader, filename, kind, mime, size, sha256, \
             created_at, expires_at, status, idempotency_key) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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
        .execute(&mut *tx)
        .await
        .map_err(other)?
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
        if m.status == crate::domain::Status::Processing {
            sqlx::query(
                "INSERT INTO jobs (media_id, kind, state, available_at) VALUES (?, ?, 'queued', ?)",
            )
            .bind(m.id.to_string())
            .bind(m.kind.as_str())
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        }
        tx.commit().await.map_err(other)?;
        Ok(Inserted::New)
    }

    async fn get_media(&self, id: &MediaId) -> Result<Option<StoredMedia>> {
        self.fetch_media(&id.to_string(), true).await
    }

    async fn delete_media(&self, id: &MediaId) -> Result<Option<StoredMedia>> {
        let Some(stored) = self.fetch_media(&id.to_string(), false).await? else {
            return Ok(None);
        };
        let mut tx = self.pool.begin().await.map_err(other)?;
        let deleted = sqlx::query("DELETE FROM media WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(other)?
            .rows_affected();
        if deleted == 0 {
            return Ok(None);
        }
        sqlx::query("INSERT INTO garbage (bucket, prefix) VALUES (?, ?)")
            .bind(&stored.bucket)
            .bind(crate::storage::media_prefix(id))
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        tx.commit().await.map_err(other)?;
        Ok(Some(stored))
    }

    async fn erase_chat(&self, chat: &ChatId) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        for sql in [
            "DELETE FROM members WHERE chat_id = ?",
            "DELETE FROM media WHERE chat_id = ?",
        ] {
            sqlx::query(sql)
                .bind(chat.as_str())
                .execute(&mut *tx)
                .await
                .map_err(other)?;
        }
        let bucket: Option<String> =
            sqlx::query_scalar("DELETE FROM chats WHERE chat_id = ? RETURNING bucket")
                .bind(chat.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(other)?;
        if let Some(bucket) = bucket {
            sqlx::query("INSERT INTO garbage (bucket, prefix) VALUES (?, NULL)")
                .bind(bucket)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
        }
        tx.commit().await.map_err(other)
    }

    async fn expired_media(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<MediaId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM media WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
        )
        .bind(now.unix_timestamp())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        Ok(ids.iter().filter_map(|s| MediaId::parse(s)).collect())
    }

    async fn garbage(&self, limit: u32) -> Result<Vec<Garbage>> {
        let rows = sqlx::query("SELECT id, bucket, prefix FROM garbage ORDER BY id LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(other)?;
        Ok(rows
            .into_iter()
            .map(|r| Garbage {
                id: r.get(0),
                bucket: r.get(1),
                prefix: r.get(2),
            })
            .collect())
    }

    async fn remove_garbage(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM garbage WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn claim_job(&self, kinds: &[Kind], lease: Duration, owner: &str) -> Result<Option<Job>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let now = now_ms();
        let placeholders = vec!["?"; kinds.len()].join(", ");
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = ?, \
             lease_owner = ? \
             WHERE media_id = (SELECT media_id FROM jobs WHERE kind IN ({placeholders}) AND \
               ((state IN ('queued', 'published') AND available_at <= ?) OR (state = 'running' AND lease_until < ?)) \
               ORDER BY available_at, media_id LIMIT 1) \
             RETURNING media_id, kind, attempts"
        );
        let mut query = sqlx::query(&sql)
            .bind(now + lease.as_millis() as i64)
            .bind(owner);
        for kind in kinds {
            query = query.bind(kind.as_str());
        }
        let row = query
            .bind(now)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(other)?;
        let Some(row) = row else { return Ok(None) };
        decode_job(&row).map(Some)
    }

    async fn finish_job(&self, id: &MediaId, result: JobResult) -> Result<Option<Media>> {
        let key = id.to_string();
        let mut tx = self.pool.begin().await.map_err(other)?;
        sqlx::query("DELETE FROM jobs WHERE media_id = ?")
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        let updated = match &result {
            JobResult::Ready {
                metadata,
                placeholder,
                variants,
            } => {
                let n = sqlx::query(
                    "UPDATE media SET status = 'ready', error_code = NULL, error_message = NULL, \
                     width = ?, height = ?, duration_ms = ?, waveform = ?, blurhash = ?, thumbhash = ? \
                     WHERE id = ?",
                )
                .bind(metadata.width.map(i64::from))
                .bind(metadata.height.map(i64::from))
                .bind(metadata.duration_ms.map(|d| d as i64))
                .bind(waveform_json(metadata))
                .bind(placeholder.as_ref().map(|p| p.blurhash.clone()))
                .bind(placeholder.as_ref().map(|p| p.thumbhash.clone()))
                .bind(&key)
                .execute(&mut *tx)
                .await
                .map_err(other)?
                .rows_affected();
                for (name, v) in variants {
                    sqlx::query(
                        "INSERT INTO variants (media_id, name, mime, size, width, height, duration_ms) \
                         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (media_id, name) DO UPDATE SET \
                         mime = excluded.mime, size = excluded.size, width = excluded.width, \
                         height = excluded.height, duration_ms = excluded.duration_ms",
                    )
                    .bind(&key)
                    .bind(name)
                    .bind(&v.mime)
                    .bind(v.size as i64)
                    .bind(v.width.map(i64::from))
                    .bind(v.height.map(i64::from))
                    .bind(v.duration_ms.map(|d| d as i64))
                    .execute(&mut *tx)
                    .await
                    .map_err(other)?;
                }
                n
            }
            JobResult::Failed(e) => sqlx::query(
                "UPDATE media SET status = 'failed', error_code = ?, error_message = ? WHERE id = ?",
            )
            .bind(&e.code)
            .bind(&e.message)
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(other)?
            .rows_affected(),
        };
        if updated == 0 {
            return Ok(None);
        }
        tx.commit().await.map_err(other)?;
        Ok(self.fetch_media(&key, false).await?.map(|s| s.media))
    }

    async fn retry_job(&self, id: &MediaId, after: Duration) -> Result<()> {
        sqlx::query("UPDATE jobs SET state = 'queued', lease_until = NULL, available_at = ? WHERE media_id = ?")
            .bind(now_ms() + after.as_millis() as i64)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn begin_job(&self, id: &MediaId, lease: Duration) -> Result<Option<Job>> {
        let row = sqlx::query(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = ? \
             WHERE media_id = ? RETURNING media_id, kind, attempts",
        )
        .bind(now_ms() + lease.as_millis() as i64)
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(other)?;
        row.as_ref().map(decode_job).transpose()
    }

    async fn outbox(&self, limit: u32) -> Result<Vec<Job>> {
        let rows = sqlx::query(
            "SELECT media_id, kind, attempts FROM jobs WHERE state = 'queued' AND available_at <= ? \
             ORDER BY available_at, media_id LIMIT ?",
        )
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(decode_job).collect()
    }

    async fn mark_published(&self, id: &MediaId) -> Result<()> {
        sqlx::query("UPDATE jobs SET state = 'published' WHERE media_id = ? AND state = 'queued'")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn release_leases(&self, owner: &str) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE jobs SET state = 'queued', lease_until = NULL, lease_owner = NULL \
             WHERE state = 'running' AND lease_owner = ?",
        )
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(other)?
        .rows_affected())
    }

    async fn queue_depth(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&self.pool)
            .await
            .map_err(other)?;
        Ok(n as u64)
    }
}
