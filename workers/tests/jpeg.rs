//! The JPEG path (libjpeg-turbo through `image::turbo`): the scale it decodes at, the kinds of
//! JPEG it takes, and the limits it keeps. The inputs are made here with libjpeg-turbo's own
//! encoder, which can write what the fixtures' ImageMagick JPEGs are not: progressive,
//! arithmetic-coded, 12-bit and lossless files.

mod common;
use common::fixture;
use satchel_workers::image::{self as pipeline, decode};
use satchel_workers::preset::ImagePreset;
use satchel_workers::{Presets, Processed, WorkerError};
use std::ffi::c_int;
use std::path::Path;
use turbojpeg_sys as tj;

fn preset() -> ImagePreset {
    Presets::default().image
}

fn code<T>(result: Result<T, WorkerError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => {
            eprintln!("{}: {e}", e.code());
            e.code()
        }
    }
}

/// A smooth gradient (dark red at the left, bright at the right) with some texture.
fn gradient(w: u32, h: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let r = (x * 255 / (w - 1)) as u8;
            let g = (y * 255 / (h - 1)) as u8;
            px.extend_from_slice(&[r, g, ((x ^ y) & 63) as u8 + 60]);
        }
    }
    px
}

/// Samples as one of libjpeg-turbo's `tj3Compress*` take them.
enum Samples {
    Eight(Vec<u8>),
    Twelve(Vec<i16>),
    Sixteen(Vec<u16>),
}

/// Encodes with libjpeg-turbo: `params` are TurboJPEG parameters set after quality 90 and
/// 4:2:0 (or grey, for one channel).
fn encode(
    w: u32,
    h: u32,
    channels: u32,
    samples: Samples,
    params: &[(tj::TJPARAM, c_int)],
) -> Vec<u8> {
    let format = if channels == 1 {
        tj::TJPF_TJPF_GRAY
    } else {
        tj::TJPF_TJPF_RGB
    };
    let subsamp = if channels == 1 {
        tj::TJSAMP_TJSAMP_GRAY
    } else {
        tj::TJSAMP_TJSAMP_420
    };
    // SAFETY: a fresh handle, source buffers of w x h x channels samples, and an output buffer
    // that libjpeg-turbo allocates and that is freed with tj3Free after being copied.
    unsafe {
        let handle = tj::tj3Init(tj::TJINIT_TJINIT_COMPRESS as c_int);
        assert!(!handle.is_null());
        let set = |p: tj::TJPARAM, v: c_int| assert_eq!(tj::tj3Set(handle, p as c_int, v), 0);
        set(tj::TJPARAM_TJPARAM_QUALITY, 90);
        set(tj::TJPARAM_TJPARAM_SUBSAMP, subsamp);
        for &(p, v) in params {
            set(p, v);
        }
        let mut out: *mut u8 = std::ptr::null_mut();
        let mut len: tj::size_t = 0;
        let (w, h) = (w as c_int, h as c_int);
        let rc = match &samples {
            Samples::Eight(s) => {
                tj::tj3Compress8(handle, s.as_ptr(), w, 0, h, format, &mut out, &mut len)
            }
            Samples::Twelve(s) => {
                tj::tj3Compress12(handle, s.as_ptr(), w, 0, h, format, &mut out, &mut len)
            }
            Samples::Sixteen(s) => {
                tj::tj3Compress16(handle, s.as_ptr(), w, 0, h, format, &mut out, &mut len)
            }
        };
        let message = std::ffi::CStr::from_ptr(tj::tj3GetErrorStr(handle));
        assert_eq!(rc, 0, "{message:?}");
        let bytes = std::slice::from_raw_parts(out, len as usize).to_vec();
        tj::tj3Free(out.cast());
        tj::tj3Destroy(handle);
        bytes
    }
}

