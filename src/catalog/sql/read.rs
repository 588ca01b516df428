//! Reading media with their variants on one connection, so that a transaction sees its own
//! writes: what the event of a change, or a quota's accounting, reports; and in one statement
//! with a member's membership, what every link and download checks.

use super::super::engine::classify as db;
use super::super::rows::*;
use super::super::*;
use sqlx::{AnyConnection, AnyPool, Row};
use std::sync::LazyLock;

pub(super) async fn variants_on(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<BTreeMap<String, VariantInfo>> {
    let rows = sqlx::query(&format!(
        "SELECT {VARIANT_COLUMNS} FROM variants WHERE media_id = $1"
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    Ok(rows.iter().map(|r| decode_variant(r, 0)).collect())
}

/// The media `id` read on `conn` (inside a transaction, it sees the transaction's writes);
/// with `only_live`, not if it has expired.
pub(super) async fn media_on(
    conn: &mut AnyConnection,
    id: &str,
    only_live: bool,
) -> Result<Option<StoredMedia>> {
    let row = sqlx::query(&format!(
        "SELECT {MEDIA_FIELDS}, c.bucket FROM media m JOIN chats c ON c.chat_id = m.chat_id \
         WHERE m.id = $1 AND (NOT $2 OR m.expires_at IS NULL OR m.expires_at > $3)"
    ))
    .bind(id)
    .bind(only_live)
    .bind(OffsetDateTime::now_utc().unix_timestamp())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    match row {
        Some(row) => {
            let variants = variants_on(conn, id).await?;
            Ok(Some(decode_media(&row, variants)?))
        }
        None => Ok(None),
    }
}

/// The live media `id` with its variants and `user`'s membership of its chat, in one
/// statement: a row per variant (one with NULLs when there is none), each with the media's
/// columns, the chat's bucket and `members.since` (NULL: not a member).
pub(super) async fn media_and_membership(
    pool: &AnyPool,
    id: &str,
    user: &str,
) -> Result<Option<(StoredMedia, Option<String>)>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {MEDIA_FIELDS}, c.bucket, mb.since, {VARIANT_FIELDS} \
             FROM media m JOIN chats c ON c.chat_id = m.chat_id \
             LEFT JOIN members mb ON mb.chat_id = m.chat_id AND mb.user_id = $2 \
             LEFT JOIN variants v ON v.media_id = m.id \
             WHERE m.id = $1 AND (m.expires_at IS NULL OR m.expires_at > $3)"
        )
    });
    let rows = sqlx::query(SQL.as_str())
        .bind(id)
        .bind(user)
        .bind(OffsetDateTime::now_utc().unix_timestamp())
        .fetch_all(pool)
        .await
        .map_err(db)?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    // After the media's columns (0..=19) and the bucket (20).
    const SINCE: usize = 21;
    const VARIANT: usize = 22;
    let variants = rows
        .iter()
        .filter(|r| r.get::<Option<String>, _>(VARIANT).is_some())
        .map(|r| decode_variant(r, VARIANT))
        .collect();
    let membership = first.get::<Option<String>, _>(SINCE);
    Ok(Some((decode_media(first, variants)?, membership)))
}

/// Every media of `chat` with its variants, read on `conn`, in id order.
pub(super) async fn chat_media_on(conn: &mut AnyConnection, chat: &ChatId) -> Result<Vec<Media>> {
    let mut variants: std::collections::HashMap<String, BTreeMap<String, VariantInfo>> =
        Default::default();
    let rows = sqlx::query(&format!(
        "SELECT media_id, {VARIANT_COLUMNS} FROM variants \
         WHERE media_id IN (SELECT id FROM media WHERE chat_id = $1)"
    ))
    .bind(chat.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for r in &rows {
        let (name, info) = decode_variant(r, 1);
        variants
            .entry(r.get::<String, _>(0))
            .or_default()
            .insert(name, info);
    }
    // The chat row may be gone already (an erase deletes it first): no join.
    let rows = sqlx::query(&format!(
        "SELECT {MEDIA_FIELDS}, CAST('' AS TEXT) FROM media m WHERE m.chat_id = $1 ORDER BY m.id"
    ))
    .bind(chat.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| {
            let id: String = r.get(0);
            decode_media(r, variants.remove(&id).unwrap_or_default()).map(|s| s.media)
        })
        .collect()
}
