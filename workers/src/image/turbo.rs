//! A small safe face on libjpeg-turbo's TurboJPEG 3 API, for decoding only.
//!
//! `turbojpeg-sys` builds the libjpeg-turbo 3.1 it bundles with CMake and NASM and links it
//! statically, so no system library is needed at run time. libjpeg-turbo reports errors by
//! `longjmp` back into its own `tj3*` functions, which then return -1: nothing unwinds through
//! Rust, and hostile bytes come back here as an [`Error`]. It opens no files and starts no
//! threads; memory is the caller's output buffer plus what [`Limits`] allows for its own.
//!
//! Public so that `examples/measure_jpeg.rs` can time the decoder on its own; the pipeline goes
//! through [`super::decode`].

use std::ffi::{c_int, CStr};
use std::ptr::NonNull;
use turbojpeg_sys as tj;

/// What went wrong, as libjpeg-turbo said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// libjpeg-turbo's own message.
    pub message: String,
    /// A warning (the data is damaged but a picture came out, e.g. a truncated file whose
    /// missing rows are grey) rather than a fatal error.
    pub warning: bool,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The colour space of the JPEG's own samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colorspace {
    Rgb,
    YCbCr,
    Gray,
    Cmyk,
    Ycck,
}

/// The frame header's facts, read without decoding any pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    pub colorspace: Colorspace,
    /// Bits per sample: 8 for nearly every JPEG, 12 for some medical and camera ones, 2 to 16
    /// for lossless ones.
    pub precision: u8,
    pub lossless: bool,
    pub progressive: bool,
    pub arithmetic: bool,
}

/// Bounds on what one decode may cost, beyond the output buffer the caller sizes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Refused in the header if width x height is over this.
    pub max_pixels: u64,
    /// libjpeg-turbo's own buffers (the whole-image coefficients of a progressive or
    /// arithmetic-coded JPEG): refused once over this, rounded down to whole MiB (at least 1).
    pub max_memory_bytes: u64,
    /// Progressive scans; each one is a pass over the whole coefficient buffer, so a JPEG with
    /// thousands of tiny scans is a denial of service. Encoders write about 10.
    pub max_scans: u32,
}

/// The packed pixel layout to decode into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rgb,
    Gray,
    /// The ink values as stored in the file: Adobe's files store them inverted, and telling
    /// which is the caller's business.
    Cmyk,
}

impl Format {
    pub fn channels(self) -> usize {
        match self {
            Format::Rgb => 3,
            Format::Gray => 1,
            Format::Cmyk => 4,
        }
    }

    fn code(self) -> c_int {
        match self {
            Format::Rgb => tj::TJPF_TJPF_RGB,
            Format::Gray => tj::TJPF_TJPF_GRAY,
            Format::Cmyk => tj::TJPF_TJPF_CMYK,
        }
    }
}

/// Decoded pixels: `width` x `height`, packed rows of `format`, one byte per sample (samples of
/// other precisions are rescaled to 0-255).
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub format: Format,
    pub data: Vec<u8>,
}

/// The length `len` becomes at `eighths`/8 scale, as libjpeg-turbo computes it (rounded up).
pub fn scaled(len: u32, eighths: u32) -> u32 {
    (u64::from(len) * u64::from(eighths)).div_ceil(8) as u32
}

/// One TurboJPEG decompression instance; not shared between threads.
pub struct Decompressor {
    handle: NonNull<std::ffi::c_void>,
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed exactly once.
        unsafe { tj::tj3Destroy(self.handle.as_ptr()) }
    }
}

