//! Resumable uploads' rows (`tus_uploads`). Requests take an upload with a lease, set and
//! cleared by conditional `UPDATE`s: no transaction or row lock is ever held while a body
//! streams, and a node that dies holding one lets go when `lease_until` passes.

use super::super::engine::classify as db;
use super::super::rows::{now_ms, unix_ms};
use super::super::*;
use crate::storage::staging_prefix;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

const COLUMNS: &str = "id, chat_id, user_id, bucket, generation, length, upload_offset, \
    filename, media_ttl_seconds, stage, state, media_id, lease_until, created_at, expires_at, \
    ticket_expires_at, membership";

fn decode(row: &AnyRow) -> Result<TusUpload> {
    let corrupt = |what: &str| CatalogError::Other(anyhow::anyhow!("tus_uploads: bad {what}"));
    let state: String = row.get(10);
    let media_id: Option<String> = row.get(11);
    Ok(TusUpload {
        id: row.get(0),
        chat: ChatId::parse(&row.get::<String, _>(1)).map_err(|_| corrupt("chat_id"))?,
        user: UserId::parse(&row.get::<String, _>(2)).map_err(|_| corrupt("user_id"))?,
        chat_record: ChatRecord {
            bucket: row.get(3),
            generation: row.get(4),
        },
        length: row.get::<i64, _>(5) as u64,
        offset: row.get::<i64, _>(6) as u64,
        filename: row.get(7),
        media_ttl_seconds: row.get::<Option<i64>, _>(8).map(|t| t as u64),
        stage: row.get(9),
        state: TusState::parse(&state).ok_or_else(|| corrupt("state"))?,
        media_id: match media_id {
            None => None,
            Some(id) => Some(MediaId::parse(&id).ok_or_else(|| corrupt("media_id"))?),
        },
        lease_until: row.get(12),
        created_at: row.get(13),
        expires_at: row.get(14),
        ticket_expires_at: row.get(15),
        membership: row.get(16),
    })
}

pub(super) async fn create(pool: &AnyPool, u: &TusUpload) -> Result<bool> {
    let done = sqlx::query(&format!(
        "INSERT INTO tus_uploads ({COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT DO NOTHING"
    ))
    .bind(&u.id)
    .bind(u.chat.as_str())
    .bind(u.user.as_str())
    .bind(&u.chat_record.bucket)
    .bind(&u.chat_record.generation)
    .bind(u.length as i64)
    .bind(u.offset as i64)
    .bind(u.filename.as_deref())
    .bind(u.media_ttl_seconds.map(|t| t as i64))
    .bind(&u.stage)
    .bind(u.state.as_str())
    .bind(u.media_id.as_ref().map(|m| m.to_string()))
    .bind(u.lease_until)
    .bind(u.created_at)
    .bind(u.expires_at)
    .bind(u.ticket_expires_at)
    .bind(&u.membership)
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn get(pool: &AnyPool, id: &str) -> Result<Option<TusUpload>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tus_uploads WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    row.as_ref().map(decode).transpose()
}

