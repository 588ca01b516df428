//! EXIF's TIFF structure, read defensively: the GPS IFD zeroed in place (every other offset
//! stays valid), or a new TIFF holding only the orientation. Every read is bounds-checked; a
//! structure that points outside itself is read as far as it is inside.

/// The TIFF header or IFD0 cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

const GPS_POINTER: u16 = 0x8825;
const ORIENTATION: u16 = 0x0112;
/// IFD0, IFD1 and a few more: the chain is followed no further (and never in a loop).
const MAX_IFDS: usize = 4;

#[derive(Clone, Copy)]
enum Order {
    Little,
    Big,
}

struct Tiff<'a> {
    data: &'a [u8],
    order: Order,
}

impl<'a> Tiff<'a> {
    fn parse(data: &'a [u8]) -> Result<(Self, usize), Malformed> {
        let order = match data.get(..4) {
            Some(b"II*\0") => Order::Little,
            Some(b"MM\0*") => Order::Big,
            _ => return Err(Malformed),
        };
        let tiff = Tiff { data, order };
        let ifd0 = tiff.u32(4).ok_or(Malformed)? as usize;
        tiff.u16(ifd0).ok_or(Malformed)?;
        Ok((tiff, ifd0))
    }

    fn u16(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.data.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self.order {
            Order::Little => u16::from_le_bytes(b),
            Order::Big => u16::from_be_bytes(b),
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self.order {
            Order::Little => u32::from_le_bytes(b),
            Order::Big => u32::from_be_bytes(b),
        })
    }

    /// The entries of the IFD at `at` that lie inside the data: (tag, type, count, the
    /// offset of the entry's value field).
    fn entries(&self, at: usize) -> impl Iterator<Item = (u16, u16, u32, usize)> + '_ {
        let n = self.u16(at).unwrap_or(0) as usize;
        (0..n).map_while(move |i| {
            let e = at.checked_add(2 + 12 * i)?;
            Some((self.u16(e)?, self.u16(e + 2)?, self.u32(e + 4)?, e + 8))
        })
    }

    /// The offset of the IFD after the one at `at`, if any.
    fn next(&self, at: usize) -> Option<usize> {
        let n = self.u16(at)? as usize;
        let next = self.u32(at.checked_add(2 + 12 * n)?)? as usize;
        (next != 0).then_some(next)
    }

    /// IFD0 and the IFDs chained after it, each once.
    fn chain(&self, ifd0: usize) -> Vec<usize> {
        let mut seen = vec![ifd0];
        while seen.len() < MAX_IFDS {
            match seen.last().and_then(|&at| self.next(at)) {
                Some(next) if !seen.contains(&next) => seen.push(next),
                _ => break,
            }
        }
        seen
    }

    /// The value of a one-count SHORT or LONG entry.
    fn scalar(&self, typ: u16, count: u32, value: usize) -> Option<u32> {
        match (typ, count) {
            (3, 1) => self.u16(value).map(u32::from),
            (4 | 13, 1) => self.u32(value),
            _ => None,
        }
    }
}

/// Bytes per value of a TIFF field type; unknown types count as 1.
fn type_size(typ: u16) -> u64 {
    match typ {
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 => 8,
        _ => 1,
    }
}

/// Zeroes, in place, every GPS IFD that the IFD0 chain points at: its entries, their
/// out-of-line values and its entry count, so it reads as an empty IFD. Nothing moves, so
/// every other offset (the thumbnail's, the maker notes') stays valid. Returns whether
/// anything was zeroed.
pub fn zero_gps(data: &mut [u8]) -> Result<bool, Malformed> {
    let (tiff, ifd0) = Tiff::parse(data)?;
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for ifd in tiff.chain(ifd0) {
        for (tag, typ, count, value) in tiff.entries(ifd) {
            if tag != GPS_POINTER {
                continue;
            }
            let Some(gps) = tiff.scalar(typ, count, value).map(|v| v as usize) else {
                continue;
            };
            let mut entries = 0;
            for (_, typ, count, value) in tiff.entries(gps) {
                entries += 1;
                let size = type_size(typ).saturating_mul(u64::from(count));
                if size > 4 {
                    if let Some(at) = tiff.u32(value) {
                        let at = at as usize;
                        spans.push((at, at.saturating_add(size as usize)));
                    }
                }
            }
            // The count, the entries and the next-IFD offset.
            spans.push((gps, gps.saturating_add(2 + 12 * entries + 4)));
        }
    }
    let zeroed = !spans.is_empty();
    for (from, to) in spans {
        let to = to.min(data.len());
        if from < to {
            data[from..to].fill(0);
        }
    }
    Ok(zeroed)
}

