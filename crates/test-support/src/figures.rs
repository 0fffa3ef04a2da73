//! Benchmark figures: a latency sample summarised the same way everywhere.

use std::time::Duration;

/// min, median, p90, p99 and max (each the sample at or above that share:
/// with 500 samples, five lie above the p99).
pub fn summary(mut samples: Vec<Duration>) -> [Duration; 5] {
    assert!(!samples.is_empty(), "no samples");
    samples.sort();
    let at = |percent: usize| samples[(samples.len() * percent).div_ceil(100) - 1];
    [
        samples[0],
        at(50),
        at(90),
        at(99),
        samples[samples.len() - 1],
    ]
}

/// `12.34 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
