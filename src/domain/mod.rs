//! The service's vocabulary: ids, media records and their variants.

pub mod disposition;
pub mod event;
mod ids;
mod media;
pub mod sniff;

pub use event::{EraseReason, NewEvent, Sink};
pub use ids::{ChatId, InvalidId, MediaId, UserId};
pub use media::{Kind, Media, MediaError, MediaMetadata, MediaPlaceholder, Status, VariantInfo};
pub use sniff::{sniff, Sniffed};
