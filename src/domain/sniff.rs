//! The type of an upload, decided from its first bytes. Declared types and filenames are hints
//! a client controls, so they never choose how a file is processed or served.

use super::Kind;

/// How many leading bytes [`sniff`] looks at.
pub const SNIFF_BYTES: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    pub kind: Kind,
    pub mime: &'static str,
}

pub fn sniff(head: &[u8]) -> Sniffed {
    let Some(t) = infer::get(head) else {
        return file();
    };
    let (kind, mime) = match t.mime_type() {
        m @ ("image/jpeg" | "image/png" | "image/gif" | "image/webp" | "image/heif"
        | "image/avif") => (Kind::Image, m),
        m @ ("audio/mpeg" | "audio/aac" | "audio/ogg" | "audio/opus" | "audio/x-flac") => {
            (Kind::Audio, m)
        }
        "audio/x-wav" => (Kind::Audio, "audio/wav"),
        "audio/m4a" | "audio/x-m4a" => (Kind::Audio, "audio/mp4"),
        m @ ("video/mp4" | "video/quicktime" | "video/webm" | "video/x-matroska") => {
            (Kind::Video, m)
        }
        _ => return file(),
    };
    Sniffed { kind, mime }
}

fn file() -> Sniffed {
    Sniffed {
        kind: Kind::File,
        mime: "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_named_png_is_a_file() {
        let s = sniff(b"<!DOCTYPE html><html><script>alert(1)</script></html>");
        assert_eq!(s, file());
    }

    #[test]
    fn png_magic_is_an_image() {
        let s = sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
        assert_eq!((s.kind, s.mime), (Kind::Image, "image/png"));
    }
}
