//! Opening an input with FFmpeg so that it can only ever read the one file it was handed.
//!
//! FFmpeg's demuxers happily follow references: an HLS playlist or an ffconcat script opens
//! whatever `file:` or `http:` URL it lists, and MOV data references can point elsewhere. A
//! chat upload is hostile by default, so:
//! - the bytes reach FFmpeg through our own `AVIOContext` over an open `File`: no URL, no
//!   protocol layer at all;
//! - the demuxer is probed by us and must be on [`ALLOWED_DEMUXERS`]; playlists and concat
//!   scripts are refused before FFmpeg parses them;
//! - `io_open` is replaced by a callback that refuses, and `protocol_whitelist` names no protocol,
//!   so any nested open a demuxer attempts fails instead of touching the disk or the network;
//! - every read checks the job's deadline.

use super::Deadline;
use crate::WorkerError;
use ffmpeg::ffi;
use ffmpeg_next as ffmpeg;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::ptr;

/// Demuxers (by FFmpeg's `name`) for the containers the API accepts: MP4/MOV, WebM/MKV, Ogg,
/// WAV, MP3, FLAC, ADTS AAC. None of them opens another file with the options we leave them.
const ALLOWED_DEMUXERS: &[&str] = &[
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "ogg",
    "wav",
    "mp3",
    "flac",
    "aac",
];

/// Demuxers whose whole job is to read other resources; named so the error says why.
const REFERENCE_DEMUXERS: &[&str] = &[
    "hls",
    "concat",
    "dash",
    "sdp",
    "rtsp",
    "rtp",
    "image2",
    "ffmetadata",
    "mpl2",
    "webm_dash_manifest",
];

/// Text that starts a playlist or a concat script, checked on the raw bytes so such a file is
/// refused whatever FFmpeg's probe would make of it.
const REFERENCE_MAGIC: &[&[u8]] = &[
    b"#EXTM3U",
    b"ffconcat",
    b"<?xml",
    b"<MPD",
    b"v=0\r\n",
    b"v=0\n",
];

/// The most bytes FFmpeg may read to recognise a container.
const PROBE_BYTES: u32 = 1 << 20;
const IO_BUFFER: usize = 64 * 1024;

/// A demuxer opened over our own I/O. Dropping it closes the demuxer first, then frees the
/// I/O context and the file (field order matters).
pub struct Input {
    ctx: ffmpeg::format::context::Input,
    io: Io,
}

impl Input {
    pub fn context(&mut self) -> &mut ffmpeg::format::context::Input {
        &mut self.ctx
    }

    /// Reads the next packet: `Ok(false)` at the end of the input. A read error other than
    /// the end (a truncated file, a corrupt box) is the input's fault.
    pub fn read(&mut self, packet: &mut ffmpeg::Packet) -> Result<bool, WorkerError> {
        match packet.read(&mut self.ctx) {
            Ok(()) => Ok(true),
            Err(ffmpeg::Error::Eof) => Ok(false),
            Err(e) => Err(self.io.explain(e, "reading the input")),
        }
    }
}

/// The `AVIOContext` and what its callbacks read.
struct Io {
    avio: *mut ffi::AVIOContext,
    source: *mut Source,
}

struct Source {
    file: File,
    size: i64,
    deadline: Deadline,
    timed_out: bool,
}

impl Io {
    fn new(file: File, deadline: Deadline) -> Result<Self, WorkerError> {
        let size = i64::try_from(file.metadata()?.len()).unwrap_or(i64::MAX);
        let source = Box::into_raw(Box::new(Source {
            file,
            size,
            deadline,
            timed_out: false,
        }));
        // SAFETY: FFmpeg owns `buffer` from here (it may reallocate it); `source` outlives the
        // context because `Drop` frees the context first.
        unsafe {
            let buffer = ffi::av_malloc(IO_BUFFER) as *mut u8;
            if buffer.is_null() {
                drop(Box::from_raw(source));
                return Err(WorkerError::DecodeFailed(
                    "out of memory for the input buffer".into(),
                ));
            }
            let avio = ffi::avio_alloc_context(
                buffer,
                IO_BUFFER as c_int,
                0,
                source as *mut c_void,
                Some(read_packet),
                None,
                Some(seek),
            );
            if avio.is_null() {
                ffi::av_free(buffer as *mut c_void);
                drop(Box::from_raw(source));
                return Err(WorkerError::DecodeFailed(
                    "out of memory for the input".into(),
                ));
            }
            Ok(Io { avio, source })
        }
    }

    fn timed_out(&self) -> bool {
        // SAFETY: `source` lives as long as `self`.
        unsafe { (*self.source).timed_out || (*self.source).deadline.passed() }
    }

    /// Turns an FFmpeg read error into the job's error: the deadline if that is what stopped
    /// the read, else a decode failure.
    fn explain(&self, e: ffmpeg::Error, what: &str) -> WorkerError {
        if self.timed_out() {
            // SAFETY: as above.
            unsafe { (*self.source).deadline.error() }
        } else {
            WorkerError::DecodeFailed(format!("{what}: {e}"))
        }
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        // SAFETY: the demuxer that used the context is closed (see `Input`'s field order) or was
        // never opened; the buffer may have been replaced by FFmpeg, so free the current one.
        unsafe {
            if !self.avio.is_null() {
                ffi::av_freep(&mut (*self.avio).buffer as *mut *mut u8 as *mut c_void);
                ffi::avio_context_free(&mut self.avio);
            }
            drop(Box::from_raw(self.source));
        }
    }
}

