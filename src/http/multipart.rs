//! A `multipart/form-data` reader (RFC 7578) that bounds everything it holds: the preamble,
//! each part's header block and every part but the file are refused past their limits, and
//! the file streams through. axum's `Multipart` (multer) buffers a preamble or a header block
//! until it ends, however long: a 300 MiB preamble grew the server by 300 MiB.

use super::body::Guarded;
use crate::usecase::ingest::IngestError;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::fmt::Display;

pub use crate::config::MultipartLimits as Limits;

#[derive(Debug)]
pub enum FormError {
    /// From the body itself: over the cap, idle, cut short.
    Body(IngestError),
    /// Not multipart as RFC 7578 has it, or over one of the [`Limits`].
    Malformed(String),
}

impl From<IngestError> for FormError {
    fn from(e: IngestError) -> Self {
        FormError::Body(e)
    }
}

/// A part's name and filename, from its `Content-Disposition`.
#[derive(Debug, Default, PartialEq)]
pub struct PartHead {
    pub name: Option<String>,
    pub filename: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum At {
    /// Before the first delimiter.
    Preamble,
    /// Just past a delimiter: a part follows, or `--` ends the body.
    Delimiter,
    /// In a part's content.
    Part,
    /// Past the close delimiter.
    End,
}

pub struct Form<'a, S> {
    body: &'a mut Guarded<S>,
    buf: BytesMut,
    /// `\r\n--<boundary>`: what ends a part's content. The body's first delimiter has no
    /// `\r\n` of its own, so the buffer starts with one.
    delimiter: Vec<u8>,
    ended: bool,
    at: At,
    limits: Limits,
}

impl<'a, S, E> Form<'a, S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    pub fn new(body: &'a mut Guarded<S>, boundary: &str, limits: Limits) -> Self {
        Self {
            body,
            buf: BytesMut::from(&b"\r\n"[..]),
            delimiter: [b"\r\n--", boundary.as_bytes()].concat(),
            ended: false,
            at: At::Preamble,
            limits,
        }
    }

    /// Reads one more chunk into the buffer; `false` once the body has ended.
    async fn fill(&mut self) -> Result<bool, IngestError> {
        if self.ended {
            return Ok(false);
        }
        match self.body.next().await {
            Some(chunk) => {
                self.buf.extend_from_slice(&chunk?);
                Ok(true)
            }
            None => {
                self.ended = true;
                Ok(false)
            }
        }
    }

    /// Skips to the next part, past what is left of the current one; `None` after the last.
    pub async fn next_part(&mut self) -> Result<Option<PartHead>, FormError> {
        loop {
            match self.at {
                At::End => return Ok(None),
                At::Preamble | At::Part => self.skip_content().await?,
                At::Delimiter => return self.part_head().await,
            }
        }
    }

    /// Discards content up to the next delimiter, refusing more than `field_bytes` of it.
    async fn skip_content(&mut self) -> Result<(), FormError> {
        let what = match self.at {
            At::Preamble => "the preamble",
            _ => "a part that is not the file",
        };
        let mut skipped = 0;
        while let Some(chunk) = self.content().await? {
            skipped += chunk.len();
            if skipped > self.limits.field_bytes {
                return Err(FormError::Malformed(format!(
                    "{what} is over {} bytes",
                    self.limits.field_bytes
                )));
            }
        }
        Ok(())
    }

    /// The next piece of the current content, `None` at its end (the delimiter consumed).
    pub async fn content(&mut self) -> Result<Option<Bytes>, IngestError> {
        if !matches!(self.at, At::Preamble | At::Part) {
            return Ok(None);
        }
        loop {
            if let Some(i) = memchr::memmem::find(&self.buf, &self.delimiter) {
                let piece = self.buf.split_to(i).freeze();
                self.buf.advance(self.delimiter.len());
                self.at = At::Delimiter;
                return Ok(Some(piece).filter(|p| !p.is_empty()));
            }
            // Everything but a tail that may be the start of the delimiter is content.
            let keep = self.delimiter.len() - 1;
            if self.buf.len() > keep {
                let piece = self.buf.split_to(self.buf.len() - keep).freeze();
                return Ok(Some(piece));
            }
            if !self.fill().await? {
                return Err(IngestError::Body(
                    "the multipart body ended inside a part".into(),
                ));
            }
        }
    }

    /// Past a delimiter: the close delimiter `--`, or transport padding, CRLF and the part's
    /// header block up to its blank line.
    async fn part_head(&mut self) -> Result<Option<PartHead>, FormError> {
        let limit = self.limits.header_bytes;
        loop {
            if self.buf.starts_with(b"--") {
                self.at = At::End;
                return Ok(None);
            }
            // Transport padding and the delimiter line's CRLF, then the header block up to a
            // blank line (none at all: CRLF CRLF straight away). Padding counts as header.
            let padding = self
                .buf
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
            let line = &self.buf[padding..];
            if line.len() >= 2 && !line.starts_with(b"\r\n") {
                return Err(FormError::Malformed(
                    "a multipart delimiter is not followed by a line break".into(),
                ));
            }
            if let Some(i) = memchr::memmem::find(line, b"\r\n\r\n") {
                let head = parse_head(&line[2.min(i)..i])?;
                self.buf.advance(padding + i + 4);
                self.at = At::Part;
                return Ok(Some(head));
            }
            if self.buf.len() > limit + 4 {
                return Err(FormError::Malformed(format!(
                    "a multipart part's headers are over {limit} bytes"
                )));
            }
            if !self.fill().await? {
                return Err(FormError::Malformed(
                    "the multipart body ended before its close delimiter".into(),
                ));
            }
        }
    }
}

