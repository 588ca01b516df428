//! Composited frames of an animation, one at a time: `image`'s `AnimationDecoder`s do the
//! compositing (GIF disposal and transparency, APNG blend and dispose ops, WebP's canvas), this
//! adds the limits, the orientation and browsers' timing.

use super::delay_ms;
use super::scan::{Limits, Scan};
use crate::preset::ImagePreset;
use crate::Deadline;
use crate::WorkerError;
use image::codecs::{gif::GifDecoder, png::PngDecoder, webp::WebPDecoder};
use image::metadata::Orientation;
use image::{AnimationDecoder, DynamicImage, ImageDecoder, ImageFormat, RgbaImage};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// One frame as displayed: the whole canvas, from `start_ms` for `duration_ms`.
pub struct Frame {
    pub image: RgbaImage,
    pub start_ms: f64,
    pub duration_ms: f64,
}

pub struct Frames {
    inner: image::Frames<'static>,
    orientation: Orientation,
    limits: Limits,
    deadline: Deadline,
    count: u64,
    elapsed_ms: f64,
}

impl Frames {
    pub fn open(
        input: &Path,
        scan: &Scan,
        preset: &ImagePreset,
        deadline: Deadline,
    ) -> Result<Self, WorkerError> {
        let limits = Limits::new(preset, scan.width, scan.height)?;
        let mut decoder_limits = image::Limits::default();
        decoder_limits.max_image_width = Some(preset.max_dimension);
        decoder_limits.max_image_height = Some(preset.max_dimension);
        decoder_limits.max_alloc = Some(preset.max_alloc_bytes);
        let reader = BufReader::new(File::open(input)?);
        let (inner, orientation) = match scan.format {
            ImageFormat::Gif => {
                let mut decoder = GifDecoder::new(reader).map_err(image_error)?;
                decoder.set_limits(decoder_limits).map_err(image_error)?;
                (decoder.into_frames(), Orientation::NoTransforms)
            }
            ImageFormat::Png => {
                let mut decoder =
                    PngDecoder::with_limits(reader, decoder_limits).map_err(image_error)?;
                let orientation = orientation(&mut decoder);
                (
                    decoder.apng().map_err(image_error)?.into_frames(),
                    orientation,
                )
            }
            ImageFormat::WebP => {
                let mut decoder = WebPDecoder::new(reader).map_err(image_error)?;
                decoder.set_limits(decoder_limits).map_err(image_error)?;
                // Browsers start from a transparent canvas whatever `ANIM` says; it is then
                // flattened like every other transparent pixel.
                let _ = decoder.set_background_color(image::Rgba([0, 0, 0, 0]));
                let orientation = orientation(&mut decoder);
                (decoder.into_frames(), orientation)
            }
            other => {
                return Err(WorkerError::UnsupportedCodec(format!(
                    "{other:?} does not animate"
                )))
            }
        };
        Ok(Frames {
            inner,
            orientation,
            limits,
            deadline,
            count: 0,
            elapsed_ms: 0.0,
        })
    }

    /// The size of every frame, as displayed.
    pub fn displayed_size(&self, scan: &Scan) -> (u32, u32) {
        crate::image::orient::displayed_size(scan.width, scan.height, self.orientation)
    }

    /// The next frame; `None` at the end. A frame that cannot be decoded after the first ends
    /// the animation there, as it ends a browser's; one over a limit fails it.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WorkerError> {
        self.deadline.check()?;
        let frame = match self.inner.next() {
            None => return Ok(None),
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                let e = image_error(e);
                return match e {
                    WorkerError::DecodeFailed(_) if self.count > 0 => Ok(None),
                    e => Err(e),
                };
            }
        };
        // Counted once decoded (one frame over costs at most `max_frame_pixels`), so that an
        // animation of exactly the limits passes.
        self.count += 1;
        self.limits.frames(self.count)?;
        let (numerator, denominator) = frame.delay().numer_denom_ms();
        let duration_ms = delay_ms(f64::from(numerator) / f64::from(denominator.max(1)));
        let start_ms = self.elapsed_ms;
        self.elapsed_ms += duration_ms;
        self.limits.duration(self.elapsed_ms)?;
        let mut image = frame.into_buffer();
        if self.orientation != Orientation::NoTransforms {
            let mut turned = DynamicImage::ImageRgba8(image);
            turned.apply_orientation(self.orientation);
            image = turned.into_rgba8();
        }
        Ok(Some(Frame {
            image,
            start_ms,
            duration_ms,
        }))
    }
}

/// Metadata that cannot be parsed is not worth failing over: shown unturned, like the stills.
fn orientation(decoder: &mut impl ImageDecoder) -> Orientation {
    decoder.orientation().unwrap_or(Orientation::NoTransforms)
}

fn image_error(e: image::ImageError) -> WorkerError {
    crate::image::decode::image_error(e)
}
