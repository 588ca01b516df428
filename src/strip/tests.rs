//! The filters over the committed fixtures, in every chunking, and over what an attacker
//! sends: truncations, flipped bytes, lengths that claim more than there is.

use super::*;
use crate::domain::sniff::sniff;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The filter's output for `input` fed `step` bytes at a time.
fn run(policy: OriginalMetadata, input: &[u8], step: usize) -> Vec<u8> {
    let Some(mut filter) = Filter::new(policy, &sniff(input)) else {
        return input.to_vec();
    };
    let mut out = Vec::new();
    for chunk in input.chunks(step.max(1)) {
        filter.push(chunk, &mut out);
    }
    filter.finish(&mut out);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const GPS_PHOTOS: [&str; 4] = [
    "photo-gps.jpg",
    "photo-gps.png",
    "photo-gps.webp",
    "photo-gps.heic",
];

#[test]
fn every_chunking_gives_the_same_bytes() {
    for name in GPS_PHOTOS
        .into_iter()
        .chain(["photo.jpg", "cmyk.jpg", "anim.gif"])
    {
        let input = fixture(name);
        for policy in [OriginalMetadata::StripLocation, OriginalMetadata::StripAll] {
            let whole = run(policy, &input, input.len());
            for step in [1, 2, 3, 7, 64, 4096] {
                assert!(
                    run(policy, &input, step) == whole,
                    "{name} {policy:?} by {step}"
                );
            }
        }
    }
}

#[test]
fn location_goes_and_lengths_stay_where_offsets_matter() {
    for name in GPS_PHOTOS {
        let input = fixture(name);
        assert!(contains(&input, b"Berlin"), "{name} has the XMP city");
        let out = run(OriginalMetadata::StripLocation, &input, 4096);
        assert!(!contains(&out, b"Berlin"), "{name} keeps the XMP city");
        assert!(contains(&out, b"SatchelCam"), "{name} lost its Make");
        if !name.ends_with(".png") {
            assert_eq!(out.len(), input.len(), "{name}: in place");
        }
    }
    let out = run(OriginalMetadata::StripAll, &fixture("photo-gps.jpg"), 4096);
    assert!(!contains(&out, b"SatchelCam") && contains(&out, b"ICC_PROFILE"));
}

#[test]
fn keep_files_and_other_kinds_are_never_filtered() {
    let jpeg = sniff(&fixture("photo-gps.jpg"));
    assert!(Filter::new(OriginalMetadata::Keep, &jpeg).is_none());
    for name in ["voice.ogg", "clip.mp4", "not-an-image.txt", "anim.gif"] {
        let s = sniff(&fixture(name));
        assert!(
            Filter::new(OriginalMetadata::StripAll, &s).is_none(),
            "{name}"
        );
    }
}

#[test]
fn truncated_and_mutated_inputs_never_panic_or_grow() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in GPS_PHOTOS {
        let input = fixture(name);
        for policy in [OriginalMetadata::StripLocation, OriginalMetadata::StripAll] {
            for cut in (0..input.len()).step_by(97) {
                let out = run(policy, &input[..cut], 512);
                assert!(out.len() <= cut.max(64), "{name} cut at {cut}");
            }
            for _ in 0..300 {
                let mut bytes = input.clone();
                for _ in 0..1 + next() % 8 {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
                let _ = run(policy, &bytes, 1 + (next() as usize) % 5000);
            }
        }
    }
}

#[test]
fn a_heic_loses_its_gps_ifd_and_keeps_its_orientation_in_place() {
    let input = fixture("photo-gps.heic");
    // GPSLatitude 52/1 31/1 12/1, big-endian as exiftool writes HEIC's EXIF.
    let latitude = b"\0\0\0\x34\0\0\0\x01\0\0\0\x1f\0\0\0\x01";
    assert!(contains(&input, latitude));
    let out = run(OriginalMetadata::StripLocation, &input, 4096);
    assert_eq!(out.len(), input.len());
    assert!(!contains(&out, latitude));
    assert!(contains(&out, b"SatchelCam") && !contains(&out, b"Berlin"));
    // Only the EXIF and XMP items changed: the coded image is where iloc says, untouched.
    let changed: Vec<usize> = (0..input.len()).filter(|&i| input[i] != out[i]).collect();
    let (first, last) = (changed[0], changed[changed.len() - 1]);
    assert!(
        first > input.windows(4).position(|w| w == b"mdat").unwrap(),
        "meta untouched"
    );
    assert!(last - first > 40_000, "XMP before the image, EXIF after it");

    let all = run(OriginalMetadata::StripAll, &input, 4096);
    assert_eq!(all.len(), input.len());
    assert!(!contains(&all, b"SatchelCam") && !contains(&all, latitude));
    // The Orientation (6) stays, in a minimal little-endian TIFF.
    assert!(contains(
        &all,
        b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0"
    ));
}

#[test]
fn a_heic_whose_meta_comes_late_or_is_broken_passes_unchanged() {
    let input = fixture("photo-gps.heic");
    // mdat before meta: not held, stored as sent.
    let meta_at = input.windows(4).position(|w| w == b"meta").unwrap() - 4;
    let mdat_at = input.windows(4).position(|w| w == b"mdat").unwrap() - 4;
    let mut late = input[..meta_at].to_vec();
    late.extend_from_slice(&input[mdat_at..]);
    late.extend_from_slice(&input[meta_at..mdat_at]);
    assert_eq!(run(OriginalMetadata::StripLocation, &late, 4096), late);
    // A meta box claiming more than the cap.
    let mut huge = input.clone();
    huge[meta_at..meta_at + 4].copy_from_slice(&(heif::HEAD_CAP as u32 + 1).to_be_bytes());
    assert_eq!(run(OriginalMetadata::StripLocation, &huge, 4096), huge);
}

#[test]
fn a_jpeg_segment_longer_than_the_file_is_dropped() {
    let mut input = b"\xff\xd8\xff\xe1\xff\xf0Exif\0\0MM\0*".to_vec();
    input.extend_from_slice(&[0x47; 100]);
    let out = run(OriginalMetadata::StripLocation, &input, 16);
    assert_eq!(out, b"\xff\xd8");
}

#[test]
fn a_png_metadata_chunk_over_the_cap_is_skipped_unread() {
    let mut input = b"\x89PNG\r\n\x1a\n".to_vec();
    input.extend_from_slice(&100_000_000u32.to_be_bytes());
    input.extend_from_slice(b"eXIf");
    input.extend_from_slice(&[0x47; 10_000]);
    let mut filter = Filter::new(OriginalMetadata::StripLocation, &sniff(&input)).unwrap();
    let mut out = Vec::new();
    filter.push(&input, &mut out);
    let Filter::Png(png) = &filter else {
        unreachable!()
    };
    assert!(matches!(png.held(), 0), "nothing held");
    filter.finish(&mut out);
    assert_eq!(out, b"\x89PNG\r\n\x1a\n");
}
