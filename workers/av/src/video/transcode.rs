//! Writing the `video` variant: H.264 + AAC in MP4 with the moov atom first. Streams that
//! already fit are copied; the rest are decoded, turned upright, scaled and encoded.

use super::audio_track::AudioPath;
use super::poster::Picker;
use super::probe::Facts;
use crate::av::input::Input;
use crate::av::{self, Deadline};
use crate::preset::VideoPreset;
use crate::WorkerError;
use ffmpeg::{codec, decoder, encoder, filter, frame, Dictionary, Packet, Rational, Rescale};
use ffmpeg_next as ffmpeg;
use std::path::Path;

/// How each input stream reaches the output.
pub struct Plan {
    /// Target display size of the video, even numbers, when the video is re-encoded.
    pub encode_video_to: Option<(u32, u32)>,
    pub copy_audio: bool,
}

pub struct Written {
    pub poster: Picker,
}

pub fn run(
    input: &mut Input,
    facts: &Facts,
    plan: &Plan,
    preset: &VideoPreset,
    out: &Path,
    deadline: Deadline,
) -> Result<Written, WorkerError> {
    let mut muxer =
        ffmpeg::format::output_as(out, "mp4").map_err(av::encode_err("creating the MP4"))?;
    let mut video = match &facts.video {
        None => None,
        Some(v) => Some((v.index, VideoPath::new(input, v, plan, preset, &mut muxer)?)),
    };
    let mut audio = match &facts.audio {
        None => None,
        Some(a) => Some((
            a.index,
            AudioPath::new(input, a.index, plan.copy_audio, preset, &mut muxer)?,
        )),
    };
    let mut options = Dictionary::new();
    // Players can start before the whole file has arrived.
    options.set("movflags", "+faststart");
    muxer
        .write_header_with(options)
        .map_err(av::encode_err("writing the MP4 header"))?;
    let out_time_bases: Vec<Rational> = muxer.streams().map(|s| s.time_base()).collect();

    let mut poster = Picker::new(facts.duration_ms);
    let mut packet = Packet::empty();
    let mut frames_decoded = 0u64;
    let mut packets_read = vec![0i64; input.context().nb_streams() as usize];
    loop {
        deadline.check()?;
        if !input.read(&mut packet)? {
            break;
        }
        let index = packet.stream();
        if let Some(count) = packets_read.get_mut(index) {
            *count += 1;
        }
        if let Some((_, path)) = video.as_mut().filter(|(i, _)| *i == index) {
            path.push(
                Some(&packet),
                &mut muxer,
                &out_time_bases,
                &mut poster,
                &mut frames_decoded,
                preset,
            )?;
        } else if let Some((_, path)) = audio.as_mut().filter(|(i, _)| *i == index) {
            path.push(Some(&packet), &mut muxer, &out_time_bases)?;
        }
    }
    check_complete(
        input,
        &packets_read,
        [video.as_ref().map(|v| v.0), audio.as_ref().map(|a| a.0)],
    )?;
    if let Some((_, path)) = video.as_mut() {
        path.push(
            None,
            &mut muxer,
            &out_time_bases,
            &mut poster,
            &mut frames_decoded,
            preset,
        )?;
    }
    if let Some((_, path)) = audio.as_mut() {
        path.push(None, &mut muxer, &out_time_bases)?;
    }
    muxer
        .write_trailer()
        .map_err(av::encode_err("finishing the MP4"))?;
    Ok(Written { poster })
}

/// MP4 indexes every sample up front, so a file cut short still opens and demuxes "cleanly" to
/// a premature end. Fewer packets than the index promised means the upload was truncated.
fn check_complete(
    input: &mut Input,
    read: &[i64],
    streams: [Option<usize>; 2],
) -> Result<(), WorkerError> {
    for index in streams.into_iter().flatten() {
        let promised = input.context().stream(index).map_or(0, |s| s.frames());
        let got = read.get(index).copied().unwrap_or(0);
        if promised > 0 && got < promised {
            return Err(WorkerError::DecodeFailed(format!(
                "the file is truncated: stream {index} has {got} of {promised} packets"
            )));
        }
    }
    Ok(())
}

/// Copies a packet into output stream `out_index`.
pub(super) fn copy_packet(
    packet: &Packet,
    in_tb: Rational,
    out_index: usize,
    muxer: &mut ffmpeg::format::context::Output,
    out_tbs: &[Rational],
) -> Result<(), WorkerError> {
    let mut packet = packet.clone();
    packet.rescale_ts(in_tb, out_tbs[out_index]);
    packet.set_position(-1);
    packet.set_stream(out_index);
    packet
        .write_interleaved(muxer)
        .map_err(av::encode_err("writing the MP4"))
}

