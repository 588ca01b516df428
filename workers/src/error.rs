use thiserror::Error;

/// Why a transform gave up. Each variant has a stable [`code`](WorkerError::code) that the
/// service records on the media and clients match on; the message is for humans.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// The bytes are not a valid file of the sniffed type (truncated, corrupt, hostile).
    #[error("could not decode the input: {0}")]
    DecodeFailed(String),
    /// Width × height (or frame count × pixels) over the preset's limit: a pixel flood.
    #[error("too many pixels: {0}")]
    TooManyPixels(String),
    /// Duration over the preset's limit.
    #[error("too long: {0}")]
    TooLong(String),
    /// A container or codec the pipeline does not accept.
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    /// The input is a playlist, a concat script or another container that points at other files
    /// or URLs. Workers only ever read the one file they were handed.
    #[error("refused: {0}")]
    RefusedReference(String),
    /// A well-formed input with nothing in it to process (an audio file of zero samples).
    #[error("empty media: {0}")]
    Empty(String),
    /// Over a time budget set by the preset.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// Encoding an output failed; not the input's fault.
    #[error("could not encode an output: {0}")]
    EncodeFailed(String),
    /// Local I/O on the input or the output directory failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl WorkerError {
    pub fn code(&self) -> &'static str {
        match self {
            WorkerError::DecodeFailed(_) => "decode_failed",
            WorkerError::TooManyPixels(_) => "too_many_pixels",
            WorkerError::TooLong(_) => "too_long",
            WorkerError::UnsupportedCodec(_) => "unsupported_codec",
            WorkerError::RefusedReference(_) => "refused_reference",
            WorkerError::Empty(_) => "empty_media",
            WorkerError::TimedOut(_) => "timed_out",
            WorkerError::EncodeFailed(_) => "encode_failed",
            WorkerError::Io(_) => "io_error",
        }
    }

    /// Whether running the same job again could succeed (local I/O trouble), as opposed to a
    /// verdict on the input that a retry would only repeat.
    pub fn is_retryable(&self) -> bool {
        matches!(self, WorkerError::Io(_))
    }
}
