//! Writing the `animation` variant: RGBA frames in, H.264 (libx264, yuv420p, BT.709) in MP4 out,
//! with variable frame timing (a 1/1000 s time base, each frame's pts its start in
//! milliseconds, each packet's duration its frame's delay), no audio track, the moov box first.

use crate::av;
use crate::preset::AnimationPreset;
use crate::WorkerError;
use ffmpeg::software::scaling;
use ffmpeg::{codec, encoder, format, frame, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use image::RgbaImage;
use satchel_workers::av::AnimationEncoder;
use std::collections::HashMap;
use std::path::Path;

/// Milliseconds: every pts and duration handed to the encoder is in this time base.
const TIME_BASE: Rational = Rational(1, 1000);

pub struct Mp4 {
    muxer: format::context::Output,
    encoder: encoder::Video,
    scaler: scaling::Context,
    rgba: frame::Video,
    yuv: frame::Video,
    out_tb: Rational,
    /// Each frame's duration by its pts, until its packet leaves the encoder (x264 reorders
    /// frames and, in this FFmpeg, leaves packet durations unset).
    durations: HashMap<i64, i64>,
    last_pts: i64,
}

impl Mp4 {
    /// Opens `path` for frames of `canvas` size, written at `size` (even, no larger).
    pub fn create(
        path: &Path,
        canvas: (u32, u32),
        size: (u32, u32),
        preset: &AnimationPreset,
    ) -> Result<Self, WorkerError> {
        av::init();
        let mut muxer =
            format::output_as(path, "mp4").map_err(av::encode_err("creating the MP4"))?;
        let x264 = encoder::find_by_name("libx264")
            .ok_or_else(|| WorkerError::EncodeFailed("this FFmpeg has no libx264".into()))?;
        let enc_err = av::encode_err("opening libx264");
        let mut stream = muxer.add_stream(x264).map_err(&enc_err)?;
        let mut enc = codec::context::Context::new_with_codec(x264)
            .encoder()
            .video()
            .map_err(&enc_err)?;
        enc.set_width(size.0);
        enc.set_height(size.1);
        enc.set_format(format::Pixel::YUV420P);
        enc.set_time_base(TIME_BASE);
        enc.set_aspect_ratio(Rational(1, 1));
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
        // sRGB pixels, converted with the BT.709 matrix to limited range (below): say so, so
        // that players do not guess BT.601 for small pictures.
        enc.set_colorspace(ffmpeg::color::Space::BT709);
        enc.set_color_range(ffmpeg::color::Range::MPEG);
        // SAFETY: plain fields of a context not yet opened.
        unsafe {
            let ctx = enc.as_mut_ptr();
            (*ctx).color_primaries = ffmpeg::ffi::AVColorPrimaries::AVCOL_PRI_BT709;
            (*ctx).color_trc = ffmpeg::ffi::AVColorTransferCharacteristic::AVCOL_TRC_IEC61966_2_1;
        }
        let options = crate::av::x264_options(&preset.x264_preset, preset.crf, preset.threads);
        let encoder = enc.open_as_with(x264, options).map_err(&enc_err)?;
        stream.set_parameters(&encoder);
        stream.set_time_base(TIME_BASE);

        let mut header = Dictionary::new();
        // Players can start before the whole file has arrived.
        header.set("movflags", "+faststart");
        muxer
            .write_header_with(header)
            .map_err(av::encode_err("writing the MP4 header"))?;
        let out_tb = muxer.stream(0).map(|s| s.time_base()).unwrap_or(TIME_BASE);

        let mut scaler = scaling::Context::get(
            format::Pixel::RGBA,
            canvas.0,
            canvas.1,
            format::Pixel::YUV420P,
            size.0,
            size.1,
            scaling::Flags::BICUBIC | scaling::Flags::ACCURATE_RND | scaling::Flags::FULL_CHR_H_INT,
        )
        .map_err(av::encode_err("setting up the scaler"))?;
        // SAFETY: the scaler is ours; the coefficient table is a static of libswscale.
        unsafe {
            let bt709 = ffmpeg::ffi::sws_getCoefficients(ffmpeg::ffi::SWS_CS_ITU709);
            ffmpeg::ffi::sws_setColorspaceDetails(
                scaler.as_mut_ptr(),
                bt709,
                1,
                bt709,
                0,
                0,
                1 << 16,
                1 << 16,
            );
        }
        Ok(Mp4 {
            muxer,
            encoder,
            scaler,
            rgba: frame::Video::new(format::Pixel::RGBA, canvas.0, canvas.1),
            yuv: frame::Video::new(format::Pixel::YUV420P, size.0, size.1),
            out_tb,
            durations: HashMap::new(),
            last_pts: -1,
        })
    }

    fn drain(&mut self) -> Result<(), WorkerError> {
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            if let Some(duration) = packet.pts().and_then(|pts| self.durations.remove(&pts)) {
                packet.set_duration(duration);
            }
            packet.set_stream(0);
            packet.rescale_ts(TIME_BASE, self.out_tb);
            packet.set_position(-1);
            packet
                .write_interleaved(&mut self.muxer)
                .map_err(av::encode_err("writing the MP4"))?;
        }
        Ok(())
    }
}

impl AnimationEncoder for Mp4 {
    /// Encodes one frame, opaque (transparent pixels already flattened), shown from `start_ms`
    /// for `duration_ms`.
    fn push(
        &mut self,
        image: &RgbaImage,
        start_ms: f64,
        duration_ms: f64,
    ) -> Result<(), WorkerError> {
        let (width, height) = (self.rgba.width() as usize, self.rgba.height() as usize);
        if (image.width() as usize, image.height() as usize) != (width, height) {
            return Err(WorkerError::DecodeFailed(
                "an animation frame changed size".into(),
            ));
        }
        let stride = self.rgba.stride(0);
        let plane = self.rgba.data_mut(0);
        for (row, pixels) in image.as_raw().chunks_exact(width * 4).enumerate() {
            plane[row * stride..row * stride + width * 4].copy_from_slice(pixels);
        }
        self.scaler
            .run(&self.rgba, &mut self.yuv)
            .map_err(av::encode_err("converting a frame"))?;
        // Rounded on the running total, so durations never drift; every played delay is over
        // 10 ms, so the pts still increase (the guard is for the encoder's sake).
        let pts = (start_ms.round() as i64).max(self.last_pts + 1);
        let end = ((start_ms + duration_ms).round() as i64).max(pts + 1);
        self.last_pts = pts;
        self.durations.insert(pts, end - pts);
        self.yuv.set_pts(Some(pts));
        self.yuv.set_kind(ffmpeg::picture::Type::None);
        self.encoder
            .send_frame(&self.yuv)
            .map_err(av::encode_err("encoding H.264"))?;
        self.drain()
    }

    /// Flushes the encoder and writes the index.
    fn finish(mut self: Box<Self>) -> Result<(), WorkerError> {
        self.encoder
            .send_eof()
            .map_err(av::encode_err("encoding H.264"))?;
        self.drain()?;
        self.muxer
            .write_trailer()
            .map_err(av::encode_err("finishing the MP4"))
    }
}
