//! HEIC/HEIF and AVIF: the `meta` box comes first in camera files and says, in `iinf` and
//! `iloc`, which byte ranges of the file are the `Exif` item and the XMP item (a `mime` item of
//! `application/rdf+xml`). So the head of the file is held until `meta` is whole (at most
//! [`HEAD_CAP`]), and then everything streams, with those ranges rewritten in place at their
//! length as they pass: the GPS IFD zeroed, or (`strip_all`) an EXIF holding only the
//! orientation padded with zeros; an XMP packet that names a place (any, for `strip_all`)
//! blanked. Nothing moves, so every `iloc` offset stays true. A metadata item over
//! [`CHUNK_CAP`], in several extents or overlapping another is not held: it streams out as
//! zeros. A file whose `meta` does not come before its `mdat`, or is over the cap, or cannot be
//! followed, passes through unchanged.

use super::{exif, xmp, Mode, CHUNK_CAP};

/// The most held while waiting for `meta` to be whole.
pub const HEAD_CAP: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Exif,
    Xmp,
}

/// A range of the file to rewrite: held and edited (`hold`), or zeroed as it streams.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    end: u64,
    what: What,
    hold: bool,
}

enum State {
    Head,
    Body,
    Through,
}

pub struct Heif {
    mode: Mode,
    state: State,
    head: Vec<u8>,
    /// The file offset of the next byte in `Body`.
    at: u64,
    /// Sorted, not overlapping; the first is the next to come.
    spans: Vec<Span>,
    held: Vec<u8>,
}

impl Heif {
    pub(super) fn new(mode: Mode) -> Self {
        Heif {
            mode,
            state: State::Head,
            head: Vec::new(),
            at: 0,
            spans: Vec::new(),
            held: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self.state {
            State::Through => out.extend_from_slice(input),
            State::Body => self.body(input, out),
            State::Head => {
                self.head.extend_from_slice(input);
                match meta_end(&self.head) {
                    Need::More if self.head.len() <= HEAD_CAP => {}
                    Need::Meta(end) => {
                        self.spans = spans(&self.head[..end]).unwrap_or_default();
                        self.state = State::Body;
                        let head = std::mem::take(&mut self.head);
                        self.body(&head, out);
                    }
                    Need::More | Need::GiveUp => {
                        out.append(&mut self.head);
                        self.state = State::Through;
                    }
                }
            }
        }
    }

    /// What is still held: a head without a whole `meta` goes out as it came; a metadata item
    /// the end cut short is dropped.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
        if let State::Head = self.state {
            out.append(&mut self.head);
        }
        self.held.clear();
        self.state = State::Through;
    }

    fn body(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            let Some(span) = self.spans.first().copied() else {
                out.extend_from_slice(input);
                self.at += input.len() as u64;
                return;
            };
            let n = if self.at < span.start {
                let n = (span.start - self.at).min(input.len() as u64) as usize;
                out.extend_from_slice(&input[..n]);
                n
            } else {
                let n = (span.end - self.at).min(input.len() as u64) as usize;
                if span.hold {
                    self.held.extend_from_slice(&input[..n]);
                } else {
                    out.resize(out.len() + n, 0);
                }
                n
            };
            input = &input[n..];
            self.at += n as u64;
            if self.at == span.end {
                if span.hold {
                    edit(self.mode, span.what, &mut self.held);
                    out.append(&mut self.held);
                }
                self.spans.remove(0);
            }
        }
    }
}

/// Rewrites a whole EXIF or XMP item in place.
fn edit(mode: Mode, what: What, data: &mut [u8]) {
    match what {
        What::Xmp => {
            if mode == Mode::All || xmp::has_location(data) {
                xmp::blank(data);
            }
        }
        What::Exif => {
            // The item starts with the offset of the TIFF header from the end of that field.
            let skip = data
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .and_then(|offset| offset.checked_add(4))
                .filter(|&at| at <= data.len());
            let Some(skip) = skip else {
                data.fill(0);
                return;
            };
            let tiff = &mut data[skip..];
            let start = exif::tiff_start(tiff);
            let tiff = &mut tiff[start..];
            match mode {
                Mode::Location => {
                    if exif::zero_gps(tiff).is_err() {
                        tiff.fill(0);
                    }
                }
                Mode::All => {
                    let minimal = exif::minimal(exif::orientation(tiff));
                    tiff.fill(0);
                    if minimal.len() <= tiff.len() {
                        tiff[..minimal.len()].copy_from_slice(&minimal);
                    }
                }
            }
        }
    }
}

enum Need {
    More,
    /// `meta` ends at this offset.
    Meta(usize),
    GiveUp,
}

