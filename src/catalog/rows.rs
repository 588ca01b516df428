//! The catalog's column layout, times as integers, and row decoding.

use super::*;
use sqlx::{ColumnIndex, Decode, Row, Type};

pub(super) fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(super) fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

/// The media columns [`decode_media`] expects, in its order, followed by the chat's bucket;
/// `m` is media.
pub(super) const MEDIA_FIELDS: &str = "m.id, m.chat_id, m.uploader, m.filename, m.kind, m.mime, \
    m.size, m.sha256, m.created_at, m.expires_at, m.status, m.error_code, m.error_message, \
    m.width, m.height, m.duration_ms, m.waveform, m.blurhash, m.thumbhash, m.uploaded_sha256";

/// The columns [`decode_variant`] expects, in its order, from its `base` column on.
pub(super) const VARIANT_COLUMNS: &str = "name, mime, size, width, height, duration_ms";

/// [`VARIANT_COLUMNS`] of `v`, for a join with media (whose columns have the same names).
pub(super) const VARIANT_FIELDS: &str = "v.name, v.mime, v.size, v.width, v.height, v.duration_ms";

fn bad(what: &str) -> CatalogError {
    CatalogError::Other(anyhow::anyhow!("corrupt catalog row: {what}"))
}

pub(super) fn decode_variant<R>(r: &R, base: usize) -> (String, VariantInfo)
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    (
        r.get::<String, _>(base),
        VariantInfo {
            mime: r.get(base + 1),
            size: r.get::<i64, _>(base + 2) as u64,
            width: r.get::<Option<i64>, _>(base + 3).map(|v| v as u32),
            height: r.get::<Option<i64>, _>(base + 4).map(|v| v as u32),
            duration_ms: r.get::<Option<i64>, _>(base + 5).map(|v| v as u64),
        },
    )
}

/// A row of `media_id, kind, attempts`.
pub(super) fn decode_job<R>(r: &R) -> Result<Job>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Job {
        media_id: MediaId::parse(&r.get::<String, _>(0)).ok_or_else(|| bad("job id"))?,
        kind: Kind::parse(&r.get::<String, _>(1)).ok_or_else(|| bad("job kind"))?,
        attempt: r.get::<i64, _>(2) as u32,
    })
}

pub(super) fn decode_media<R>(r: &R, variants: BTreeMap<String, VariantInfo>) -> Result<StoredMedia>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let time = |secs: i64| OffsetDateTime::from_unix_timestamp(secs).map_err(|_| bad("time"));
    let error = match (
        r.get::<Option<String>, _>(11),
        r.get::<Option<String>, _>(12),
    ) {
        (Some(code), message) => Some(MediaError {
            code,
            message: message.unwrap_or_default(),
        }),
        _ => None,
    };
    let placeholder = match (
        r.get::<Option<String>, _>(17),
        r.get::<Option<String>, _>(18),
    ) {
        (Some(blurhash), Some(thumbhash)) => Some(MediaPlaceholder {
            blurhash,
            thumbhash,
        }),
        _ => None,
    };
    let waveform = match r.get::<Option<String>, _>(16) {
        Some(json) => Some(serde_json::from_str(&json).map_err(|_| bad("waveform"))?),
        None => None,
    };
    let media = Media {
        id: MediaId::parse(&r.get::<String, _>(0)).ok_or_else(|| bad("id"))?,
        chat_id: ChatId::parse(&r.get::<String, _>(1)).map_err(|_| bad("chat"))?,
        uploader: UserId::parse(&r.get::<String, _>(2)).map_err(|_| bad("uploader"))?,
        filename: r.get(3),
        kind: Kind::parse(&r.get::<String, _>(4)).ok_or_else(|| bad("kind"))?,
        mime: r.get(5),
        size: r.get::<i64, _>(6) as u64,
        sha256: r.get(7),
        uploaded_sha256: r.get(19),
        created_at: time(r.get(8))?,
        expires_at: r.get::<Option<i64>, _>(9).map(time).transpose()?,
        status: crate::domain::Status::parse(&r.get::<String, _>(10))
            .ok_or_else(|| bad("status"))?,
        error,
        metadata: MediaMetadata {
            width: r.get::<Option<i64>, _>(13).map(|v| v as u32),
            height: r.get::<Option<i64>, _>(14).map(|v| v as u32),
            duration_ms: r.get::<Option<i64>, _>(15).map(|v| v as u64),
            waveform,
        },
        placeholder,
        variants,
    };
    Ok(StoredMedia {
        media,
        bucket: r.get(20),
    })
}

/// The waveform column: JSON text, so both catalogs store it the same way.
pub(super) fn waveform_json(metadata: &MediaMetadata) -> Option<String> {
    metadata
        .waveform
        .as_ref()
        .map(|w| serde_json::to_string(w).unwrap_or_default())
}
