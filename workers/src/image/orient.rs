//! EXIF orientation: phones store pixels as the sensor saw them and a tag saying how to turn
//! them. Everything satchel reports and writes is as displayed.

use image::metadata::Orientation;

/// The size of a `width` x `height` picture once `orientation` is applied.
pub(crate) fn displayed_size(width: u32, height: u32, orientation: Orientation) -> (u32, u32) {
    if swaps_sides(orientation) {
        (height, width)
    } else {
        (width, height)
    }
}

fn swaps_sides(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_turns_swap_width_and_height() {
        assert_eq!(displayed_size(640, 480, Orientation::Rotate90), (480, 640));
        assert_eq!(
            displayed_size(640, 480, Orientation::Rotate270FlipH),
            (480, 640)
        );
        assert_eq!(displayed_size(640, 480, Orientation::Rotate180), (640, 480));
        assert_eq!(
            displayed_size(640, 480, Orientation::FlipHorizontal),
            (640, 480)
        );
    }
}