unsafe extern "C" fn read_packet(opaque: *mut c_void, buf: *mut u8, len: c_int) -> c_int {
    let source = &mut *(opaque as *mut Source);
    if source.deadline.passed() {
        source.timed_out = true;
        return ffi::AVERROR_EXIT;
    }
    let Ok(len) = usize::try_from(len) else {
        return ffi::AVERROR(libc_einval());
    };
    let out = std::slice::from_raw_parts_mut(buf, len);
    match source.file.read(out) {
        Ok(0) => ffi::AVERROR_EOF,
        Ok(n) => n as c_int,
        Err(_) => ffi::AVERROR(libc_eio()),
    }
}

unsafe extern "C" fn seek(opaque: *mut c_void, offset: i64, whence: c_int) -> i64 {
    let source = &mut *(opaque as *mut Source);
    if whence & ffi::AVSEEK_SIZE != 0 {
        return source.size;
    }
    let to = match whence & !ffi::AVSEEK_FORCE {
        0 => match u64::try_from(offset) {
            Ok(o) => SeekFrom::Start(o),
            Err(_) => return i64::from(ffi::AVERROR(libc_einval())),
        },
        1 => SeekFrom::Current(offset),
        2 => SeekFrom::End(offset),
        _ => return i64::from(ffi::AVERROR(libc_einval())),
    };
    match source.file.seek(to) {
        Ok(pos) => i64::try_from(pos).unwrap_or(i64::MAX),
        Err(_) => i64::from(ffi::AVERROR(libc_eio())),
    }
}

/// Replaces `AVFormatContext.io_open`: no demuxer gets to open a second resource.
unsafe extern "C" fn refuse_io_open(
    _s: *mut ffi::AVFormatContext,
    _pb: *mut *mut ffi::AVIOContext,
    _url: *const c_char,
    _flags: c_int,
    _options: *mut *mut ffi::AVDictionary,
) -> c_int {
    ffi::AVERROR(1) // EPERM
}

/// Lets FFmpeg's own long loops (probing, skipping) stop at the deadline too.
unsafe extern "C" fn interrupt(opaque: *mut c_void) -> c_int {
    let source = &*(opaque as *const Source);
    c_int::from(source.deadline.passed())
}

const fn libc_eio() -> c_int {
    5
}

const fn libc_einval() -> c_int {
    22
}

/// Opens `path` for demuxing under the rules in the module documentation.
pub fn open(path: &Path, deadline: Deadline) -> Result<Input, WorkerError> {
    super::init();
    let mut file = File::open(path)?;
    refuse_reference_text(&mut file)?;
    let io = Io::new(file, deadline)?;

    // SAFETY: plain FFmpeg C API use; every pointer is checked, and on each early return the
    // format context is freed while `io` (and so the AVIOContext) outlives it.
    unsafe {
        let mut format: *const ffi::AVInputFormat = ptr::null();
        let ret = ffi::av_probe_input_buffer2(
            io.avio,
            &mut format,
            c"".as_ptr(),
            ptr::null_mut(),
            0,
            PROBE_BYTES,
        );
        if ret < 0 || format.is_null() {
            return Err(if io.timed_out() {
                deadline.error()
            } else {
                WorkerError::DecodeFailed("not a recognised audio or video container".into())
            });
        }
        let name = CStr::from_ptr((*format).name)
            .to_string_lossy()
            .into_owned();
        check_demuxer(&name)?;

        let mut ctx = ffi::avformat_alloc_context();
        if ctx.is_null() {
            return Err(WorkerError::DecodeFailed(
                "out of memory for the demuxer".into(),
            ));
        }
        (*ctx).pb = io.avio;
        (*ctx).flags |= ffi::AVFMT_FLAG_CUSTOM_IO as c_int;
        (*ctx).format_whitelist =
            ffi::av_strdup(c"mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,ogg,wav,mp3,flac,aac".as_ptr());
        // A whitelist naming no real protocol: nothing can be opened by URL.
        (*ctx).protocol_whitelist = ffi::av_strdup(c"none".as_ptr());
        (*ctx).io_open = Some(refuse_io_open);
        (*ctx).interrupt_callback = ffi::AVIOInterruptCB {
            callback: Some(interrupt),
            opaque: io.source as *mut c_void,
        };

        // On failure avformat_open_input frees `ctx` (not our pb) and nulls it.
        let ret = ffi::avformat_open_input(&mut ctx, ptr::null(), format, ptr::null_mut());
        if ret < 0 {
            return Err(io.explain(ffmpeg::Error::from(ret), "opening the container"));
        }
        let ret = ffi::avformat_find_stream_info(ctx, ptr::null_mut());
        let input = Input {
            ctx: ffmpeg::format::context::Input::wrap(ctx),
            io,
        };
        if ret < 0 {
            return Err(input
                .io
                .explain(ffmpeg::Error::from(ret), "reading stream headers"));
        }
        Ok(input)
    }
}

fn check_demuxer(name: &str) -> Result<(), WorkerError> {
    if ALLOWED_DEMUXERS.contains(&name) {
        Ok(())
    } else if REFERENCE_DEMUXERS.contains(&name) {
        Err(WorkerError::RefusedReference(format!(
            "a {name} file refers to other files or URLs; only self-contained media is accepted"
        )))
    } else {
        Err(WorkerError::UnsupportedCodec(format!(
            "container {name} is not accepted"
        )))
    }
}

fn refuse_reference_text(file: &mut File) -> Result<(), WorkerError> {
    let mut head = [0u8; 32];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    // Playlists may start with a UTF-8 byte-order mark or blank lines.
    let text = head[..filled]
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(&head[..filled]);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    if REFERENCE_MAGIC.iter().any(|magic| text.starts_with(magic)) {
        return Err(WorkerError::RefusedReference(
            "a playlist or concat script refers to other files or URLs; only self-contained media is accepted"
                .into(),
        ));
    }
    Ok(())
}
