//! Loudness normalisation to an EBU R128 integrated loudness target (ITU-R BS.1770-4 for one
//! channel), so voice notes from a whispering and a shouting sender play back alike.

/// What one pass over the samples learns: integrated loudness and sample peak.
pub struct Measurement {
    /// Integrated loudness in LUFS; `None` for silence (every block gated out).
    pub lufs: Option<f64>,
    /// Highest absolute sample value.
    pub peak: f32,
}

/// Measures in a single pass with no per-sample buffer: the K-weighted signal is reduced to a
/// mean square per 100 ms step as it is filtered (a 400 ms gating block is four consecutive
/// steps, 75 % overlap).
pub fn measure(samples: &[f32], rate: u32) -> Measurement {
    let (mut shelf, mut high_pass) = k_weighting(rate);
    let step = (rate as usize / 10).max(1);
    let mut steps = Vec::with_capacity(samples.len() / step + 1);
    let mut peak = 0.0f32;
    let mut whole = 0.0f64;
    for chunk in samples.chunks(step) {
        let mut sum = 0.0f64;
        for &s in chunk {
            peak = peak.max(s.abs());
            let y = high_pass.run(shelf.run(f64::from(s)));
            sum += y * y;
        }
        whole += sum;
        if chunk.len() == step {
            steps.push(sum / step as f64);
        }
    }
    let mut blocks: Vec<f64> = steps
        .windows(4)
        .map(|w| w.iter().sum::<f64>() / 4.0)
        .collect();
    if blocks.is_empty() && !samples.is_empty() {
        // Shorter than one block: measure the whole clip as one.
        blocks.push(whole / samples.len() as f64);
    }
    let loudness = |power: f64| -0.691 + 10.0 * power.log10();
    let gated_mean = |threshold: f64| {
        let kept: Vec<f64> = blocks
            .iter()
            .copied()
            .filter(|&p| p > 0.0 && loudness(p) > threshold)
            .collect();
        (!kept.is_empty()).then(|| kept.iter().sum::<f64>() / kept.len() as f64)
    };
    let lufs = gated_mean(-70.0)
        .and_then(|absolute| gated_mean(loudness(absolute) - 10.0))
        .map(loudness);
    Measurement { lufs, peak }
}

/// Gain in dB that brings the measured audio to `target_lufs`, at most `max_gain_db`, and low
/// enough that the highest sample peak stays under `ceiling_dbfs`.
pub fn gain_db(
    measured: &Measurement,
    target_lufs: f32,
    max_gain_db: f32,
    ceiling_dbfs: f32,
) -> f32 {
    let Some(lufs) = measured.lufs else {
        return 0.0;
    };
    if measured.peak <= 0.0 {
        return 0.0;
    }
    let wanted = (f64::from(target_lufs) - lufs).min(f64::from(max_gain_db)) as f32;
    let headroom = ceiling_dbfs - 20.0 * measured.peak.log10();
    wanted.min(headroom)
}

/// BS.1770's K-weighting (a high shelf for the head, then a high pass), with the two biquads'
/// coefficients derived for `rate` as libebur128 does, so any sample rate measures alike.
fn k_weighting(rate: u32) -> (Biquad, Biquad) {
    let fs = f64::from(rate);
    let (f0, gain, q) = (1681.974450955533, 3.999843853973347, 0.7071752369554196);
    let k = (std::f64::consts::PI * f0 / fs).tan();
    let vh = 10f64.powf(gain / 20.0);
    let vb = vh.powf(0.4996667741545416);
    let a0 = 1.0 + k / q + k * k;
    let shelf = Biquad::new(
        [
            (vh + vb * k / q + k * k) / a0,
            2.0 * (k * k - vh) / a0,
            (vh - vb * k / q + k * k) / a0,
        ],
        [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
    );
    let (f0, q) = (38.13547087602444, 0.5003270373238773);
    let k = (std::f64::consts::PI * f0 / fs).tan();
    let a0 = 1.0 + k / q + k * k;
    let high_pass = Biquad::new(
        [1.0, -2.0, 1.0],
        [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
    );
    (shelf, high_pass)
}

struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    z: [f64; 2],
}

impl Biquad {
    fn new(b: [f64; 3], a: [f64; 2]) -> Self {
        Biquad { b, a, z: [0.0; 2] }
    }

    /// Transposed direct form II.
    fn run(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, amplitude: f32, seconds: f32, rate: u32) -> Vec<f32> {
        let n = (seconds * rate as f32) as usize;
        (0..n)
            .map(|i| amplitude * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn full_scale_1khz_sine_reads_about_minus_3_lufs() {
        // BS.1770's reference: a 0 dBFS 1 kHz sine in one channel measures -3.01 LUFS.
        let lufs = measure(&sine(1000.0, 1.0, 5.0, 48_000), 48_000)
            .lufs
            .unwrap();
        assert!((lufs + 3.01).abs() < 0.1, "{lufs}");
    }

    #[test]
    fn silence_has_no_loudness_and_gets_no_gain() {
        let silence = vec![0.0; 48_000];
        let measured = measure(&silence, 48_000);
        assert_eq!(measured.lufs, None);
        assert_eq!(gain_db(&measured, -16.0, 20.0, -1.0), 0.0);
    }

    #[test]
    fn gain_is_capped_by_the_peak_ceiling() {
        let quiet_peaky = sine(1000.0, 0.5, 2.0, 48_000);
        // -9 LUFS of wanted gain would clip a 0.5 peak; the ceiling allows about +5 dB.
        let gain = gain_db(&measure(&quiet_peaky, 48_000), 0.0, 20.0, -1.0);
        assert!((gain - 5.02).abs() < 0.05, "{gain}");
    }
}
