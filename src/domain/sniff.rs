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
        m @ ("image/jpeg" | "image/png" | "image/gif" | "image/webp" | "image/avif") => {
            (Kind::Image, m)
        }
        // `infer` names HEVC stills (brands `heic`, `heix`, `mif1` with `heic`) `image/heif`;
        // what phones send and the API reports is `image/heic`.
        "image/heif" => (Kind::Image, "image/heic"),
        m @ ("audio/mpeg" | "audio/aac" | "audio/ogg" | "audio/x-flac") => (Kind::Audio, m),
        // An Ogg stream of Opus is `audio/ogg` (RFC 7845); `audio/opus` names bare RTP payloads.
        "audio/opus" => (Kind::Audio, "audio/ogg"),
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
    fn ogg_opus_is_audio_ogg() {
        let mut head = b"OggS\0\x02".to_vec();
        head.resize(28, 0);
        head.extend_from_slice(b"OpusHead\x01\x01");
        head.resize(64, 0);
        assert_eq!(infer::get(&head).map(|t| t.mime_type()), Some("audio/opus"));
        assert_eq!(sniff(&head).mime, "audio/ogg");
    }

    #[test]
    fn html_named_png_is_a_file() {
        let s = sniff(b"<!DOCTYPE html><html><script>alert(1)</script></html>");
        assert_eq!(s, file());
    }

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let mut b = ((16 + 4 * compatible.len()) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0; 4]);
        compatible.iter().for_each(|c| b.extend_from_slice(*c));
        b.extend_from_slice(b"\0\0\0\x08meta");
        b
    }

    #[test]
    fn phone_photos_are_heic_or_avif_images() {
        for (head, mime) in [
            (ftyp(b"heic", &[b"mif1", b"heic", b"miaf"]), "image/heic"),
            (ftyp(b"mif1", &[b"mif1", b"heic"]), "image/heic"),
            (ftyp(b"heix", &[b"mif1"]), "image/heic"),
            (ftyp(b"avif", &[b"avif", b"mif1", b"miaf"]), "image/avif"),
            (ftyp(b"mif1", &[b"avif", b"mif1"]), "image/avif"),
        ] {
            let s = sniff(&head);
            assert_eq!((s.kind, s.mime), (Kind::Image, mime), "{head:?}");
        }
    }

    #[test]
    fn png_magic_is_an_image() {
        let s = sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
        assert_eq!((s.kind, s.mime), (Kind::Image, "image/png"));
    }
}
