//! Order statistics of samples sorted ascending.

/// The median of sorted samples (NaN when empty).
pub fn median(sorted: &[f64]) -> f64 {
    percentile(sorted, 0.5)
}

/// The `q`-quantile (0..=1) of sorted samples, nearest rank (NaN when empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(median(&v), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert!(median(&[]).is_nan());
    }
}
