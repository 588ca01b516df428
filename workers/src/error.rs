use thiserror::Error;

/// A stable failure code and what it means. Clients match on `code`; the service records it on
/// a media whose processing failed, and its README lists every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub code: &'static str,
    pub meaning: &'static str,
}

/// Why a transform gave up. Each variant has a stable [`code`](WorkerError::code), one of
/// [`CODES`]; the message is for humans.
#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("could not decode the input: {0}")]
    DecodeFailed(String),
    #[error("too many pixels: {0}")]
    TooManyPixels(String),
    #[error("too long: {0}")]
    TooLong(String),
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    /// The input needs FFmpeg ([`crate::Av`]), which the calling process does not have. Its
    /// code is `unsupported_codec`, which is what it means to whoever cannot run it elsewhere;
    /// a worker runs the job again in a process that has FFmpeg instead of recording it.
    #[error("unsupported codec: {0}")]
    NeedsAv(String),
    /// Workers only ever read the one file they were handed.
    #[error("refused: {0}")]
    RefusedReference(String),
    #[error("empty media: {0}")]
    Empty(String),
    #[error("timed out: {0}")]
    TimedOut(String),
    #[error("could not encode an output: {0}")]
    EncodeFailed(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl WorkerError {
    pub const DECODE_FAILED: Code = Code {
        code: "decode_failed",
        meaning: "Not a valid file of the sniffed type (truncated, corrupt, hostile).",
    };
    pub const TOO_MANY_PIXELS: Code = Code {
        code: "too_many_pixels",
        meaning: "Width × height (or frames × pixels) over the preset's limit: a pixel flood.",
    };
    pub const TOO_LONG: Code = Code {
        code: "too_long",
        meaning: "Duration over the preset's limit.",
    };
    pub const UNSUPPORTED_CODEC: Code = Code {
        code: "unsupported_codec",
        meaning: "A container or codec the pipeline does not accept.",
    };
    pub const REFUSED_REFERENCE: Code = Code {
        code: "refused_reference",
        meaning: "A playlist, concat script or other container that points at other files or URLs.",
    };
    pub const EMPTY_MEDIA: Code = Code {
        code: "empty_media",
        meaning: "Well-formed but nothing in it (an audio file of zero samples).",
    };
    pub const TIMED_OUT: Code = Code {
        code: "timed_out",
        meaning: "Over a time budget (the preset's, or the caller's).",
    };
    pub const ENCODE_FAILED: Code = Code {
        code: "encode_failed",
        meaning: "Writing an output failed (not the input's fault).",
    };
    /// The one retryable code: callers run the job again rather than record it.
    pub const IO_ERROR: Code = Code {
        code: "io_error",
        meaning: "Local I/O on the input or the output directory failed.",
    };

    pub fn code(&self) -> &'static str {
        self.registered().code
    }

    fn registered(&self) -> Code {
        match self {
            WorkerError::DecodeFailed(_) => Self::DECODE_FAILED,
            WorkerError::TooManyPixels(_) => Self::TOO_MANY_PIXELS,
            WorkerError::TooLong(_) => Self::TOO_LONG,
            WorkerError::UnsupportedCodec(_) | WorkerError::NeedsAv(_) => Self::UNSUPPORTED_CODEC,
            WorkerError::RefusedReference(_) => Self::REFUSED_REFERENCE,
            WorkerError::Empty(_) => Self::EMPTY_MEDIA,
            WorkerError::TimedOut(_) => Self::TIMED_OUT,
            WorkerError::EncodeFailed(_) => Self::ENCODE_FAILED,
            WorkerError::Io(_) => Self::IO_ERROR,
        }
    }

    /// Whether running the same job again could succeed (local I/O trouble), as opposed to a
    /// verdict on the input that a retry would only repeat.
    pub fn is_retryable(&self) -> bool {
        matches!(self, WorkerError::Io(_))
    }
}

/// Every code a [`WorkerError`] can carry.
pub const CODES: &[Code] = &[
    WorkerError::DECODE_FAILED,
    WorkerError::TOO_MANY_PIXELS,
    WorkerError::TOO_LONG,
    WorkerError::UNSUPPORTED_CODEC,
    WorkerError::REFUSED_REFERENCE,
    WorkerError::EMPTY_MEDIA,
    WorkerError::TIMED_OUT,
    WorkerError::ENCODE_FAILED,
    WorkerError::IO_ERROR,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_own_code_in_the_table() {
        let s = String::new;
        let all = [
            WorkerError::DecodeFailed(s()),
            WorkerError::TooManyPixels(s()),
            WorkerError::TooLong(s()),
            WorkerError::UnsupportedCodec(s()),
            WorkerError::RefusedReference(s()),
            WorkerError::Empty(s()),
            WorkerError::TimedOut(s()),
            WorkerError::EncodeFailed(s()),
            WorkerError::Io(std::io::Error::other("x")),
        ];
        let codes: Vec<&str> = all.iter().map(WorkerError::code).collect();
        let table: Vec<&str> = CODES.iter().map(|c| c.code).collect();
        assert_eq!(codes, table, "one code per variant, in the table's order");
        // The one variant that shares a code: what it means to a caller without FFmpeg.
        assert_eq!(
            WorkerError::NeedsAv(s()).code(),
            WorkerError::UNSUPPORTED_CODEC.code
        );
        assert!(!WorkerError::NeedsAv(s()).is_retryable());
        let unique: std::collections::BTreeSet<_> = table.iter().collect();
        assert_eq!(unique.len(), table.len(), "no code twice");
        let retryable: Vec<&str> = all
            .iter()
            .filter(|e| e.is_retryable())
            .map(WorkerError::code)
            .collect();
        assert_eq!(retryable, [WorkerError::IO_ERROR.code]);
    }
}