pub(super) fn drain_encoder(
    encoder: &mut encoder::Encoder,
    enc_tb: Rational,
    frame_ticks: i64,
    out_index: usize,
    muxer: &mut ffmpeg::format::context::Output,
    out_tbs: &[Rational],
) -> Result<(), WorkerError> {
    let mut packet = Packet::empty();
    while encoder.receive_packet(&mut packet).is_ok() {
        // libx264 leaves durations unset; without them the last frame has no length in MP4.
        if packet.duration() == 0 && enc_tb.numerator() > 0 {
            packet.set_duration(frame_ticks);
        }
        packet.set_stream(out_index);
        packet.rescale_ts(enc_tb, out_tbs[out_index]);
        packet
            .write_interleaved(muxer)
            .map_err(av::encode_err("writing the MP4"))?;
    }
    Ok(())
}

pub(super) fn add_copied_stream(
    input: &mut Input,
    index: usize,
    muxer: &mut ffmpeg::format::context::Output,
) -> Result<(usize, Rational), WorkerError> {
    let ist = input
        .context()
        .stream(index)
        .ok_or_else(|| WorkerError::DecodeFailed("stream vanished".into()))?;
    let mut ost = muxer
        .add_stream(encoder::find(codec::Id::None))
        .map_err(av::encode_err("adding a stream"))?;
    ost.set_parameters(ist.parameters());
    // The input container's codec tag may mean nothing in MP4; let the muxer choose.
    // SAFETY: a plain field of the output stream's own parameters.
    unsafe { (*ost.parameters().as_mut_ptr()).codec_tag = 0 };
    Ok((ost.index(), ist.time_base()))
}

enum VideoPath {
    Copy { out_index: usize, in_tb: Rational },
    Encode(Box<VideoEncode>),
}

struct VideoEncode {
    out_index: usize,
    decoder: decoder::Video,
    graph: filter::Graph,
    encoder: encoder::Video,
    sink_tb: Rational,
    enc_tb: Rational,
    /// One frame's length in `enc_tb` (1 at a constant rate).
    frame_ticks: i64,
    last_pts: i64,
}

impl VideoPath {
    fn new(
        input: &mut Input,
        facts: &super::probe::VideoFacts,
        plan: &Plan,
        preset: &VideoPreset,
        muxer: &mut ffmpeg::format::context::Output,
    ) -> Result<Self, WorkerError> {
        let Some((width, height)) = plan.encode_video_to else {
            let (out_index, in_tb) = add_copied_stream(input, facts.index, muxer)?;
            return Ok(VideoPath::Copy { out_index, in_tb });
        };
        let ist = input
            .context()
            .stream(facts.index)
            .ok_or_else(|| WorkerError::DecodeFailed("stream vanished".into()))?;
        let in_tb = ist.time_base();
        let decoder = super::open_video_decoder(&ist, preset)?;

        let rotate = match facts.rotation {
            90 => "transpose=clock,",
            180 => "hflip,vflip,",
            270 => "transpose=cclock,",
            _ => "",
        };
        let sar = decoder.aspect_ratio();
        let sar = if sar.numerator() > 0 && sar.denominator() > 0 {
            sar
        } else {
            Rational(1, 1)
        };
        let args = format!(
            "video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
            decoder.width(),
            decoder.height(),
            ffmpeg::ffi::AVPixelFormat::from(decoder.format()) as i32,
            in_tb.numerator(),
            in_tb.denominator().max(1),
            sar.numerator(),
            sar.denominator()
        );
        let chain = format!("{rotate}scale={width}:{height}:flags=bicubic,setsar=1,format=yuv420p");
        let graph_err = av::encode_err("building the video filter");
        let mut graph = filter::Graph::new();
        graph
            .add(&filter::find("buffer").expect("buffer filter"), "in", &args)
            .map_err(&graph_err)?;
        graph
            .add(
                &filter::find("buffersink").expect("buffersink filter"),
                "out",
                "",
            )
            .map_err(&graph_err)?;
        graph
            .output("in", 0)
            .and_then(|p| p.input("out", 0))
            .and_then(|p| p.parse(&chain))
            .map_err(&graph_err)?;
        graph.validate().map_err(&graph_err)?;
        let sink_tb = graph
            .get("out")
            .map(|mut s| s.sink().time_base())
            .unwrap_or(in_tb);

        let x264 = encoder::find_by_name("libx264")
            .ok_or_else(|| WorkerError::EncodeFailed("this FFmpeg has no libx264".into()))?;
        let enc_err = av::encode_err("opening libx264");
        let mut ost = muxer.add_stream(x264).map_err(&enc_err)?;
        let out_index = ost.index();
        let mut enc = codec::context::Context::new_with_codec(x264)
            .encoder()
            .video()
            .map_err(&enc_err)?;
        // Like the ffmpeg CLI: one tick per frame at the nominal rate, which x264's rate control
        // reads as the frame rate.
        let rate = Rational::from(facts.fps.clamp(1.0, f64::from(preset.max_fps.max(1))));
        let enc_tb = if facts.fps > 0.0 {
            rate.invert()
        } else {
            in_tb
        };
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(ffmpeg::format::Pixel::YUV420P);
        enc.set_time_base(enc_tb);
        enc.set_frame_rate(Some(rate));
        enc.set_aspect_ratio(Rational(1, 1));
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
        let options = crate::av::x264_options(&preset.x264_preset, preset.crf, preset.threads);
        let encoder = enc.open_as_with(x264, options).map_err(&enc_err)?;
        ost.set_parameters(&encoder);
        ost.set_time_base(enc_tb);
        Ok(VideoPath::Encode(Box::new(VideoEncode {
            out_index,
            decoder,
            graph,
            encoder,
            sink_tb,
            enc_tb,
            frame_ticks: if facts.fps > 0.0 { 1 } else { 0 },
            last_pts: i64::MIN,
        })))
    }