/// The part's name and filename from its header lines (other headers are ignored).
fn parse_head(block: &[u8]) -> Result<PartHead, FormError> {
    let block = String::from_utf8_lossy(block);
    for line in block.split("\r\n").filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(FormError::Malformed(format!(
                "a multipart header line has no colon: {:?}",
                truncated(line)
            )));
        };
        if name.trim().eq_ignore_ascii_case("content-disposition") {
            return Ok(content_disposition(value));
        }
    }
    Ok(PartHead::default())
}

fn truncated(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `form-data; name="file"; filename="a.jpg"` (a `filename*=UTF-8''...` wins over `filename`).
fn content_disposition(value: &str) -> PartHead {
    let mut head = PartHead::default();
    let mut extended = None;
    let mut rest = value;
    // The disposition type, then `; key=value` pairs whose values may be quoted strings.
    rest = rest.split_once(';').map_or("", |(_, r)| r);
    while !rest.trim().is_empty() {
        let (key, after) = rest.split_once('=').unwrap_or((rest, ""));
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let next = quoted[end..].split_once(';').map_or("", |(_, r)| r);
                (value, next)
            }
            None => {
                let (value, next) = after.split_once(';').unwrap_or((after, ""));
                (value.trim().to_owned(), next)
            }
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "name" => head.name = Some(value),
            "filename" => head.filename = Some(value),
            "filename*" => extended = ext_value(&value),
            _ => {}
        }
        rest = next;
    }
    if extended.is_some() {
        head.filename = extended;
    }
    head
}

/// RFC 8187's `UTF-8''percent%20encoded`; other charsets are ignored.
fn ext_value(value: &str) -> Option<String> {
    let (charset, rest) = value.split_once('\'')?;
    let (_language, encoded) = rest.split_once('\'')?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut it = encoded.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next()?, it.next()?];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (_, params) = content_type.split_once(';')?;
    params
        .split(';')
        .find_map(|p| {
            let (key, value) = p.split_once('=')?;
            key.trim().eq_ignore_ascii_case("boundary").then(|| {
                let v = value.trim();
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
                    .to_owned()
            })
        })
        .filter(|b| (1..=70).contains(&b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        header_bytes: 256,
        field_bytes: 64,
    };

    /// The parts of `body` fed in chunks of `chunk` bytes: (head, content) each.
    async fn parts(body: &[u8], chunk: usize) -> Result<Vec<(PartHead, Vec<u8>)>, String> {
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut body = Guarded::new(
            futures_util::stream::iter(chunks),
            u64::MAX,
            u64::MAX,
            Duration::from_secs(5),
        );
        let mut form = Form::new(&mut body, "XyZ", LIMITS);
        let mut out = Vec::new();
        while let Some(head) = form.next_part().await.map_err(|e| format!("{e:?}"))? {
            let mut content = Vec::new();
            while let Some(piece) = form.content().await.map_err(|e| format!("{e:?}"))? {
                content.extend_from_slice(&piece);
            }
            out.push((head, content));
        }
        Ok(out)
    }

    fn named(name: &str, filename: Option<&str>) -> PartHead {
        PartHead {
            name: Some(name.into()),
            filename: filename.map(Into::into),
        }
    }

    #[tokio::test]
    async fn parts_are_read_whatever_the_chunking() {
        let body = b"preamble\r\n--XyZ  \r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\
            one\r\n--XyZ\r\ncontent-type: x/y\r\nContent-Disposition: form-data; name=file; \
            filename=\"q\\\"x.bin\"\r\n\r\n\r\n--Xy\r\n--XyZ\r\n\r\nbare\r\n--XyZ--\r\nepilogue";
        for chunk in [1, 2, 3, 7, 500] {
            let got = parts(body, chunk).await.unwrap();
            assert_eq!(
                got,
                vec![
                    (named("a", None), b"one".to_vec()),
                    (named("file", Some("q\"x.bin")), b"\r\n--Xy".to_vec()),
                    (PartHead::default(), b"bare".to_vec()),
                ],
                "chunks of {chunk}"
            );
        }
    }

    #[tokio::test]
    async fn limits_and_broken_bodies_are_refused() {
        let long_preamble = [&[b'p'; 65][..], b"\r\n--XyZ--"].concat();
        assert!(parts(&long_preamble, 10)
            .await
            .unwrap_err()
            .contains("preamble"));
        let long_head = [b"--XyZ\r\nX: ", &[b'h'; 300][..], b"\r\n\r\n--XyZ--"].concat();
        assert!(parts(&long_head, 10).await.unwrap_err().contains("headers"));
        let cut = b"--XyZ\r\nContent-Disposition: form-data; name=file\r\n\r\nabc";
        assert!(parts(cut, 10).await.unwrap_err().contains("ended inside"));
        let no_close = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nabc\r\n--XyZ";
        assert!(parts(no_close, 10)
            .await
            .unwrap_err()
            .contains("close delimiter"));
        assert!(parts(b"--XyZjunk\r\n\r\n", 3)
            .await
            .unwrap_err()
            .contains("line break"));
    }

    #[test]
    fn dispositions_and_boundaries_parse() {
        assert_eq!(
            content_disposition(" form-data; name=\"file\"; filename*=UTF-8''%E2%82%AC.jpg"),
            PartHead {
                name: Some("file".into()),
                filename: Some("€.jpg".into())
            }
        );
        assert_eq!(
            boundary("multipart/form-data; charset=utf-8; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
    }
}