fn rgb_jpeg(w: u32, h: u32, params: &[(tj::TJPARAM, c_int)]) -> Vec<u8> {
    encode(w, h, 3, Samples::Eight(gradient(w, h)), params)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn process(input: &Path, preset: &ImagePreset) -> Result<Processed, WorkerError> {
    let out = tempfile::tempdir().unwrap();
    pipeline::process(input, preset, out.path(), None)
}

fn red_at(img: &image::DynamicImage, fx: f32) -> u8 {
    let rgb = img.to_rgb8();
    let x = ((rgb.width() as f32 * fx) as u32).min(rgb.width() - 1);
    rgb.get_pixel(x, rgb.height() / 2)[0]
}

#[test]
fn the_decode_takes_the_smallest_eighth_that_keeps_min_edge() {
    let dir = tempfile::tempdir().unwrap();
    // (size, the decoded size for min_edge 1280): 4032 takes 3/8 (1512) rather than 1/2
    // (2016); 1600 is decoded whole, as 7/8 costs more than that.
    for ((w, h), decoded) in [
        ((640, 480), (640, 480)),
        ((1600, 1200), (1600, 1200)),
        ((3024, 4032), (1134, 1512)),
        ((4032, 3024), (1512, 1134)),
        ((2600, 1800), (1300, 900)),
    ] {
        let input = write(dir.path(), "in.jpg", &rgb_jpeg(w, h, &[]));
        let d = decode::decode(&input, &preset(), 1280).unwrap();
        assert_eq!(
            (d.width, d.height),
            (w, h),
            "the original's size is reported"
        );
        assert_eq!((d.image.width(), d.image.height()), decoded, "{w}x{h}");
        assert!(d.image.width().max(d.image.height()) >= 1280.min(w.max(h)));
    }

    let input = write(dir.path(), "in.jpg", &rgb_jpeg(4032, 3024, &[]));
    let p = process(&input, &preset()).unwrap();
    let size = |name: &str| {
        let v = p.variants.iter().find(|v| v.name == name).unwrap();
        (v.width.unwrap(), v.height.unwrap())
    };
    assert_eq!(
        (p.metadata.width, p.metadata.height),
        (Some(4032), Some(3024))
    );
    assert_eq!(size("preview"), (1280, 960));
    assert_eq!(size("thumbnail"), (320, 240));
    assert_eq!(size("blurred"), (64, 48));
}

#[test]
fn progressive_and_arithmetic_coded_jpegs_decode() {
    let dir = tempfile::tempdir().unwrap();
    for (name, params) in [
        ("progressive", vec![(tj::TJPARAM_TJPARAM_PROGRESSIVE, 1)]),
        ("arithmetic", vec![(tj::TJPARAM_TJPARAM_ARITHMETIC, 1)]),
        (
            "progressive arithmetic",
            vec![
                (tj::TJPARAM_TJPARAM_PROGRESSIVE, 1),
                (tj::TJPARAM_TJPARAM_ARITHMETIC, 1),
            ],
        ),
    ] {
        let input = write(dir.path(), "in.jpg", &rgb_jpeg(2600, 1800, &params));
        let d = decode::decode(&input, &preset(), 1280).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((d.image.width(), d.image.height()), (1300, 900), "{name}");
        // The gradient survives the scaled decode.
        assert!(
            red_at(&d.image, 0.02) < 40 && red_at(&d.image, 0.98) > 215,
            "{name}"
        );
        process(&input, &preset()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn twelve_bit_and_lossless_jpegs_decode_to_eight_bits() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (400, 300);
    let eight = gradient(w, h);
    let twelve: Vec<i16> = eight.iter().map(|&s| i16::from(s) << 4).collect();
    let input = write(
        dir.path(),
        "12bit.jpg",
        &encode(
            w,
            h,
            3,
            Samples::Twelve(twelve),
            &[(tj::TJPARAM_TJPARAM_PRECISION, 12)],
        ),
    );
    let d = decode::decode(&input, &preset(), 64).unwrap();
    // Scaled (1/4 keeps 100 >= 64) like an 8-bit one.
    assert_eq!((d.image.width(), d.image.height()), (100, 75));
    assert!(red_at(&d.image, 0.02) < 30 && red_at(&d.image, 0.98) > 225);

    // Lossless 16-bit grey, as medical scanners write: never scaled, high bits kept.
    let grey: Vec<u16> = (0..w * h)
        .map(|i| ((i % w) * 65535 / (w - 1)) as u16)
        .collect();
    let input = write(
        dir.path(),
        "lossless.jpg",
        &encode(
            w,
            h,
            1,
            Samples::Sixteen(grey),
            &[
                (tj::TJPARAM_TJPARAM_LOSSLESS, 1),
                (tj::TJPARAM_TJPARAM_PRECISION, 16),
            ],
        ),
    );
    let d = decode::decode(&input, &preset(), 64).unwrap();
    assert_eq!((d.image.width(), d.image.height()), (400, 300));
    let luma = d.image.as_luma8().expect("grey stays one channel");
    assert_eq!(luma.get_pixel(0, 10)[0], 0);
    assert_eq!(luma.get_pixel(w - 1, 10)[0], 255);
    assert!(luma.get_pixel(w / 2, 10)[0].abs_diff(128) <= 1);
    process(&input, &preset()).unwrap();
}

#[test]
fn a_progressive_jpeg_over_the_memory_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 2600x1800 4:2:0 keeps about 14 MB of coefficients while its scans arrive; a 1300x900
    // RGB output is 3.5 MB.
    let mut p = preset();
    p.max_alloc_bytes = 8 << 20;
    let baseline = write(dir.path(), "baseline.jpg", &rgb_jpeg(2600, 1800, &[]));
    assert_eq!(code(decode::decode(&baseline, &p, 1280)), "ok");
    let progressive = write(
        dir.path(),
        "progressive.jpg",
        &rgb_jpeg(2600, 1800, &[(tj::TJPARAM_TJPARAM_PROGRESSIVE, 1)]),
    );
    assert_eq!(
        code(decode::decode(&progressive, &p, 1280)),
        "too_many_pixels"
    );
    // The output itself counts too: 2600x1800 RGB at 8/8 is 14 MB.
    assert_eq!(code(decode::decode(&baseline, &p, 2600)), "too_many_pixels");
    assert_eq!(code(decode::decode(&progressive, &preset(), 1280)), "ok");
}

/// Splits a JPEG into (everything before the first SOS, the scans, the EOI).
fn scans(jpeg: &[u8]) -> (usize, usize) {
    let sos = jpeg.windows(2).position(|m| m == [0xff, 0xda]).unwrap();
    assert_eq!(&jpeg[jpeg.len() - 2..], [0xff, 0xd9]);
    (sos, jpeg.len() - 2)
}

#[test]
fn a_progressive_jpeg_with_too_many_scans_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = rgb_jpeg(256, 256, &[(tj::TJPARAM_TJPARAM_PROGRESSIVE, 1)]);
    let (first, eoi) = scans(&jpeg);
    // The last scan (an AC refinement) again and again: each one is another pass.
    let last = first
        + jpeg[first..eoi]
            .windows(2)
            .rposition(|m| m == [0xff, 0xda])
            .unwrap();
    let mut bomb = jpeg[..eoi].to_vec();
    for _ in 0..200 {
        bomb.extend_from_slice(&jpeg[last..eoi]);
    }
    bomb.extend_from_slice(&[0xff, 0xd9]);
    let input = write(dir.path(), "scans.jpg", &bomb);
    let err = decode::decode(&input, &preset(), 64)
        .err()
        .expect("refused");
    assert_eq!(err.code(), "decode_failed");
    assert!(err.to_string().contains("scans"), "{err}");
}

#[test]
fn extraneous_bytes_between_segments_are_tolerated_but_truncation_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = rgb_jpeg(640, 480, &[]);
    // Padding before the scan, as some cameras write: libjpeg-turbo warns and decodes.
    let (sos, _) = scans(&jpeg);
    let mut padded = jpeg[..sos].to_vec();
    padded.extend_from_slice(&[0, 0, 0, 0]);
    padded.extend_from_slice(&jpeg[sos..]);
    let input = write(dir.path(), "padded.jpg", &padded);
    assert_eq!(code(decode::decode(&input, &preset(), 1280)), "ok");

    // Cut inside the scan: libjpeg-turbo would fill the rest grey and warn; that is a failure.
    for cut in [sos + 100, jpeg.len() / 2, jpeg.len() - 2] {
        let input = write(dir.path(), "cut.jpg", &jpeg[..cut]);
        assert_eq!(
            code(decode::decode(&input, &preset(), 1280)),
            "decode_failed",
            "{cut}"
        );
    }
    assert_eq!(
        code(decode::decode(&fixture("truncated.jpg"), &preset(), 1280)),
        "decode_failed"
    );
}

