//! The job rows: leasing (embedded queue), the outbox (broker relay), outcomes and retries.
//! The `Catalog` impl in the parent module forwards here.

use super::super::engine::classify as db;
use super::super::rows::*;
use super::super::*;
use super::SqlCatalog;

pub(super) async fn claim_job(
    c: &SqlCatalog,
    kinds: &[Kind],
    lease: Duration,
    owner: &str,
    per_chat: Option<u32>,
) -> Result<Option<Job>> {
    if kinds.is_empty() {
        return Ok(None);
    }
    let now = now_ms();
    let kind_list: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect();
    // A chat's jobs running now (a lease that ran out is no longer running).
    let running = "(SELECT COUNT(*) FROM jobs r WHERE r.chat_id = j.chat_id \
                   AND r.state = 'running' AND r.lease_until >= $3)";
    let sql = format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $1, \
         lease_owner = $2 \
         WHERE media_id = (SELECT j.media_id FROM jobs j WHERE j.kind IN ({kinds}) AND \
           ((j.state IN ('queued', 'published') AND j.available_at <= $3) \
             OR (j.state = 'running' AND j.lease_until < $3)) \
           AND {running} < $4 \
           ORDER BY {running}, j.available_at, j.media_id LIMIT 1{lock}) \
         RETURNING media_id, kind, attempts",
        kinds = kind_list.join(", "),
        lock = c.engine.claim_lock()
    );
    let mut claim = sqlx::query(&sql)
        .bind(now + lease.as_millis() as i64)
        .bind(owner)
        .bind(now)
        .bind(per_chat.map_or(i64::MAX, i64::from));
    for kind in kinds {
        claim = claim.bind(kind.as_str());
    }
    let row = claim.fetch_optional(&c.pool).await.map_err(db)?;
    row.as_ref().map(decode_job).transpose()
}

pub(super) async fn finish_job(
    c: &SqlCatalog,
    id: &MediaId,
    result: JobResult,
) -> Result<Option<Media>> {
    let key = id.to_string();
    let mut tx = c.pool.begin().await.map_err(db)?;
    // The media row first, then its job: the order an unsend's or erase's DELETE of the media
    // (cascading to the job) takes them in, so the two never deadlock on PostgreSQL.
    // What the variants take in storage now minus before: a re-run that writes the same
    // variants again counts only the difference.
    let mut variant_bytes = 0i64;
    let updated = match &result {
        JobResult::Ready {
            metadata,
            placeholder,
            variants,
        } => {
            let n = sqlx::query(
                "UPDATE media SET status = 'ready', error_code = NULL, error_message = NULL, \
                 width = $1, height = $2, duration_ms = $3, waveform = $4, blurhash = $5, \
                 thumbhash = $6 WHERE id = $7",
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
            .map_err(db)?
            .rows_affected();
            // With the media gone, the variant rows would break the foreign key.
            if n > 0 {
                variant_bytes -= variant_sum(&mut tx, &key).await?;
                for (name, v) in variants {
                    sqlx::query(
                        "INSERT INTO variants (media_id, name, mime, size, width, height, \
                         duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (media_id, name) DO UPDATE SET mime = excluded.mime, \
                         size = excluded.size, width = excluded.width, \
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
                    .map_err(db)?;
                }
                variant_bytes += variant_sum(&mut tx, &key).await?;
            }
            n
        }
        JobResult::Failed(e) => sqlx::query(
            "UPDATE media SET status = 'failed', error_code = $1, error_message = $2 \
             WHERE id = $3",
        )
        .bind(&e.code)
        .bind(&e.message)
        .bind(&key)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected(),
    };
    if updated == 0 {
        return Ok(None);
    }
    sqlx::query("DELETE FROM jobs WHERE media_id = $1")
        .bind(&key)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let media = super::media_on(&mut tx, &key, false)
        .await?
        .map(|stored| stored.media);
    if let (Some(m), true) = (&media, variant_bytes != 0) {
        sqlx::query("UPDATE media SET stored_bytes = stored_bytes + $1 WHERE id = $2")
            .bind(variant_bytes)
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        super::usage::add(&mut tx, &m.chat_id, &m.uploader, variant_bytes, 0).await?;
    }
    let event = media.as_ref().and_then(crate::domain::NewEvent::status);
    c.write_events(&mut tx, event.as_slice()).await?;
    tx.commit().await.map_err(db)?;
    c.announce_events();
    Ok(media)
}

/// The bytes of the media's variant rows, read on `conn`.
async fn variant_sum(conn: &mut sqlx::AnyConnection, key: &str) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM variants WHERE media_id = $1",
    )
    .bind(key)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)
}

pub(super) async fn retry_job(c: &SqlCatalog, id: &MediaId, after: Duration) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'queued', lease_until = NULL, available_at = $1 \
         WHERE media_id = $2",
    )
    .bind(now_ms() + after.as_millis() as i64)
    .bind(id.to_string())
    .execute(&c.pool)
    .await
    .map_err(db)?;
    Ok(())
}

pub(super) async fn begin_job(
    c: &SqlCatalog,
    id: &MediaId,
    lease: Duration,
) -> Result<Option<Job>> {
    let row = sqlx::query(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $1 \
         WHERE media_id = $2 RETURNING media_id, kind, attempts",
    )
    .bind(now_ms() + lease.as_millis() as i64)
    .bind(id.to_string())
    .fetch_optional(&c.pool)
    .await
    .map_err(db)?;
    row.as_ref().map(decode_job).transpose()
}

pub(super) async fn outbox(c: &SqlCatalog, limit: u32, per_chat: u32) -> Result<Vec<Job>> {
    // Admission, fair across chats: each chat and kind may have `per_chat` jobs in the broker
    // or running (`published`, `running`); of its queued jobs, the oldest fill what is left of
    // that, and the chats take turns (every chat's first admitted job before any chat's second).
    let rows = sqlx::query(
        "SELECT media_id, kind, attempts FROM (\
           SELECT j.media_id, j.kind, j.attempts, j.available_at, \
             ROW_NUMBER() OVER (PARTITION BY j.chat_id, j.kind \
               ORDER BY j.available_at, j.media_id) AS turn, \
             (SELECT COUNT(*) FROM jobs b WHERE b.chat_id = j.chat_id AND b.kind = j.kind \
               AND b.state IN ('published', 'running')) AS busy \
           FROM jobs j WHERE j.state = 'queued' AND j.available_at <= $1) q \
         WHERE q.busy + q.turn <= $2 \
         ORDER BY q.turn, q.available_at, q.media_id LIMIT $3",
    )
    .bind(now_ms())
    .bind(i64::from(per_chat))
    .bind(i64::from(limit))
    .fetch_all(&c.pool)
    .await
    .map_err(db)?;
    rows.iter().map(decode_job).collect()
}

pub(super) async fn mark_published(c: &SqlCatalog, id: &MediaId) -> Result<()> {
    sqlx::query("UPDATE jobs SET state = 'published' WHERE media_id = $1 AND state = 'queued'")
        .bind(id.to_string())
        .execute(&c.pool)
        .await
        .map_err(db)?;
    Ok(())
}

pub(super) async fn release_leases(c: &SqlCatalog, owner: &str) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE jobs SET state = 'queued', lease_until = NULL, lease_owner = NULL \
         WHERE state = 'running' AND lease_owner = $1",
    )
    .bind(owner)
    .execute(&c.pool)
    .await
    .map_err(db)?
    .rows_affected())
}

pub(super) async fn queue_depth(c: &SqlCatalog) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(&c.pool)
        .await
        .map_err(db)?;
    Ok(n as u64)
}
