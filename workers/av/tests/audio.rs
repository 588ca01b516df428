//! The audio pipeline through the crate's entry point: real fixtures in, real files out.

#[path = "../../tests/common/mod.rs"]
mod common;
use common::fixture;
use satchel_workers::{MediaKind, Presets};
use satchel_workers_av::process;

/// What an Ogg Opus file says about itself: channels from `OpusHead`, and the playable length
/// (last granule position minus the encoder's pre-skip) in ms.
fn ogg_opus_facts(bytes: &[u8]) -> (u8, f64) {
    let head = bytes
        .windows(8)
        .position(|w| w == b"OpusHead")
        .expect("an OpusHead packet");
    let channels = bytes[head + 9];
    let pre_skip = u16::from_le_bytes([bytes[head + 10], bytes[head + 11]]);
    let last_page = bytes
        .windows(4)
        .rposition(|w| w == b"OggS")
        .expect("an Ogg page");
    let granule = u64::from_le_bytes(bytes[last_page + 6..last_page + 14].try_into().unwrap());
    (channels, (granule - u64::from(pre_skip)) as f64 / 48.0)
}

#[test]
fn every_accepted_format_becomes_a_mono_ogg_opus_voice_note_of_the_same_length() {
    for name in [
        "voice.wav",
        "voice.mp3",
        "voice.m4a",
        "voice.flac",
        "voice.ogg",
        "voice.opus",
    ] {
        let out = tempfile::tempdir().unwrap();
        let done = process(
            MediaKind::Audio,
            &fixture(name),
            &Presets::default(),
            out.path(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(done.variants.len(), 1, "{name}");
        let voice = &done.variants[0];
        assert_eq!(
            (voice.name.as_str(), voice.mime.as_str()),
            ("voice", "audio/ogg"),
            "{name}"
        );
        assert_eq!(done.metadata.duration_ms, Some(3000), "{name}");
        assert_eq!(voice.duration_ms, Some(3000), "{name}");

        let bytes = std::fs::read(&voice.path).unwrap();
        assert_eq!(&bytes[..4], b"OggS", "{name}");
        assert_eq!(voice.size, bytes.len() as u64);
        let (channels, playable_ms) = ogg_opus_facts(&bytes);
        assert_eq!(channels, 1, "{name} is mono");
        assert!(
            (playable_ms - 3000.0).abs() <= 5.0,
            "{name}: {playable_ms} ms"
        );
    }
}

#[test]
fn the_waveform_shows_the_loud_half_louder_than_the_quiet_half() {
    let out = tempfile::tempdir().unwrap();
    let done = process(
        MediaKind::Audio,
        &fixture("voice.wav"),
        &Presets::default(),
        out.path(),
    )
    .unwrap();
    let waveform = done.metadata.waveform.expect("a waveform");
    assert!(
        (64..=100).contains(&waveform.len()),
        "{} values",
        waveform.len()
    );
    let half = waveform.len() / 2;
    let peak = |s: &[u8]| *s.iter().max().unwrap();
    // The fixture is 20 dB quieter after 1.5 s.
    assert_eq!(peak(&waveform[..half]), 255);
    assert!(peak(&waveform[half..]) < 64, "{waveform:?}");
}

#[test]
fn audio_of_no_samples_fails_as_empty_media() {
    let out = tempfile::tempdir().unwrap();
    let err = process(
        MediaKind::Audio,
        &fixture("empty-audio.wav"),
        &Presets::default(),
        out.path(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "empty_media");
}

#[test]
fn a_playlist_sent_as_audio_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let err = process(
        MediaKind::Audio,
        &fixture("playlist-as.mp4"),
        &Presets::default(),
        out.path(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "refused_reference");
}

#[test]
fn audio_over_the_length_limit_is_too_long() {
    let mut presets = Presets::default();
    presets.audio.max_duration_s = 1;
    for name in ["voice.wav", "voice.opus"] {
        let out = tempfile::tempdir().unwrap();
        let err = process(MediaKind::Audio, &fixture(name), &presets, out.path()).unwrap_err();
        assert_eq!(err.code(), "too_long", "{name}");
    }
}
