//! WebP: a state machine over RIFF chunks. The RIFF size and the VP8X flags come first, before
//! the `EXIF` and `XMP ` chunks they count, so nothing is dropped: those chunks are rewritten
//! in place at their length (the GPS IFD zeroed, or an EXIF holding only the orientation
//! padded with zeros; XMP as an empty packet padded with spaces), and every size and flag
//! stays true. A chunk over [`CHUNK_CAP`] is not held: it streams out as an empty one.

use super::{exif, xmp, Mode, CHUNK_CAP};

enum State {
    /// `RIFF`, its size, `WEBP`.
    Riff {
        got: usize,
        head: [u8; 12],
    },
    /// A chunk's FourCC and size.
    Header {
        got: usize,
        head: [u8; 8],
    },
    /// The rest of a chunk (and its padding byte) passed through.
    Copy {
        left: u64,
    },
    /// An EXIF or XMP chunk (and its padding byte) held until whole.
    Hold {
        exif: bool,
        want: usize,
        size: usize,
        buf: Vec<u8>,
    },
    /// The rest of a chunk too big to hold, written as `fill`.
    Fill {
        left: u64,
        fill: u8,
    },
    Through,
    Drop,
}

pub struct Webp {
    mode: Mode,
    state: State,
    /// Bytes read so far, and where the RIFF data ends.
    at: u64,
    end: u64,
}

impl Webp {
    pub(super) fn new(mode: Mode) -> Self {
        Webp {
            mode,
            state: State::Riff {
                got: 0,
                head: [0; 12],
            },
            at: 0,
            end: 0,
        }
    }

    pub(super) fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            let before = input.len();
            match &mut self.state {
                State::Riff { got, head } => {
                    let n = (12 - *got).min(input.len());
                    head[*got..*got + n].copy_from_slice(&input[..n]);
                    input = &input[n..];
                    *got += n;
                    if *got == 12 {
                        let head = *head;
                        out.extend_from_slice(&head);
                        self.state = if &head[..4] == b"RIFF" && &head[8..] == b"WEBP" {
                            let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
                            self.end = 8 + u64::from(size);
                            State::Header {
                                got: 0,
                                head: [0; 8],
                            }
                        } else {
                            State::Through
                        };
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
                        self.state = State::Header {
                            got: 0,
                            head: [0; 8],
                        };
                    }
                }
                State::Fill { left, fill } => {
                    let n = (*left).min(input.len() as u64) as usize;
                    out.resize(out.len() + n, *fill);
                    input = &input[n..];
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Header {
                            got: 0,
                            head: [0; 8],
                        };
                    }
                }
                State::Hold {
                    exif,
                    want,
                    size,
                    buf,
                } => {
                    let n = (*want - buf.len()).min(input.len());
                    buf.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if buf.len() == *want {
                        let (exif, size, mut buf) = (*exif, *size, std::mem::take(buf));
                        self.rewrite(exif, &mut buf[..size]);
                        out.extend_from_slice(&buf);
                        self.state = State::Header {
                            got: 0,
                            head: [0; 8],
                        };
                    }
                }
                State::Through => {
                    out.extend_from_slice(input);
                    input = &[];
                }
                State::Drop => input = &[],
            }
            self.at += (before - input.len()) as u64;
            if matches!(self.state, State::Header { got: 0, .. }) && self.at >= self.end {
                // Past the RIFF data: not WebP any more.
                self.state = match self.mode {
                    Mode::Location => State::Through,
                    Mode::All => State::Drop,
                };
            }
        }
    }

    pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.state, State::Drop) {
            State::Riff { got, head } => out.extend_from_slice(&head[..got]),
            State::Header { got, head } => out.extend_from_slice(&head[..got]),
            // A chunk held and cut short by the end is dropped.
            _ => {}
        }
    }

    fn chunk(&mut self, head: [u8; 8], out: &mut Vec<u8>) {
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let whole = u64::from(size) + u64::from(size & 1);
        out.extend_from_slice(&head);
        let exif = &head[..4] == b"EXIF";
        let metadata = exif || &head[..4] == b"XMP ";
        self.state = match (metadata, whole) {
            (false, 0) | (true, 0) => State::Header {
                got: 0,
                head: [0; 8],
            },
            (false, left) => State::Copy { left },
            (true, want) if want <= CHUNK_CAP as u64 => State::Hold {
                exif,
                want: want as usize,
                size: size as usize,
                buf: Vec::with_capacity(want as usize),
            },
            (true, left) if exif => {
                // An empty TIFF, then zeros.
                let empty = exif::minimal(None);
                out.extend_from_slice(&empty);
                State::Fill {
                    left: left - empty.len() as u64,
                    fill: 0,
                }
            }
            (true, left) => State::Fill { left, fill: b' ' },
        };
    }

    /// An EXIF or XMP chunk's data, rewritten in place at the same length.
    fn rewrite(&self, exif: bool, data: &mut [u8]) {
        if !exif {
            if self.mode == Mode::All || xmp::has_location(data) {
                xmp::blank(data);
            }
            return;
        }
        let start = exif::tiff_start(data);
        let tiff = &mut data[start..];
        let orientation = match self.mode {
            Mode::Location if exif::zero_gps(tiff).is_ok() => return,
            // An EXIF that cannot be read cannot be checked either: emptied.
            Mode::Location => None,
            Mode::All => exif::orientation(tiff),
        };
        let kept = [exif::minimal(orientation), exif::minimal(None)]
            .into_iter()
            .find(|t| t.len() <= tiff.len())
            .unwrap_or_default();
        tiff[..kept.len()].copy_from_slice(&kept);
        tiff[kept.len()..].fill(0);
    }
}
