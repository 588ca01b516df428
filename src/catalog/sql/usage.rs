//! What each chat and each uploader keeps in storage (`chat_usage`, `user_usage`; a media's
//! own share is its `stored_bytes`), changed only inside the transactions that add and erase
//! media. Rows are always taken in the same order, the chat's then the user's (after the chat
//! row and the media rows), so concurrent changes queue instead of deadlocking on PostgreSQL.

use super::super::engine::classify as db;
use super::super::*;
use sqlx::{AnyConnection, AnyPool, Row};

/// Adds a new media's original to its chat's and uploader's usage; if that takes either over
/// `quota`, says whose (the caller rolls back).
pub(super) async fn add_original(
    conn: &mut AnyConnection,
    media: &Media,
    quota: Quota,
) -> Result<Option<QuotaScope>> {
    let size = media.size as i64;
    let chat = count_original(conn, "chat_usage", "chat_id", media.chat_id.as_str(), size).await?;
    if quota.chat_bytes.is_some_and(|max| chat > max as i64) {
        return Ok(Some(QuotaScope::Chat));
    }
    let user = count_original(conn, "user_usage", "user_id", media.uploader.as_str(), size).await?;
    if quota.user_bytes.is_some_and(|max| user > max as i64) {
        return Ok(Some(QuotaScope::User));
    }
    Ok(None)
}

/// Adds one media of `size` bytes to the row `id` of `table` (`chat_usage` or `user_usage`,
/// keyed by `column`), creating it: the row's bytes now.
async fn count_original(
    conn: &mut AnyConnection,
    table: &str,
    column: &str,
    id: &str,
    size: i64,
) -> Result<i64> {
    sqlx::query_scalar(&format!(
        "INSERT INTO {table} ({column}, bytes, media) VALUES ($1, $2, 1) \
         ON CONFLICT ({column}) DO UPDATE SET bytes = {table}.bytes + excluded.bytes, \
         media = {table}.media + 1 RETURNING bytes"
    ))
    .bind(id)
    .bind(size)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)
}

/// Changes a chat's and an uploader's usage by `bytes` and `media` (negative: given back).
pub(super) async fn add(
    conn: &mut AnyConnection,
    chat: &ChatId,
    user: &UserId,
    bytes: i64,
    media: i64,
) -> Result<()> {
    if bytes == 0 && media == 0 {
        return Ok(());
    }
    sqlx::query("UPDATE chat_usage SET bytes = bytes + $1, media = media + $2 WHERE chat_id = $3")
        .bind(bytes)
        .bind(media)
        .bind(chat.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    give_back_users(conn, &[(user.as_str().to_owned(), -bytes, -media)]).await
}

/// Takes `(user, bytes, media)` off each user's usage, in user order.
pub(super) async fn give_back_users(
    conn: &mut AnyConnection,
    users: &[(String, i64, i64)],
) -> Result<()> {
    for (user, bytes, media) in users {
        sqlx::query(
            "UPDATE user_usage SET bytes = bytes - $1, media = media - $2 WHERE user_id = $3",
        )
        .bind(*bytes)
        .bind(*media)
        .bind(user)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// One row of `table` (`chat_usage` or `user_usage`, keyed by `column`), zeros if none.
pub(super) async fn of(pool: &AnyPool, table: &str, column: &str, id: &str) -> Result<Usage> {
    let row = sqlx::query(&format!(
        "SELECT bytes, media FROM {table} WHERE {column} = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    Ok(row.map_or(Usage::default(), |r| Usage {
        bytes: r.get::<i64, _>(0).max(0) as u64,
        media: r.get::<i64, _>(1).max(0) as u64,
    }))
}
