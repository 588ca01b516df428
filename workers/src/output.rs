use std::path::PathBuf;
use std::time::Duration;

/// One file a pipeline wrote, named by its fixed variant name (`thumbnail`, `preview`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    pub path: PathBuf,
    pub mime: String,
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration_ms: Option<u64>,
}

/// Facts about the original, as displayed (EXIF orientation / rotation applied).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration_ms: Option<u64>,
    /// 64 to 100 peak values, 0-255 (audio only).
    pub waveform: Option<Vec<u8>>,
}

/// Tiny strings a client can paint before any variant is downloaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Placeholder {
    pub blurhash: String,
    /// Base64 (standard alphabet, no padding) of the thumbhash bytes.
    pub thumbhash: String,
}

/// How long one named step took; `satchel process` prints these.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub took: Duration,
}

/// Everything a pipeline produced.
#[derive(Debug, Clone, Default)]
pub struct Processed {
    pub metadata: Metadata,
    pub placeholder: Option<Placeholder>,
    pub variants: Vec<Variant>,
    pub steps: Vec<Step>,
}
