//! The `waveform` clients draw under a voice note: peak levels over equal slices of time.

/// `points` values 0-255, each the highest absolute sample in its slice, scaled so the loudest
/// slice is 255 (a quiet note still fills the bubble). Silence is all zeros.
pub fn peaks(samples: &[f32], points: usize) -> Vec<u8> {
    let points = points.max(1);
    let len = samples.len();
    let raw: Vec<f32> = (0..points)
        .map(|i| {
            let (start, end) = (
                i * len / points,
                ((i + 1) * len / points).max(i * len / points + 1).min(len),
            );
            samples.get(start..end).map_or(0.0, |slice| {
                slice.iter().fold(0.0f32, |m, s| m.max(s.abs()))
            })
        })
        .collect();
    let loudest = raw.iter().copied().fold(0.0f32, f32::max);
    if loudest < 1e-4 {
        return vec![0; points];
    }
    raw.iter()
        .map(|&p| (p / loudest * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loudest_slice_is_255_and_length_is_exact() {
        let mut samples = vec![0.1f32; 1000];
        samples[10] = 0.5;
        let w = peaks(&samples, 64);
        assert_eq!(w.len(), 64);
        assert_eq!(w[0], 255);
        assert_eq!(w[63], 51);
    }

    #[test]
    fn fewer_samples_than_points_still_gives_every_point() {
        assert_eq!(peaks(&[0.5, -1.0], 64).len(), 64);
        assert_eq!(peaks(&[], 64), vec![0; 64]);
    }
}
