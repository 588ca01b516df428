//! `Content-Disposition` of downloads, the same whether the service serves them or S3 does
//! through a presigned link.

/// `inline` only for media types a browser shows without running them; everything else is
/// an attachment, so that an HTML or SVG upload can never execute in our origin.
pub fn disposition(mime: &str, filename: &str) -> String {
    let inline = [
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/heif",
        "image/heic",
    ]
    .contains(&mime)
        || mime.starts_with("audio/")
        || mime.starts_with("video/");
    let kind = if inline { "inline" } else { "attachment" };
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        percent_encode(filename)
    )
}

/// RFC 8187 `attr-char`s stay, everything else is %XX.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn variant_filename(original: &str, variant: &str, mime: &str) -> String {
    let stem = original.rsplit_once('.').map_or(original, |(stem, _)| stem);
    let ext = match mime {
        "image/webp" => "webp",
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "audio/ogg" => "ogg",
        "video/mp4" => "mp4",
        _ => "bin",
    };
    format!("{stem}-{variant}.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_an_attachment_and_images_are_inline() {
        assert!(disposition("application/octet-stream", "x.png").starts_with("attachment;"));
        assert!(disposition("image/webp", "x.webp").starts_with("inline;"));
        assert!(disposition("image/svg+xml", "x.svg").starts_with("attachment;"));
    }

    #[test]
    fn filenames_are_quoted_safely() {
        let d = disposition("image/png", "a\"b é.png");
        assert!(d.contains("filename=\"a_b _.png\""), "{d}");
        assert!(d.contains("filename*=UTF-8''a%22b%20%C3%A9.png"), "{d}");
    }
}
