//! Order statistics over samples (boots, pings): no averages, since one slow
//! outlier on a shared machine should not move the headline figure.

/// The value at quantile `q` (0.0..=1.0) by the nearest-rank method, or None
/// for no samples.
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

/// The median (lower middle for an even count, a value that was measured).
pub fn median(samples: &[f64]) -> Option<f64> {
    quantile(samples, 0.5)
}

/// The 99th percentile.
pub fn p99(samples: &[f64]) -> Option<f64> {
    quantile(samples, 0.99)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn p99_picks_the_tail() {
        let samples: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(p99(&samples), Some(198.0));
        assert_eq!(p99(&[5.0]), Some(5.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.0), Some(1.0));
        assert_eq!(quantile(&[1.0, 2.0], 1.0), Some(2.0));
    }
}
