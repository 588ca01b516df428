//! XMP packets: whether one says where a photo was taken, and an empty packet to put in its
//! place without changing any length.

/// Local names of location properties whatever prefix their namespace is bound to
/// (`photoshop:City`, `Iptc4xmpCore:Location`, `Iptc4xmpExt:LocationShown`, ...); anything
/// that says `GPS` in any case (`exif:GPSLatitude`, `drone-dji:GpsLongitude`) counts too.
const LOCATION_NAMES: &[&[u8]] = &[
    b":City",
    b":State",
    b":Country",
    b":Location",
    b":Sublocation",
    b":ProvinceState",
    b":WorldRegion",
];

/// Whether `packet` holds a location property. Conservative: a mere mention is enough.
pub fn has_location(packet: &[u8]) -> bool {
    let gps = packet.windows(3).any(|w| w.eq_ignore_ascii_case(b"gps"));
    gps || LOCATION_NAMES
        .iter()
        .any(|name| packet.windows(name.len()).any(|w| w == *name))
}

/// A well-formed XMP packet that says nothing.
pub const EMPTY_PACKET: &[u8] =
    b"<?xpacket begin=\"\xef\xbb\xbf\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\
<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"/>";
const PACKET_END: &[u8] = b"<?xpacket end=\"w\"?>";

/// Overwrites `packet` with an empty packet padded with spaces (XMP's own padding) to the
/// same length; one too short for that becomes all spaces.
pub fn blank(packet: &mut [u8]) {
    let room = EMPTY_PACKET.len() + PACKET_END.len();
    if packet.len() < room {
        packet.fill(b' ');
        return;
    }
    let (head, rest) = packet.split_at_mut(EMPTY_PACKET.len());
    head.copy_from_slice(EMPTY_PACKET);
    let padding = rest.len() - PACKET_END.len();
    rest[..padding].fill(b' ');
    rest[padding..].copy_from_slice(PACKET_END);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_properties_are_found_under_any_prefix() {
        assert!(has_location(b"<rdf:li exif:GPSLatitude=\"52,31N\"/>"));
        assert!(has_location(b"<ps:City>Berlin</ps:City>"));
        assert!(has_location(
            b"<drone-dji:GpsLongitude>13.4</drone-dji:GpsLongitude>"
        ));
        assert!(!has_location(b"<dc:creator>Someone</dc:creator>"));
    }

    #[test]
    fn a_blanked_packet_keeps_its_length_and_says_nothing() {
        let mut p = vec![b'x'; 300];
        blank(&mut p);
        assert_eq!(p.len(), 300);
        assert!(p.starts_with(EMPTY_PACKET) && p.ends_with(PACKET_END));
        assert!(!has_location(&p));
        let mut short = vec![b'x'; 10];
        blank(&mut short);
        assert_eq!(short, vec![b' '; 10]);
    }
}
