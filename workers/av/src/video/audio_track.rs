//! The MP4's audio track: AAC copied as is, anything else decoded and encoded to AAC.

use super::transcode::{add_copied_stream, copy_packet, drain_encoder};
use crate::av;
use crate::av::input::Input;
use crate::preset::VideoPreset;
use crate::WorkerError;
use ffmpeg::{codec, decoder, encoder, filter, frame, Packet, Rational, Rescale};
use ffmpeg_next as ffmpeg;

pub(super) enum AudioPath {
    Copy { out_index: usize, in_tb: Rational },
    Encode(Box<AudioEncode>),
}

pub(super) struct AudioEncode {
    out_index: usize,
    decoder: decoder::Audio,
    graph: filter::Graph,
    encoder: encoder::Audio,
    sink_tb: Rational,
    enc_tb: Rational,
}

impl AudioPath {
    pub(super) fn new(
        input: &mut Input,
        index: usize,
        copy: bool,
        preset: &VideoPreset,
        muxer: &mut ffmpeg::format::context::Output,
    ) -> Result<Self, WorkerError> {
        if copy {
            let (out_index, in_tb) = add_copied_stream(input, index, muxer)?;
            return Ok(AudioPath::Copy { out_index, in_tb });
        }
        let ist = input
            .context()
            .stream(index)
            .ok_or_else(|| WorkerError::DecodeFailed("stream vanished".into()))?;
        let in_tb = ist.time_base();
        let decoder = codec::context::Context::from_parameters(ist.parameters())
            .and_then(|c| c.decoder().audio())
            .map_err(av::decode_err("opening the audio decoder"))?;

        let aac = encoder::find(codec::Id::AAC)
            .ok_or_else(|| WorkerError::EncodeFailed("no AAC encoder".into()))?;
        let enc_err = av::encode_err("opening the AAC encoder");
        let mut ost = muxer.add_stream(aac).map_err(&enc_err)?;
        let out_index = ost.index();
        let mut enc = codec::context::Context::new_with_codec(aac)
            .encoder()
            .audio()
            .map_err(&enc_err)?;
        let enc_tb = Rational(1, 48_000);
        enc.set_rate(48_000);
        enc.set_channel_layout(ffmpeg::ChannelLayout::STEREO);
        enc.set_channels(2);
        enc.set_format(ffmpeg::format::Sample::F32(
            ffmpeg::format::sample::Type::Planar,
        ));
        enc.set_bit_rate(preset.audio_bitrate as usize);
        enc.set_time_base(enc_tb);
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
        let encoder = enc.open_as(aac).map_err(&enc_err)?;
        ost.set_parameters(&encoder);
        ost.set_time_base(enc_tb);

        let layout = if decoder.channel_layout().is_empty() {
            ffmpeg::ChannelLayout::default(i32::from(decoder.channels()))
        } else {
            decoder.channel_layout()
        };
        let args = format!(
            "time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
            in_tb.numerator(),
            in_tb.denominator().max(1),
            decoder.rate(),
            decoder.format().name(),
            layout.bits()
        );
        let graph_err = av::encode_err("building the audio filter");
        let mut graph = filter::Graph::new();
        graph
            .add(
                &filter::find("abuffer").expect("abuffer filter"),
                "in",
                &args,
            )
            .map_err(&graph_err)?;
        graph
            .add(
                &filter::find("abuffersink").expect("abuffersink filter"),
                "out",
                "",
            )
            .map_err(&graph_err)?;
        graph
            .output("in", 0)
            .and_then(|p| p.input("out", 0))
            .and_then(|p| p.parse("aresample=48000,aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo"))
            .map_err(&graph_err)?;
        graph.validate().map_err(&graph_err)?;
        let mut sink = graph.get("out").expect("graph output");
        // The AAC encoder takes exactly `frame_size` samples per frame; the sink regroups them.
        sink.sink().set_frame_size(encoder.frame_size());
        let sink_tb = sink.sink().time_base();
        Ok(AudioPath::Encode(Box::new(AudioEncode {
            out_index,
            decoder,
            graph,
            encoder,
            sink_tb,
            enc_tb,
        })))
    }

    pub(super) fn push(
        &mut self,
        packet: Option<&Packet>,
        muxer: &mut ffmpeg::format::context::Output,
        out_tbs: &[Rational],
    ) -> Result<(), WorkerError> {
        let a = match self {
            AudioPath::Copy { out_index, in_tb } => {
                return match packet {
                    Some(p) => copy_packet(p, *in_tb, *out_index, muxer, out_tbs),
                    None => Ok(()),
                }
            }
            AudioPath::Encode(a) => a,
        };
        let dec_err = av::decode_err("decoding the audio");
        match packet {
            Some(p) => a.decoder.send_packet(p).map_err(&dec_err)?,
            None => a.decoder.send_eof().map_err(&dec_err)?,
        }
        let mut decoded = frame::Audio::empty();
        while a.decoder.receive_frame(&mut decoded).is_ok() {
            let pts = decoded.timestamp();
            decoded.set_pts(pts);
            a.graph
                .get("in")
                .expect("graph input")
                .source()
                .add(&decoded)
                .map_err(av::encode_err("filtering the audio"))?;
            a.pull(muxer, out_tbs)?;
        }
        if packet.is_none() {
            a.graph
                .get("in")
                .expect("graph input")
                .source()
                .flush()
                .map_err(av::encode_err("filtering the audio"))?;
            a.pull(muxer, out_tbs)?;
            a.encoder
                .send_eof()
                .map_err(av::encode_err("encoding AAC"))?;
            drain_encoder(&mut a.encoder, a.enc_tb, 0, a.out_index, muxer, out_tbs)?;
        }
        Ok(())
    }
}

impl AudioEncode {
    fn pull(
        &mut self,
        muxer: &mut ffmpeg::format::context::Output,
        out_tbs: &[Rational],
    ) -> Result<(), WorkerError> {
        let mut filtered = frame::Audio::empty();
        while self
            .graph
            .get("out")
            .expect("graph output")
            .sink()
            .frame(&mut filtered)
            .is_ok()
        {
            let pts = filtered.pts().map(|p| p.rescale(self.sink_tb, self.enc_tb));
            filtered.set_pts(pts);
            self.encoder
                .send_frame(&filtered)
                .map_err(av::encode_err("encoding AAC"))?;
            drain_encoder(
                &mut self.encoder,
                self.enc_tb,
                0,
                self.out_index,
                muxer,
                out_tbs,
            )?;
        }
        Ok(())
    }
}
