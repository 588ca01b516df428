//! JPEG: a state machine over markers, segments and entropy-coded data. APPn and COM
//! segments (at most 64 KiB each) are held whole and decided on; every other byte passes
//! through as it comes. `strip_location` changes no length (the GPS IFD and XMP are
//! overwritten in place), so the offsets of a Multi-Picture index to the images after the
//! first stay right, and those images are filtered too. `strip_all` drops segments and ends
//! the file at the first image's EOI.

use super::{exif, xmp, Mode};

const EXIF_ID: &[u8] = b"Exif\0";
const XMP_ID: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
/// The extended-XMP identifier, then a 32-byte GUID, the full length and this part's offset.
const XMP_EXT_ID: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";
const XMP_EXT_HEADER: usize = XMP_EXT_ID.len() + 32 + 4 + 4;
const ICC_ID: &[u8] = b"ICC_PROFILE\0";
const PHOTOSHOP_ID: &[u8] = b"Photoshop 3.0\0";

const APP0: u8 = 0xE0;
const APP1: u8 = 0xE1;
const APP2: u8 = 0xE2;
const APP13: u8 = 0xED;
const APP14: u8 = 0xEE;
const COM: u8 = 0xFE;
const SOS: u8 = 0xDA;
const EOI: u8 = 0xD9;

enum State {
    /// Between segments: a marker must come (`ff`: its 0xFF has been read).
    Marker { ff: bool },
    /// The two length bytes of `marker`'s segment.
    Length {
        marker: u8,
        got: usize,
        len: [u8; 2],
    },
    /// The rest of a segment passed through; then entropy-coded data after SOS.
    Copy { left: usize, entropy: bool },
    /// An APPn or COM segment held until it is whole (`want`: its payload's length).
    Hold {
        marker: u8,
        want: usize,
        buf: Vec<u8>,
    },
    /// Entropy-coded data, passed through up to the next marker.
    Entropy { ff: bool },
    /// After an EOI: another image (a Multi-Picture file), or a trailer.
    AfterEoi { ff: bool },
    /// The rest passes unchanged.
    Through,
    /// The rest is dropped.
    Drop,
}

pub struct Jpeg {
    mode: Mode,
    state: State,
}

impl Jpeg {
    pub(super) fn new(mode: Mode) -> Self {
        Jpeg {
            mode,
            state: State::Marker { ff: false },
        }
    }

