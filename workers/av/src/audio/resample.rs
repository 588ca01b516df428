//! Bringing mono samples to 48 kHz, the rate Opus encodes at, with FFmpeg's swresample.

use crate::WorkerError;
use ffmpeg_next::ffi;
use std::ptr;

pub const OPUS_RATE: u32 = 48_000;

pub fn to_opus_rate(samples: Vec<f32>, rate: u32) -> Result<Vec<f32>, WorkerError> {
    if rate == OPUS_RATE || samples.is_empty() {
        return Ok(samples);
    }
    let too_long = || WorkerError::DecodeFailed("too many samples to resample".into());
    let in_count = i32::try_from(samples.len()).map_err(|_| too_long())?;
    let expected = samples.len() as u64 * u64::from(OPUS_RATE) / u64::from(rate);
    // Room for the filter's tail on flush.
    let capacity = usize::try_from(expected).map_err(|_| too_long())? + 1024;
    let out_count = i32::try_from(capacity).map_err(|_| too_long())?;
    let mut out: Vec<f32> = Vec::with_capacity(capacity);

    // SAFETY: swr reads `in_count` packed f32 samples from `samples` and writes at most
    // `out_count` (the capacity of `out`) before `set_len`; the context is freed on every path.
    unsafe {
        let layout = ffi::AV_CH_LAYOUT_MONO as i64;
        let fmt = ffi::AVSampleFormat::AV_SAMPLE_FMT_FLT;
        let mut swr = ffi::swr_alloc_set_opts(
            ptr::null_mut(),
            layout,
            fmt,
            OPUS_RATE as i32,
            layout,
            fmt,
            rate as i32,
            0,
            ptr::null_mut(),
        );
        if swr.is_null() || ffi::swr_init(swr) < 0 {
            ffi::swr_free(&mut swr);
            return Err(WorkerError::DecodeFailed(format!(
                "cannot resample from {rate} Hz"
            )));
        }
        let mut in_ptr = samples.as_ptr() as *const u8;
        let mut out_ptr = out.as_mut_ptr() as *mut u8;
        let written = ffi::swr_convert(swr, &mut out_ptr, out_count, &mut in_ptr, in_count);
        let flushed = if written >= 0 {
            let mut tail = out.as_mut_ptr().add(written as usize) as *mut u8;
            ffi::swr_convert(swr, &mut tail, out_count - written, ptr::null_mut(), 0)
        } else {
            written
        };
        ffi::swr_free(&mut swr);
        if written < 0 || flushed < 0 {
            return Err(WorkerError::DecodeFailed(format!(
                "resampling from {rate} Hz failed"
            )));
        }
        out.set_len((written + flushed) as usize);
    }
    Ok(out)
}
