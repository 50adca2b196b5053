//! Small statistics over measured figures: min/median/max summaries, nearest-rank
//! percentiles, and durations in milliseconds.
//!
//! Pure: no I/O.

use std::time::Duration;

use serde_json::{Value, json};

/// `{min, median, max, n}` of the finite `values`, as the result files store it; `null` when
/// there is none.
pub fn stats(values: &[f64]) -> Value {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let (Some(min), Some(max)) = (v.first(), v.last()) else {
        return Value::Null;
    };
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    json!({ "min": min, "median": median, "max": max, "n": v.len() })
}

/// Nearest-rank percentile `p` (0–100) of `values`; NaN when there is none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_odd_and_even_counts_and_of_nothing() {
        assert_eq!(
            stats(&[3.0, 1.0, 2.0]),
            json!({"min": 1.0, "median": 2.0, "max": 3.0, "n": 3})
        );
        assert_eq!(
            stats(&[4.0, 1.0, 2.0, 3.0]),
            json!({"min": 1.0, "median": 2.5, "max": 4.0, "n": 4})
        );
        assert_eq!(stats(&[]), Value::Null);
        assert_eq!(stats(&[f64::NAN]), Value::Null);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