/// Walks the top-level boxes of `head` up to the end of `meta`.
fn meta_end(head: &[u8]) -> Need {
    let mut at = 0usize;
    loop {
        let Some(size) = be(head, at, 4) else {
            return Need::More;
        };
        let Some(kind) = head.get(at + 4..at + 8) else {
            return Need::More;
        };
        let size = match size {
            0 => return Need::GiveUp,
            1 => match be(head, at + 8, 8) {
                Some(large) => large,
                None => return Need::More,
            },
            n => n,
        };
        if size < 8 || kind == b"mdat" {
            return Need::GiveUp;
        }
        let Some(end) = usize::try_from(size).ok().and_then(|s| at.checked_add(s)) else {
            return Need::GiveUp;
        };
        if end > HEAD_CAP {
            return Need::GiveUp;
        }
        if kind == b"meta" {
            return if head.len() >= end {
                Need::Meta(end)
            } else {
                Need::More
            };
        }
        at = end;
    }
}

fn be(bytes: &[u8], at: usize, len: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(len)?)?;
    Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
}

/// A box: its type, the offset of its body in the data it was read from, its body.
type Boxed<'a> = ([u8; 4], usize, &'a [u8]);

/// Each box in `data[from..to]`.
fn children(data: &[u8], from: usize, to: usize) -> Option<Vec<Boxed<'_>>> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let size = be(data, at, 4)?;
        let kind: [u8; 4] = data.get(at + 4..at + 8)?.try_into().ok()?;
        let (header, size) = match size {
            1 => (16, be(data, at + 8, 8)?),
            0 => (8, (to - at) as u64),
            n => (8, n),
        };
        let end = at.checked_add(usize::try_from(size).ok()?)?;
        if size < header as u64 || end > to {
            return None;
        }
        out.push((kind, at + header, data.get(at + header..end)?));
        at = end;
    }
    Some(out)
}

/// The EXIF and XMP ranges `iinf` and `iloc` name, from `head`, which ends with `meta`.
fn spans(head: &[u8]) -> Option<Vec<Span>> {
    let top = children(head, 0, head.len())?;
    let &(_, meta_at, meta) = top.iter().find(|(k, _, _)| k == b"meta")?;
    let list = children(head, meta_at + 4, meta_at + meta.len())?;
    let body = |kind: &[u8; 4]| list.iter().find(|(k, _, _)| k == kind);

    let mut items: Vec<(u64, What)> = Vec::new();
    let &(_, iinf_at, iinf) = body(b"iinf")?;
    let count_len = if *iinf.first()? == 0 { 2 } else { 4 };
    for (kind, _, infe) in children(head, iinf_at + 4 + count_len, iinf_at + iinf.len())? {
        let version = *infe.first()?;
        if &kind != b"infe" || version < 2 {
            continue;
        }
        let id_len = if version == 2 { 2 } else { 4 };
        let id = be(infe, 4, id_len)?;
        let type_at = 4 + id_len + 2;
        match infe.get(type_at..type_at + 4)? {
            b"Exif" => items.push((id, What::Exif)),
            b"mime" => {
                // item_name, then content_type, each NUL-terminated.
                let mut strings = infe.get(type_at + 4..)?.split(|&b| b == 0);
                let _name = strings.next();
                if strings.next() == Some(&b"application/rdf+xml"[..]) {
                    items.push((id, What::Xmp));
                }
            }
            _ => {}
        }
    }
    if items.is_empty() {
        return Some(Vec::new());
    }
    let idat_at = body(b"idat").map(|&(_, at, _)| at as u64);

    let &(_, _, iloc) = body(b"iloc")?;
    let version = *iloc.first()?;
    let sizes = be(iloc, 4, 2)?;
    let (off_len, len_len) = ((sizes >> 12) as usize, (sizes >> 8 & 15) as usize);
    let base_len = (sizes >> 4 & 15) as usize;
    let index_len = if version == 1 || version == 2 {
        (sizes & 15) as usize
    } else {
        0
    };
    let (id_len, count, mut at) = if version < 2 {
        (2, be(iloc, 6, 2)?, 8)
    } else {
        (4, be(iloc, 6, 4)?, 10)
    };
    let mut spans = Vec::new();
    for _ in 0..count {
        let id = be(iloc, at, id_len)?;
        at += id_len;
        let method = if version == 1 || version == 2 {
            at += 2;
            be(iloc, at - 2, 2)? & 15
        } else {
            0
        };
        at += 2;
        let base = be(iloc, at, base_len)?;
        at += base_len;
        let extents = be(iloc, at, 2)?;
        at += 2;
        let what = items.iter().find(|(i, _)| *i == id).map(|(_, w)| *w);
        let origin = match method {
            0 => Some(0),
            1 => idat_at,
            _ => None,
        };
        for _ in 0..extents {
            at += index_len;
            let offset = be(iloc, at, off_len)?;
            at += off_len;
            let length = be(iloc, at, len_len)?;
            at += len_len;
            let (Some(what), Some(origin)) = (what, origin) else {
                continue;
            };
            let start = origin.checked_add(base)?.checked_add(offset)?;
            let end = if length == 0 {
                u64::MAX
            } else {
                start.checked_add(length)?
            };
            let hold = extents == 1 && length > 0 && length <= CHUNK_CAP as u64;
            spans.push(Span {
                start,
                end,
                what,
                hold,
            });
        }
    }
    spans.sort_by_key(|s| s.start);
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start < last.end => {
                last.end = last.end.max(span.end);
                last.hold = false;
            }
            _ => merged.push(span),
        }
    }
    Some(merged)
}