pub(super) async fn lease(
    pool: &AnyPool,
    id: &str,
    token: &str,
    until: i64,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE tus_uploads SET lease_token = $2, lease_until = $3 \
         WHERE id = $1 AND state = 'open' AND (lease_until <= $4 OR lease_token = $2)",
    )
    .bind(id)
    .bind(token)
    .bind(until)
    .bind(now)
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn appended(
    pool: &AnyPool,
    id: &str,
    token: &str,
    from: u64,
    (offset, stage): (u64, &str),
    release: bool,
) -> Result<bool> {
    let released = match release {
        true => ", lease_token = NULL, lease_until = 0",
        false => "",
    };
    // The offset it began at as well as the lease: a request that read the upload before
    // another one appended can never write its older view back.
    let sql = format!(
        "UPDATE tus_uploads SET upload_offset = $3, stage = $4{released} \
         WHERE id = $1 AND lease_token = $2 AND state = 'open' AND upload_offset = $5"
    );
    let done = sqlx::query(&sql)
        .bind(id)
        .bind(token)
        .bind(offset as i64)
        .bind(stage)
        .bind(from as i64)
        .execute(pool)
        .await
        .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn release(pool: &AnyPool, id: &str, token: &str) -> Result<()> {
    sqlx::query(
        "UPDATE tus_uploads SET lease_token = NULL, lease_until = 0 \
         WHERE id = $1 AND lease_token = $2",
    )
    .bind(id)
    .bind(token)
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(())
}

pub(super) async fn staged(
    pool: &AnyPool,
    chat: &ChatId,
    user: &UserId,
    except: &str,
) -> Result<(u64, u64)> {
    let mut sums = [0u64; 2];
    for (sum, (column, id)) in sums
        .iter_mut()
        .zip([("chat_id", chat.as_str()), ("user_id", user.as_str())])
    {
        let staged: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT CAST(SUM(upload_offset) AS BIGINT) FROM tus_uploads \
             WHERE {column} = $1 AND state = 'open' AND id <> $2"
        ))
        .bind(id)
        .bind(except)
        .fetch_one(pool)
        .await
        .map_err(db)?;
        *sum = staged.unwrap_or(0).max(0) as u64;
    }
    Ok((sums[0], sums[1]))
}

pub(super) async fn release_node(pool: &AnyPool, node: &str) -> Result<u64> {
    let escaped = node
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let done = sqlx::query(
        "UPDATE tus_uploads SET lease_token = NULL, lease_until = 0 \
         WHERE lease_token LIKE $1 ESCAPE '\\'",
    )
    .bind(format!("{escaped}:%"))
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(done.rows_affected())
}

pub(super) async fn end(
    pool: &AnyPool,
    id: &str,
    token: Option<&str>,
    state: TusState,
    media: Option<&MediaId>,
) -> Result<bool> {
    let mut tx = pool.begin().await.map_err(db)?;
    // Held by `token` (then `lease_until` is never that low), or by no one now (then the
    // empty token matches nothing: tokens are never empty).
    let (token, free_before) = match token {
        Some(token) => (token, i64::MIN),
        None => ("", now_ms()),
    };
    let bucket: Option<String> = sqlx::query_scalar(
        "UPDATE tus_uploads SET state = $2, media_id = $3, stage = '', lease_token = NULL, \
         lease_until = 0 WHERE id = $1 AND state = 'open' \
         AND (lease_token = $4 OR lease_until <= $5) RETURNING bucket",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(media.map(|m| m.to_string()))
    .bind(token)
    .bind(free_before)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    let Some(bucket) = bucket else {
        return Ok(false);
    };
    sqlx::query("INSERT INTO garbage (bucket, prefix) VALUES ($1, $2)")
        .bind(bucket)
        .bind(staging_prefix(id))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}

pub(super) async fn expired(
    pool: &AnyPool,
    now: OffsetDateTime,
    limit: u32,
) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT id FROM tus_uploads WHERE state = 'open' AND expires_at <= $1 \
         AND lease_until <= $2 ORDER BY expires_at LIMIT $3",
    )
    .bind(now.unix_timestamp())
    .bind(unix_ms(now))
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db)
}

pub(super) async fn forget(pool: &AnyPool, before: OffsetDateTime) -> Result<u64> {
    let before = before.unix_timestamp();
    let done = sqlx::query(
        "DELETE FROM tus_uploads WHERE state <> 'open' AND expires_at <= $1 \
         AND ticket_expires_at <= $1",
    )
    .bind(before)
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(done.rows_affected())
}

/// Inside `erase_chat`'s transaction: the chat's open uploads end with it (their bytes go
/// with its bucket).
pub(super) async fn erase_chat(conn: &mut sqlx::AnyConnection, chat: &ChatId) -> Result<()> {
    sqlx::query(
        "UPDATE tus_uploads SET state = 'erased', stage = '', lease_token = NULL, \
         lease_until = 0 WHERE chat_id = $1 AND state = 'open'",
    )
    .bind(chat.as_str())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}