/// IFD0's Orientation (1-8), if it has one.
pub fn orientation(data: &[u8]) -> Option<u16> {
    let (tiff, ifd0) = Tiff::parse(data).ok()?;
    let found = tiff
        .entries(ifd0)
        .find(|&(tag, typ, count, _)| tag == ORIENTATION && typ == 3 && count == 1);
    let (_, _, _, value) = found?;
    tiff.u16(value).filter(|o| (1..=8).contains(o))
}

/// A little-endian TIFF whose IFD0 holds only `orientation` (none: an empty IFD0).
pub fn minimal(orientation: Option<u16>) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    match orientation {
        Some(o) => {
            out.extend_from_slice(&1u16.to_le_bytes());
            out.extend_from_slice(&ORIENTATION.to_le_bytes());
            out.extend_from_slice(&3u16.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&o.to_le_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        None => out.extend_from_slice(&0u16.to_le_bytes()),
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

/// Where the TIFF starts: after an `Exif\0\0` prefix, which some writers put in PNG's eXIf
/// and WebP's EXIF too.
pub fn tiff_start(data: &[u8]) -> usize {
    if data.starts_with(b"Exif\0\0") {
        6
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A big-endian TIFF: IFD0 with Make, Orientation 6 and the GPS pointer; a GPS IFD with a
    /// latitude stored out of line.
    pub(crate) fn sample() -> Vec<u8> {
        let mut t = b"MM\0*".to_vec();
        t.extend_from_slice(&8u32.to_be_bytes());
        // IFD0 at 8: 3 entries -> 8 + 2 + 36 + 4 = 50.
        t.extend_from_slice(&3u16.to_be_bytes());
        for (tag, typ, count, value) in [
            (0x010Fu16, 2u16, 4u32, *b"Cam\0"),
            (ORIENTATION, 3, 1, [0, 6, 0, 0]),
            (GPS_POINTER, 4, 1, 50u32.to_be_bytes()),
        ] {
            t.extend_from_slice(&tag.to_be_bytes());
            t.extend_from_slice(&typ.to_be_bytes());
            t.extend_from_slice(&count.to_be_bytes());
            t.extend_from_slice(&value);
        }
        t.extend_from_slice(&0u32.to_be_bytes());
        // GPS IFD at 50: 1 entry -> 50 + 2 + 12 + 4 = 68; the rationals at 68.
        t.extend_from_slice(&1u16.to_be_bytes());
        t.extend_from_slice(&2u16.to_be_bytes());
        t.extend_from_slice(&5u16.to_be_bytes());
        t.extend_from_slice(&3u32.to_be_bytes());
        t.extend_from_slice(&68u32.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        for v in [52u32, 1, 31, 1, 1234, 100] {
            t.extend_from_slice(&v.to_be_bytes());
        }
        t
    }

    #[test]
    fn the_gps_ifd_is_zeroed_and_the_rest_kept() {
        let mut t = sample();
        let before = t.clone();
        assert_eq!(zero_gps(&mut t), Ok(true));
        assert_eq!(t.len(), before.len());
        assert_eq!(t[..50], before[..50], "IFD0 untouched");
        assert!(
            t[50..].iter().all(|&b| b == 0),
            "GPS IFD and its values zeroed"
        );
        assert_eq!(orientation(&t), Some(6));
    }

    #[test]
    fn the_orientation_survives_in_a_minimal_tiff() {
        let t = minimal(orientation(&sample()));
        assert_eq!(orientation(&t), Some(6));
        assert_eq!(minimal(None).len(), 14);
        assert_eq!(orientation(&minimal(None)), None);
    }

    #[test]
    fn garbage_and_truncations_never_panic() {
        assert_eq!(zero_gps(&mut []), Err(Malformed));
        assert_eq!(
            zero_gps(&mut b"MM\0*\xff\xff\xff\xff".to_vec()),
            Err(Malformed)
        );
        let full = sample();
        for cut in 0..full.len() {
            let mut t = full[..cut].to_vec();
            let _ = zero_gps(&mut t);
            let _ = orientation(&t);
        }
        // Every byte flipped in turn: offsets and counts pointing anywhere.
        for i in 0..full.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut t = full.clone();
                t[i] = v;
                let _ = zero_gps(&mut t);
                let _ = orientation(&t);
            }
        }
        // An IFD chain that loops on itself ends.
        let mut t = b"II*\0\x08\0\0\0\0\0\x08\0\0\0".to_vec();
        assert_eq!(zero_gps(&mut t), Ok(false));
    }
}
