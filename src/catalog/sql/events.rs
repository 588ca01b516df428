//! The event outbox rows: written inside the transactions of the changes they report
//! ([`write`]), then leased, removed on delivery, retried or marked dead. The `Catalog` impl
//! in the parent module forwards here.

use super::super::engine::classify as db;
use super::super::rows::*;
use super::super::*;
use super::SqlCatalog;
use crate::domain::NewEvent;
use sqlx::{AnyConnection, Row};

/// Outbox rows per multi-row INSERT: 7 parameters each, far below either engine's limit.
const ROWS_PER_INSERT: usize = 100;

/// Writes one row per event and sink on `conn` (inside the caller's transaction).
pub(super) async fn write(
    conn: &mut AnyConnection,
    sinks: &[Sink],
    events: &[NewEvent],
) -> Result<()> {
    let rows: Vec<(&NewEvent, Sink)> = events
        .iter()
        .flat_map(|e| sinks.iter().map(move |s| (e, *s)))
        .collect();
    let now = now_ms();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = |k: usize| format!("${}", 2 + 7 * i + k);
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, 'pending', $1, $1, $1)",
                    p(0),
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5),
                    p(6)
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO event_outbox (event_id, sink, order_key, event, chat_id, media_id, body, \
             state, created_at, queued_at, next_at) VALUES {}",
            values.join(", ")
        );
        let mut insert = sqlx::query(&sql).bind(now);
        for (event, sink) in chunk {
            insert = insert
                .bind(&event.event_id)
                .bind(sink.as_str())
                .bind(event.order_key())
                .bind(event.name)
                .bind(event.chat_id.as_str())
                .bind(event.media_id.map(|id| id.to_string()))
                .bind(&event.body);
        }
        insert.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// The columns [`decode`] expects, in its order.
const COLUMNS: &str = "seq, event_id, event, chat_id, body, attempts, created_at, queued_at";

fn decode(r: &sqlx::any::AnyRow) -> OutboxEvent {
    OutboxEvent {
        seq: r.get(0),
        event_id: r.get(1),
        event: r.get(2),
        chat_id: r.get(3),
        body: r.get(4),
        attempts: r.get::<i64, _>(5) as u32,
        created_at: r.get(6),
        queued_at: r.get(7),
    }
}

pub(super) async fn claim(
    c: &SqlCatalog,
    sink: Sink,
    limit: u32,
    lease: Duration,
    owner: &str,
) -> Result<Vec<OutboxEvent>> {
    let now = now_ms();
    // Only the oldest pending row of its order key: the events of one media go out one at a
    // time, in order. A leased row is pending, so it holds its successors back on every node
    // until it is delivered (removed) or dead. Written as a MIN over the order index, not as
    // NOT EXISTS: without table statistics (a fresh database under its first burst)
    // PostgreSQL planned the anti-join as a nested loop over every pending row, 6 s for 5000.
    let sql = format!(
        "UPDATE event_outbox SET lease_until = $1, lease_owner = $2 \
         WHERE seq IN (SELECT o.seq FROM event_outbox o \
           WHERE o.sink = $3 AND o.state = 'pending' AND o.next_at <= $4 \
             AND (o.lease_until IS NULL OR o.lease_until < $4) \
             AND o.seq = (SELECT MIN(p.seq) FROM event_outbox p WHERE p.sink = o.sink \
               AND p.state = 'pending' AND p.order_key = o.order_key) \
           ORDER BY o.seq LIMIT $5{}) \
         RETURNING {COLUMNS}",
        c.engine.claim_lock()
    );
    let rows = sqlx::query(&sql)
        .bind(now + lease.as_millis() as i64)
        .bind(owner)
        .bind(sink.as_str())
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&c.pool)
        .await
        .map_err(db)?;
    let mut events: Vec<OutboxEvent> = rows.iter().map(decode).collect();
    events.sort_by_key(|e| e.seq);
    Ok(events)
}

pub(super) async fn delivered(c: &SqlCatalog, seqs: &[i64]) -> Result<()> {
    for chunk in seqs.chunks(ROWS_PER_INSERT) {
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "DELETE FROM event_outbox WHERE seq IN ({})",
            list.join(", ")
        );
        let mut delete = sqlx::query(&sql);
        for seq in chunk {
            delete = delete.bind(*seq);
        }
        delete.execute(&c.pool).await.map_err(db)?;
    }
    Ok(())
}

pub(super) async fn failed(c: &SqlCatalog, seq: i64, error: &str, next: Redelivery) -> Result<()> {
    // Errors are a sink's words (a status line, an I/O error): kept short.
    let error: String = error.chars().take(500).collect();
    let query = match next {
        Redelivery::After(after) => sqlx::query(
            "UPDATE event_outbox SET attempts = attempts + 1, last_error = $1, \
             next_at = $2, lease_until = NULL, lease_owner = NULL WHERE seq = $3",
        )
        .bind(error)
        .bind(now_ms() + after.as_millis() as i64),
        Redelivery::Dead => sqlx::query(
            "UPDATE event_outbox SET attempts = attempts + 1, last_error = $1, \
             state = 'dead', lease_until = NULL, lease_owner = NULL WHERE seq = $2",
        )
        .bind(error),
    };
    query.bind(seq).execute(&c.pool).await.map_err(db)?;
    Ok(())
}

pub(super) async fn dead(c: &SqlCatalog, limit: u32) -> Result<Vec<DeadEvent>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS}, sink, media_id, last_error FROM event_outbox WHERE state = 'dead' \
         ORDER BY seq LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(&c.pool)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| {
            let sink: String = r.get(8);
            Ok(DeadEvent {
                event: decode(r),
                sink: Sink::parse(&sink).ok_or_else(|| {
                    CatalogError::Other(anyhow::anyhow!("corrupt outbox row: sink {sink:?}"))
                })?,
                media_id: r.get(9),
                last_error: r.get(10),
            })
        })
        .collect()
}

pub(super) async fn retry_dead(c: &SqlCatalog) -> Result<u64> {
    let n = sqlx::query(
        "UPDATE event_outbox SET state = 'pending', attempts = 0, queued_at = $1, next_at = $1, \
         last_error = NULL WHERE state = 'dead'",
    )
    .bind(now_ms())
    .execute(&c.pool)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(n)
}

pub(super) async fn counts(c: &SqlCatalog) -> Result<EventCounts> {
    let rows = sqlx::query("SELECT sink, state, COUNT(*) FROM event_outbox GROUP BY sink, state")
        .fetch_all(&c.pool)
        .await
        .map_err(db)?;
    let mut counts = EventCounts::default();
    for r in rows {
        let (Some(sink), state) = (Sink::parse(&r.get::<String, _>(0)), r.get::<String, _>(1))
        else {
            continue;
        };
        let n = r.get::<i64, _>(2) as u64;
        match state.as_str() {
            "dead" => counts.dead.push((sink, n)),
            _ => counts.pending.push((sink, n)),
        }
    }
    Ok(counts)
}

pub(super) async fn release_leases(c: &SqlCatalog, owner: &str) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE event_outbox SET lease_until = NULL, lease_owner = NULL \
         WHERE lease_owner = $1 AND state = 'pending'",
    )
    .bind(owner)
    .execute(&c.pool)
    .await
    .map_err(db)?
    .rows_affected())
}