    /// Feeds one packet, or `None` at the end to flush.
    fn push(
        &mut self,
        packet: Option<&Packet>,
        muxer: &mut ffmpeg::format::context::Output,
        out_tbs: &[Rational],
        poster: &mut Picker,
        frames_decoded: &mut u64,
        preset: &VideoPreset,
    ) -> Result<(), WorkerError> {
        let v = match self {
            VideoPath::Copy { out_index, in_tb } => {
                return match packet {
                    Some(p) => copy_packet(p, *in_tb, *out_index, muxer, out_tbs),
                    None => Ok(()),
                }
            }
            VideoPath::Encode(v) => v,
        };
        let dec_err = av::decode_err("decoding the video");
        match packet {
            Some(p) => v.decoder.send_packet(p).map_err(&dec_err)?,
            None => v.decoder.send_eof().map_err(&dec_err)?,
        }
        let mut decoded = frame::Video::empty();
        while v.decoder.receive_frame(&mut decoded).is_ok() {
            *frames_decoded += 1;
            if *frames_decoded > preset.max_frames {
                return Err(WorkerError::TooManyPixels(format!(
                    "over {} frames",
                    preset.max_frames
                )));
            }
            let pts = decoded.timestamp();
            decoded.set_pts(pts);
            let mut source = v.graph.get("in").expect("graph input");
            source
                .source()
                .add(&decoded)
                .map_err(av::encode_err("filtering the video"))?;
            v.pull(muxer, out_tbs, poster)?;
        }
        if packet.is_none() {
            let mut source = v.graph.get("in").expect("graph input");
            source
                .source()
                .flush()
                .map_err(av::encode_err("filtering the video"))?;
            v.pull(muxer, out_tbs, poster)?;
            v.encoder
                .send_eof()
                .map_err(av::encode_err("encoding H.264"))?;
            drain_encoder(
                &mut v.encoder,
                v.enc_tb,
                v.frame_ticks,
                v.out_index,
                muxer,
                out_tbs,
            )?;
        }
        Ok(())
    }
}

impl VideoEncode {
    fn pull(
        &mut self,
        muxer: &mut ffmpeg::format::context::Output,
        out_tbs: &[Rational],
        poster: &mut Picker,
    ) -> Result<(), WorkerError> {
        let mut filtered = frame::Video::empty();
        loop {
            let got = self
                .graph
                .get("out")
                .expect("graph output")
                .sink()
                .frame(&mut filtered);
            if got.is_err() {
                return Ok(());
            }
            let sink_pts = filtered.pts().unwrap_or(0);
            if !poster.done() {
                poster.offer(&filtered, sink_pts as f64 * f64::from(self.sink_tb));
            }
            // Variable frame rates can map two frames onto one tick; x264 needs them increasing.
            let mut pts = sink_pts.rescale(self.sink_tb, self.enc_tb);
            if pts <= self.last_pts {
                pts = self.last_pts + 1;
            }
            self.last_pts = pts;
            filtered.set_pts(Some(pts));
            filtered.set_kind(ffmpeg::picture::Type::None);
            self.encoder
                .send_frame(&filtered)
                .map_err(av::encode_err("encoding H.264"))?;
            drain_encoder(
                &mut self.encoder,
                self.enc_tb,
                self.frame_ticks,
                self.out_index,
                muxer,
                out_tbs,
            )?;
        }
    }
}
