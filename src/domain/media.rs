use super::{ChatId, MediaId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// What the upload is, decided from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Image,
    Audio,
    Video,
    /// Anything else: stored, never processed (end-to-end-encrypted blobs land here).
    File,
}

impl Kind {
    /// The kinds that have a pipeline, in worker-pool order.
    pub const ALL_PROCESSED: [Kind; 3] = [Kind::Image, Kind::Audio, Kind::Video];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Audio => "audio",
            Kind::Video => "video",
            Kind::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "image" => Kind::Image,
            "audio" => Kind::Audio,
            "video" => Kind::Video,
            "file" => Kind::File,
            _ => return None,
        })
    }

    /// The worker pipeline for this kind; `None` for plain files.
    pub fn pipeline(self) -> Option<satchel_workers::MediaKind> {
        match self {
            Kind::Image => Some(satchel_workers::MediaKind::Image),
            Kind::Audio => Some(satchel_workers::MediaKind::Audio),
            Kind::Video => Some(satchel_workers::MediaKind::Video),
            Kind::File => None,
        }
    }

    /// The variant names a finished job of this kind may have; links to any other name are
    /// `unknown_variant`.
    pub fn variant_names(self) -> &'static [&'static str] {
        match self {
            // `animation` (an H.264 MP4) only for animated GIF, WebP and APNG.
            Kind::Image => &["thumbnail", "preview", "blurred", "animation"],
            Kind::Audio => &["voice"],
            Kind::Video => &["video", "poster", "thumbnail", "blurred"],
            Kind::File => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Processing,
    Ready,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processing => "processing",
            Status::Ready => "ready",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "processing" => Status::Processing,
            "ready" => Status::Ready,
            "failed" => Status::Failed,
            _ => return None,
        })
    }
}

/// Why processing failed; the original stays stored and downloadable.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MediaError {
    /// Stable: `decode_failed`, `too_many_pixels`, `too_long`, `unsupported_codec`, ...
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MediaMetadata {
    /// As displayed (EXIF orientation and rotation applied).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Audio and video; for an animated image, the length of its `animation`.
    pub duration_ms: Option<u64>,
    /// Audio: 64-100 peak values, 0-255.
    pub waveform: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MediaPlaceholder {
    pub blurhash: String,
    pub thumbhash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VariantInfo {
    pub mime: String,
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration_ms: Option<u64>,
}

/// The Media object of the API contract.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Media {
    #[schema(value_type = String, example = "01JD3ZQ8Y7XK2M4N5P6Q7R8S9T")]
    pub id: MediaId,
    #[schema(value_type = String)]
    pub chat_id: ChatId,
    #[schema(value_type = String)]
    pub uploader: UserId,
    pub filename: String,
    pub kind: Kind,
    pub mime: String,
    /// Bytes of the original as stored.
    pub size: u64,
    /// Lowercase hex SHA-256 of the original as stored (its `ETag`).
    pub sha256: String,
    /// Lowercase hex SHA-256 of the upload's body as received, before an image original lost
    /// its metadata (`original_metadata`); equal to `sha256` when nothing was removed.
    pub uploaded_sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub status: Status,
    pub error: Option<MediaError>,
    pub metadata: MediaMetadata,
    pub placeholder: Option<MediaPlaceholder>,
    /// By name: image `thumbnail`, `preview`, `blurred`, and for animated GIF, WebP and APNG
    /// `animation` (a muted H.264 MP4, `video/mp4`); audio `voice`; video `video`, `poster`,
    /// `thumbnail`, `blurred`.
    pub variants: BTreeMap<String, VariantInfo>,
}