#[test]
fn the_header_is_checked_before_any_pixel_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    // A frame header claiming 30000x30000 (900 MP) in front of a tiny scan: refused from the
    // numbers, fast, and with the limits' code rather than a decoder's complaint.
    let mut jpeg = rgb_jpeg(16, 16, &[]);
    let sof = jpeg.windows(2).position(|m| m == [0xff, 0xc0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0x75, 0x30, 0x75, 0x30]);
    let input = write(dir.path(), "flood.jpg", &jpeg);
    let started = std::time::Instant::now();
    assert_eq!(
        code(decode::decode(&input, &preset(), 1280)),
        "too_many_pixels"
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(200));

    let mut p = preset();
    p.max_dimension = 2000;
    let input = write(dir.path(), "wide.jpg", &rgb_jpeg(2001, 100, &[]));
    assert_eq!(code(decode::decode(&input, &p, 64)), "too_many_pixels");
    let mut p = preset();
    p.max_pixels = 2000 * 100 - 1;
    let input = write(dir.path(), "many.jpg", &rgb_jpeg(2000, 100, &[]));
    assert_eq!(code(decode::decode(&input, &p, 64)), "too_many_pixels");
}

#[test]
fn exif_orientation_is_read_past_other_segments() {
    // The fixture's APP1 comes first; here an APP0 and a COM come before it, and the Exif says
    // "rotate 90" (6): the 64x32 picture is reported and decoded as 32x64.
    let dir = tempfile::tempdir().unwrap();
    let jpeg = rgb_jpeg(64, 32, &[]);
    let tiff: &[u8] = &[
        b'M', b'M', 0, 42, 0, 0, 0, 8, // big-endian TIFF, IFD0 at 8
        0, 1, // one entry
        0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, // Orientation, SHORT, 1, value 6
        0, 0, 0, 0, // no next IFD
    ];
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(tiff);
    let segment = |marker: u8, data: &[u8]| {
        let mut s = vec![0xff, marker];
        s.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(data);
        s
    };
    let mut rotated = jpeg[..2].to_vec();
    rotated.extend(segment(0xfe, b"a comment"));
    rotated.extend(segment(0xe1, &app1));
    rotated.extend_from_slice(&jpeg[2..]);
    let input = write(dir.path(), "rotated.jpg", &rotated);
    let d = decode::decode(&input, &preset(), 1280).unwrap();
    assert_eq!((d.width, d.height), (32, 64));
    assert_eq!((d.image.width(), d.image.height()), (32, 64));
}
