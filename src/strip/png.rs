//! PNG: a state machine over chunks. `eXIf` and the text chunks are held (up to
//! [`CHUNK_CAP`]) and decided on, with a new CRC where they change; a bigger one is dropped
//! unread; every other chunk passes through as it comes. PNG has no offsets between chunks, so
//! dropping one moves nothing.

use super::{exif, xmp, Mode, CHUNK_CAP};

const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
const XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp";

/// The ancillary chunks `strip_all` keeps: how the pixels are to be shown, and animation.
const RENDERING: &[&[u8; 4]] = &[
    b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"cICP", b"mDCv", b"cLLi", b"sBIT", b"pHYs",
    b"bKGD", b"hIST", b"sPLT", b"acTL", b"fcTL", b"fdAT",
];

enum State {
    Signature {
        got: usize,
    },
    /// A chunk's length and type.
    Header {
        got: usize,
        head: [u8; 8],
    },
    /// The rest of a chunk (data and CRC) passed through.
    Copy {
        left: u64,
    },
    /// A chunk's data and CRC held until whole.
    Hold {
        kind: [u8; 4],
        want: usize,
        buf: Vec<u8>,
    },
    /// The rest of a dropped chunk.
    Skip {
        left: u64,
    },
    Through,
    Drop,
}

pub struct Png {
    mode: Mode,
    state: State,
    /// IEND has been read: what follows it is not PNG.
    ended: bool,
}

impl Png {
    pub(super) fn new(mode: Mode) -> Self {
        Png {
            mode,
            state: State::Signature { got: 0 },
            ended: false,
        }
    }

    pub(super) fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match &mut self.state {
                State::Signature { got } => {
                    let byte = input[0];
                    input = &input[1..];
                    out.push(byte);
                    if byte != SIGNATURE[*got] {
                        self.state = State::Through;
                    } else if *got == 7 {
                        self.state = self.next();
                    } else {
                        *got += 1;
                    }
                }
                State::Header { got, head } => {
                    if super::fill(head, got, &mut input) {
                        let head = *head;
                        self.chunk(head, out);
                    }
                }
                State::Copy { left } => {
                    if super::pass(left, &mut input, Some(out)) {
                        self.state = self.next();
                    }
                }
                State::Skip { left } => {
                    if super::pass(left, &mut input, None) {
                        self.state = self.next();
                    }
                }
                State::Hold { kind, want, buf } => {
                    let n = (*want - buf.len()).min(input.len());
                    buf.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if buf.len() == *want {
                        let (kind, mut buf) = (*kind, std::mem::take(buf));
                        buf.truncate(buf.len() - 4); // the old CRC
                        self.state = self.next();
                        self.decide(kind, buf, out);
                    }
                }
                State::Through => {
                    out.extend_from_slice(input);
                    input = &[];
                }
                State::Drop => input = &[],
            }
        }
    }

    pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
        if let State::Header { got, head } = self.state {
            out.extend_from_slice(&head[..got]);
        }
        // A chunk held and cut short by the end is dropped.
        self.state = State::Drop;
    }

    /// What comes after a chunk: the next one, or after IEND whatever trails the file.
    fn next(&self) -> State {
        match (self.ended, self.mode) {
            (false, _) => State::Header {
                got: 0,
                head: [0; 8],
            },
            (true, Mode::Location) => State::Through,
            (true, Mode::All) => State::Drop,
        }
    }

    fn chunk(&mut self, head: [u8; 8], out: &mut Vec<u8>) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = [head[4], head[5], head[6], head[7]];
        if len > i32::MAX as u32 {
            out.extend_from_slice(&head);
            self.state = State::Through;
            return;
        }
        let whole = u64::from(len) + 4;
        let metadata = matches!(&kind, b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt");
        let keep = match self.mode {
            Mode::Location => true,
            Mode::All => kind[0].is_ascii_uppercase() || RENDERING.contains(&&kind),
        };
        if &kind == b"IEND" {
            self.ended = true;
        }
        self.state = if metadata && (keep || &kind == b"eXIf") {
            if whole <= CHUNK_CAP as u64 {
                State::Hold {
                    kind,
                    want: whole as usize,
                    buf: Vec::with_capacity(whole as usize),
                }
            } else {
                State::Skip { left: whole }
            }
        } else if keep {
            out.extend_from_slice(&head);
            State::Copy { left: whole }
        } else {
            State::Skip { left: whole }
        };
    }

    /// A whole metadata chunk (its data, without the CRC): kept, changed or dropped.
    fn decide(&mut self, kind: [u8; 4], mut data: Vec<u8>, out: &mut Vec<u8>) {
        match (self.mode, &kind) {
            (Mode::Location, b"eXIf") => {
                let start = exif::tiff_start(&data);
                if exif::zero_gps(&mut data[start..]).is_ok() {
                    emit(kind, &data, out);
                }
            }
            (Mode::Location, _) => {
                if !text_has_location(&kind, &data) {
                    emit(kind, &data, out);
                }
            }
            (Mode::All, b"eXIf") => {
                let start = exif::tiff_start(&data);
                if let Some(o) = exif::orientation(&data[start..]) {
                    emit(kind, &exif::minimal(Some(o)), out);
                }
            }
            (Mode::All, _) => {}
        }
    }
}

/// Whether a tEXt, zTXt or iTXt chunk may say where: XMP that names a place (or that is
/// compressed, so cannot be read here), ImageMagick's raw EXIF, XMP or IPTC profiles, or a
/// keyword about GPS or location.
fn text_has_location(kind: &[u8; 4], data: &[u8]) -> bool {
    let Some(nul) = data.iter().take(80).position(|&b| b == 0) else {
        return false; // no keyword: not a text chunk any reader takes
    };
    let keyword = &data[..nul];
    let rest = &data[nul + 1..];
    let lower = keyword.to_ascii_lowercase();
    let mentions = |what: &[u8]| lower.windows(what.len()).any(|w| w == what);
    if mentions(b"gps") || mentions(b"location") {
        return true;
    }
    if lower.starts_with(b"raw profile type ") {
        let profile = &lower[b"raw profile type ".len()..];
        return matches!(profile, b"exif" | b"app1" | b"xmp" | b"iptc" | b"8bim");
    }
    if keyword != XMP_KEYWORD {
        return false;
    }
    match kind {
        b"tEXt" => xmp::has_location(rest),
        // Compression flag, method, language tag and translated keyword, then the text.
        b"iTXt" => match rest.first() {
            Some(0) => xmp::has_location(rest),
            _ => true,
        },
        _ => true,
    }
}

fn emit(kind: [u8; 4], data: &[u8], out: &mut Vec<u8>) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&kind);
    crc.update(data);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

#[cfg(test)]
impl Png {
    /// How many bytes are held back now.
    pub(super) fn held(&self) -> usize {
        match &self.state {
            State::Hold { buf, .. } => buf.capacity(),
            _ => 0,
        }
    }
}