    pub(super) fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while let Some((&byte, rest)) = input.split_first() {
            match &mut self.state {
                State::Marker { ff } => {
                    input = rest;
                    match (byte, *ff) {
                        (0xFF, true) => out.push(0xFF), // fill
                        (0xFF, false) => *ff = true,
                        (_, false) => {
                            out.push(byte);
                            self.state = State::Through;
                        }
                        (marker, true) => self.marker(marker, out),
                    }
                }
                State::Length { marker, got, len } => {
                    input = rest;
                    len[*got] = byte;
                    *got += 1;
                    if *got == 2 {
                        let (marker, len) = (*marker, *len);
                        self.segment(marker, len, out);
                    }
                }
                State::Copy { left, entropy } => {
                    let n = (*left).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *left -= n;
                    if *left == 0 {
                        self.state = match entropy {
                            true => State::Entropy { ff: false },
                            false => State::Marker { ff: false },
                        };
                    }
                }
                State::Hold { marker, want, buf } => {
                    let n = (*want - buf.len()).min(input.len());
                    buf.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if buf.len() == *want {
                        let (marker, buf) = (*marker, std::mem::take(buf));
                        self.state = State::Marker { ff: false };
                        self.decide(marker, buf, out);
                    }
                }
                State::Entropy { ff: false } => match memchr::memchr(0xFF, input) {
                    Some(at) => {
                        out.extend_from_slice(&input[..at]);
                        input = &input[at + 1..];
                        self.state = State::Entropy { ff: true };
                    }
                    None => {
                        out.extend_from_slice(input);
                        input = &[];
                    }
                },
                State::Entropy { ff: true } => {
                    input = rest;
                    match byte {
                        // A stuffed zero or a restart marker: still data.
                        0x00 | 0xD0..=0xD7 => {
                            out.extend_from_slice(&[0xFF, byte]);
                            self.state = State::Entropy { ff: false };
                        }
                        0xFF => out.push(0xFF),
                        marker => self.marker(marker, out),
                    }
                }
                State::AfterEoi { ff } => {
                    input = rest;
                    match (byte, *ff) {
                        (0xFF, false) => *ff = true,
                        (0xD8, true) => {
                            out.extend_from_slice(&[0xFF, 0xD8]);
                            self.state = State::Marker { ff: false };
                        }
                        _ => {
                            if *ff {
                                out.push(0xFF);
                            }
                            out.push(byte);
                            self.state = State::Through;
                        }
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
        match std::mem::replace(&mut self.state, State::Drop) {
            State::Marker { ff: true }
            | State::Entropy { ff: true }
            | State::AfterEoi { ff: true } => out.push(0xFF),
            State::Length { marker, got, len } => {
                out.extend_from_slice(&[0xFF, marker]);
                out.extend_from_slice(&len[..got]);
            }
            // A metadata segment the end cut short is dropped; so is anything else held.
            _ => {}
        }
    }

    /// `marker` has been read after its 0xFF.
    fn marker(&mut self, marker: u8, out: &mut Vec<u8>) {
        self.state = match marker {
            // Not a marker: the structure is broken.
            0x00 => {
                out.extend_from_slice(&[0xFF, 0x00]);
                State::Through
            }
            // Standalone markers: SOI, RSTn, TEM.
            0xD8 | 0xD0..=0xD7 | 0x01 => {
                out.extend_from_slice(&[0xFF, marker]);
                State::Marker { ff: false }
            }
            EOI => match self.mode {
                Mode::Location => {
                    out.extend_from_slice(&[0xFF, EOI]);
                    State::AfterEoi { ff: false }
                }
                Mode::All => {
                    out.extend_from_slice(&[0xFF, EOI]);
                    State::Drop
                }
            },
            _ => State::Length {
                marker,
                got: 0,
                len: [0; 2],
            },
        };
    }

    /// The length of `marker`'s segment has been read.
    fn segment(&mut self, marker: u8, len: [u8; 2], out: &mut Vec<u8>) {
        let Some(payload) = (u16::from_be_bytes(len) as usize).checked_sub(2) else {
            out.extend_from_slice(&[0xFF, marker, len[0], len[1]]);
            self.state = State::Through;
            return;
        };
        if (APP0..=0xEF).contains(&marker) || marker == COM {
            self.state = State::Hold {
                marker,
                want: payload,
                buf: Vec::with_capacity(payload),
            };
            if payload == 0 {
                self.decide(marker, Vec::new(), out);
                self.state = State::Marker { ff: false };
            }
            return;
        }
        out.extend_from_slice(&[0xFF, marker, len[0], len[1]]);
        let entropy = marker == SOS;
        self.state = match payload {
            0 if entropy => State::Entropy { ff: false },
            0 => State::Marker { ff: false },
            left => State::Copy { left, entropy },
        };
    }

    /// A whole APPn or COM segment: kept, changed in place, replaced or dropped.
    fn decide(&mut self, marker: u8, mut payload: Vec<u8>, out: &mut Vec<u8>) {
        match self.mode {
            Mode::Location => {
                if marker == APP1 && payload.starts_with(EXIF_ID) {
                    let tiff = payload.get_mut(6..).unwrap_or_default();
                    if exif::zero_gps(tiff).is_err() {
                        // An EXIF that cannot be read cannot be checked either.
                        return;
                    }
                } else if marker == APP1 && payload.starts_with(XMP_ID) {
                    let packet = &mut payload[XMP_ID.len()..];
                    if xmp::has_location(packet) {
                        xmp::blank(packet);
                    }
                } else if marker == APP1 && payload.starts_with(XMP_EXT_ID) {
                    if let Some(part) = payload.get_mut(XMP_EXT_HEADER..) {
                        if xmp::has_location(part) {
                            part.fill(b' ');
                        }
                    }
                } else if marker == APP13 && payload.starts_with(PHOTOSHOP_ID) {
                    blank_iptc_places(&mut payload[PHOTOSHOP_ID.len()..]);
                }
                emit(marker, &payload, out);
            }
            Mode::All => match marker {
                APP0 | APP14 => emit(marker, &payload, out),
                APP2 if payload.starts_with(ICC_ID) => emit(marker, &payload, out),
                APP1 if payload.starts_with(EXIF_ID) => {
                    let tiff = payload.get(6..).unwrap_or_default();
                    if let Some(o) = exif::orientation(tiff) {
                        let mut kept = b"Exif\0\0".to_vec();
                        kept.extend_from_slice(&exif::minimal(Some(o)));
                        emit(marker, &kept, out);
                    }
                }
                _ => {}
            },
        }
    }
}

fn emit(marker: u8, payload: &[u8], out: &mut Vec<u8>) {
    // Every payload here came from a segment or is smaller than the one it replaces.
    let len = (payload.len() + 2).min(u16::MAX as usize) as u16;
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload[..len as usize - 2]);
}

/// IPTC datasets that name a place: 2:26 location code, 2:27 location name, 2:90 city,
/// 2:92 sub-location, 2:95 province/state, 2:100 country code, 2:101 country.
const IPTC_PLACES: &[u8] = &[26, 27, 90, 92, 95, 100, 101];

/// Overwrites, with spaces, the values of IPTC place datasets inside Photoshop's image
/// resources (`8BIM` 0x0404); nothing moves.
fn blank_iptc_places(resources: &mut [u8]) {
    let mut at = 0usize;
    while let Some(head) = resources.get(at..at + 6) {
        if &head[..4] != b"8BIM" {
            return;
        }
        let id = u16::from_be_bytes([head[4], head[5]]);
        // A Pascal string, padded to an even length.
        let Some(&name_len) = resources.get(at + 6) else {
            return;
        };
        let name = (1 + name_len as usize + 1) & !1;
        let size_at = at + 6 + name;
        let Some(size) = resources.get(size_at..size_at + 4) else {
            return;
        };
        let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
        let data_at = size_at + 4;
        let end = data_at.saturating_add(size).min(resources.len());
        if id == 0x0404 {
            blank_places(&mut resources[data_at.min(end)..end]);
        }
        at = data_at.saturating_add(size).saturating_add(size & 1);
    }
}

fn blank_places(iim: &mut [u8]) {
    let mut at = 0usize;
    while let Some(&[0x1C, record, dataset, hi, lo]) = iim.get(at..at + 5) {
        if hi & 0x80 != 0 {
            return; // an extended length: not written for text datasets
        }
        let len = u16::from_be_bytes([hi, lo]) as usize;
        let value = at + 5;
        let end = (value + len).min(iim.len());
        if record == 2 && IPTC_PLACES.contains(&dataset) {
            iim[value..end].fill(b' ');
        }
        at = value + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptc_place_names_are_blanked_in_place() {
        let mut iim = Vec::new();
        for (ds, value) in [(90u8, &b"Berlin"[..]), (80, b"Someone"), (101, b"Germany")] {
            iim.extend_from_slice(&[0x1C, 2, ds, 0, value.len() as u8]);
            iim.extend_from_slice(value);
        }
        let mut res = b"8BIM\x04\x04\0\0".to_vec();
        res.extend_from_slice(&(iim.len() as u32).to_be_bytes());
        res.extend_from_slice(&iim);
        let len = res.len();
        blank_iptc_places(&mut res);
        assert_eq!(res.len(), len);
        let text = String::from_utf8_lossy(&res);
        assert!(
            !text.contains("Berlin") && !text.contains("Germany"),
            "{text}"
        );
        assert!(text.contains("Someone"));
        for cut in 0..len {
            blank_iptc_places(&mut res.clone()[..cut]);
        }
    }
}