impl Decompressor {
    pub fn new(limits: &Limits) -> Result<Self, Error> {
        // SAFETY: tj3Init has no preconditions; a null return is handled.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as c_int) };
        let handle = NonNull::new(handle).ok_or_else(|| Error {
            message: "TurboJPEG could not start (out of memory?)".into(),
            warning: false,
        })?;
        let mut d = Decompressor { handle };
        d.set_max_memory(limits.max_memory_bytes)?;
        // 0 would mean no limit; the header check refuses a zero-pixel image anyway.
        let pixels = limits.max_pixels.clamp(1, c_int::MAX as u64) as c_int;
        d.set(tj::TJPARAM_TJPARAM_MAXPIXELS, pixels)?;
        let scans = limits.max_scans.clamp(1, c_int::MAX as u32) as c_int;
        d.set(tj::TJPARAM_TJPARAM_SCANLIMIT, scans)?;
        // Warnings are judged by the caller once the decode is over (see `Error::warning`).
        d.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 0)?;
        Ok(d)
    }

    /// Lowers (or raises) [`Limits::max_memory_bytes`], e.g. once the caller knows what its
    /// own buffers take.
    pub fn set_max_memory(&mut self, bytes: u64) -> Result<(), Error> {
        let mib = (bytes >> 20).clamp(1, c_int::MAX as u64) as c_int;
        self.set(tj::TJPARAM_TJPARAM_MAXMEMORY, mib)
    }

    fn set(&mut self, param: tj::TJPARAM, value: c_int) -> Result<(), Error> {
        // SAFETY: a live handle; tj3Set validates the parameter and value.
        let rc = unsafe { tj::tj3Set(self.handle.as_ptr(), param as c_int, value) };
        if rc == 0 {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn get(&mut self, param: tj::TJPARAM) -> c_int {
        // SAFETY: a live handle; an unknown parameter returns -1.
        unsafe { tj::tj3Get(self.handle.as_ptr(), param as c_int) }
    }

    fn error(&mut self) -> Error {
        // SAFETY: a live handle; the string is NUL-terminated and owned by the handle, copied
        // out before any other call can change it.
        let (message, code) = unsafe {
            let s = tj::tj3GetErrorStr(self.handle.as_ptr());
            let message = if s.is_null() {
                "unknown TurboJPEG error".to_string()
            } else {
                CStr::from_ptr(s).to_string_lossy().into_owned()
            };
            (message, tj::tj3GetErrorCode(self.handle.as_ptr()))
        };
        Error {
            message,
            warning: code == tj::TJERR_TJERR_WARNING as c_int,
        }
    }

    /// Reads the headers (up to the first scan) of `jpeg`; no pixel is decoded. A warning (such
    /// as bytes between segments) comes back beside the header, for the caller to judge as with
    /// [`Self::decode`].
    pub fn read_header(&mut self, jpeg: &[u8]) -> Result<(Header, Option<Error>), Error> {
        // SAFETY: the pointer and length describe `jpeg`, which outlives the call and is only
        // read.
        let rc = unsafe {
            tj::tj3DecompressHeader(self.handle.as_ptr(), jpeg.as_ptr(), jpeg.len() as _)
        };
        let warning = match rc {
            0 => None,
            _ => match self.error() {
                e if e.warning => Some(e),
                e => return Err(e),
            },
        };
        let colorspace = match self.get(tj::TJPARAM_TJPARAM_COLORSPACE) as tj::TJCS {
            tj::TJCS_TJCS_RGB => Colorspace::Rgb,
            tj::TJCS_TJCS_YCbCr => Colorspace::YCbCr,
            tj::TJCS_TJCS_GRAY => Colorspace::Gray,
            tj::TJCS_TJCS_CMYK => Colorspace::Cmyk,
            tj::TJCS_TJCS_YCCK => Colorspace::Ycck,
            other => {
                return Err(Error {
                    message: format!("unknown JPEG colour space {other}"),
                    warning: false,
                })
            }
        };
        let dimension = |v: c_int| u32::try_from(v).unwrap_or(0);
        let header = Header {
            width: dimension(self.get(tj::TJPARAM_TJPARAM_JPEGWIDTH)),
            height: dimension(self.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT)),
            colorspace,
            precision: u8::try_from(self.get(tj::TJPARAM_TJPARAM_PRECISION)).unwrap_or(0),
            lossless: self.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 1,
            progressive: self.get(tj::TJPARAM_TJPARAM_PROGRESSIVE) == 1,
            arithmetic: self.get(tj::TJPARAM_TJPARAM_ARITHMETIC) == 1,
        };
        Ok((header, warning))
    }

    /// Decodes `jpeg` (whose header is `header`, from [`Self::read_header`] on the same bytes) at
    /// `eighths`/8 scale into `format`. Lossless JPEGs only decode at 8/8. The output buffer is
    /// allocated here: the caller checks its size ([`Self::output_bytes`]) first.
    ///
    /// Damaged data that still gave a whole picture comes back as pixels plus the warning, for
    /// the caller to judge. Its message is libjpeg-turbo's first warning, or the fatal error
    /// that came after it (libjpeg-turbo then still calls it a warning): accept only a warning
    /// recognised by its message.
    pub fn decode(
        &mut self,
        jpeg: &[u8],
        header: &Header,
        eighths: u32,
        format: Format,
    ) -> Result<(Pixels, Option<Error>), Error> {
        let fail = |message: String| Error {
            message,
            warning: false,
        };
        if !(1..=8).contains(&eighths) || (header.lossless && eighths != 8) {
            return Err(fail(format!("cannot decode at {eighths}/8 scale")));
        }
        let g = gcd(eighths, 8);
        let factor = tj::tjscalingfactor {
            num: (eighths / g) as c_int,
            denom: (8 / g) as c_int,
        };
        // SAFETY: a live handle; the factor is one of those tj3GetScalingFactors lists.
        if unsafe { tj::tj3SetScalingFactor(self.handle.as_ptr(), factor) } != 0 {
            return Err(self.error());
        }
        let (width, height) = (
            scaled(header.width, eighths),
            scaled(header.height, eighths),
        );
        let row = width as usize * format.channels();
        let samples = row * height as usize;
        let pitch = c_int::try_from(row).map_err(|_| fail("rows too long".into()))?;
        let (handle, buf, len) = (self.handle.as_ptr(), jpeg.as_ptr(), jpeg.len() as _);
        // SAFETY, for each arm: the output buffer holds `height` rows of `pitch` samples of the
        // requested format at the scale just set, which is what tj3Decompress* writes for the
        // header already read from these same bytes; the input is only read.
        let (rc, data) = match header.precision {
            8 => {
                let mut out = vec![0u8; samples];
                let rc = unsafe {
                    tj::tj3Decompress8(handle, buf, len, out.as_mut_ptr(), pitch, format.code())
                };
                (rc, out)
            }
            2..=7 => {
                // Lossless with fewer bits: decoded as 8-bit samples holding smaller values.
                let mut out = vec![0u8; samples];
                let rc = unsafe {
                    tj::tj3Decompress8(handle, buf, len, out.as_mut_ptr(), pitch, format.code())
                };
                (rc, widen(&out, (1u32 << header.precision) - 1))
            }
            9..=12 => {
                let mut out = vec![0i16; samples];
                let rc = unsafe {
                    tj::tj3Decompress12(handle, buf, len, out.as_mut_ptr(), pitch, format.code())
                };
                let max = (1u32 << header.precision) - 1;
                (rc, narrow(out.iter().map(|&s| s.max(0) as u32), max))
            }
            13..=16 if header.lossless => {
                let mut out = vec![0u16; samples];
                let rc = unsafe {
                    tj::tj3Decompress16(handle, buf, len, out.as_mut_ptr(), pitch, format.code())
                };
                let max = (1u32 << header.precision) - 1;
                (rc, narrow(out.iter().map(|&s| u32::from(s)), max))
            }
            other => return Err(fail(format!("{other}-bit samples are not supported"))),
        };
        let warning = match rc {
            0 => None,
            _ => match self.error() {
                e if e.warning => Some(e),
                e => return Err(e),
            },
        };
        let pixels = Pixels {
            width,
            height,
            format,
            data,
        };
        Ok((pixels, warning))
    }

    /// The bytes [`Self::decode`] allocates for `header` at `eighths`/8 in `format` (twice per
    /// sample while samples of more than 8 bits are narrowed).
    pub fn output_bytes(header: &Header, eighths: u32, format: Format) -> u64 {
        let per_sample = if header.precision > 8 { 3 } else { 1 };
        u64::from(scaled(header.width, eighths))
            * u64::from(scaled(header.height, eighths))
            * format.channels() as u64
            * per_sample
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn narrow(samples: impl Iterator<Item = u32>, max: u32) -> Vec<u8> {
    samples
        .map(|s| ((s.min(max) * 255 + max / 2) / max) as u8)
        .collect()
}

fn widen(samples: &[u8], max: u32) -> Vec<u8> {
    narrow(samples.iter().map(|&s| u32::from(s)), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_rounds_up_like_tjscaled() {
        assert_eq!(scaled(6000, 2), 1500);
        assert_eq!(scaled(1601, 7), 1401);
        assert_eq!(scaled(5, 2), 2);
        assert_eq!(scaled(1, 1), 1);
        assert_eq!(scaled(u32::MAX, 8), u32::MAX);
    }

    #[test]
    fn samples_of_other_precisions_span_0_to_255() {
        assert_eq!(narrow([0, 2048, 4095].into_iter(), 4095), [0, 128, 255]);
        assert_eq!(narrow([0, 65535].into_iter(), 65535), [0, 255]);
        assert_eq!(widen(&[0, 1, 3], 3), [0, 85, 255]);
        // Out-of-range samples of a hostile file are clamped, never wrapped.
        assert_eq!(narrow([9000].into_iter(), 4095), [255]);
    }

    #[test]
    fn every_eighth_is_a_factor_libjpeg_turbo_accepts() {
        let limits = Limits {
            max_pixels: 1 << 20,
            max_memory_bytes: 1 << 26,
            max_scans: 100,
        };
        let mut d = Decompressor::new(&limits).unwrap();
        for eighths in 1..=8 {
            let g = gcd(eighths, 8);
            let factor = tj::tjscalingfactor {
                num: (eighths / g) as c_int,
                denom: (8 / g) as c_int,
            };
            // SAFETY: a live handle.
            let rc = unsafe { tj::tj3SetScalingFactor(d.handle.as_ptr(), factor) };
            assert_eq!(rc, 0, "{eighths}/8: {}", d.error());
        }
    }

    #[test]
    fn garbage_is_a_fatal_error_not_a_crash() {
        let limits = Limits {
            max_pixels: 1 << 20,
            max_memory_bytes: 1 << 26,
            max_scans: 100,
        };
        let mut d = Decompressor::new(&limits).unwrap();
        for bytes in [
            &b""[..],
            b"\xff\xd8",
            b"\xff\xd8\xff\xc0\x00\x02",
            b"not a jpeg",
        ] {
            let e = d.read_header(bytes).unwrap_err();
            assert!(!e.message.is_empty());
        }
    }
}
