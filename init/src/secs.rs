//! Durations and sizes in log lines with fixed decimals, in integer
//! arithmetic: formatting an `f64` links the float printing code, kilobytes
//! the size-capped init (≤ 1 MiB) cannot spare.

use std::fmt;
use std::time::Duration;

/// Seconds with `decimals` digits (0 to 3), truncated: `Secs(d, 2)` shows
/// 1.234 s as `1.23`.
pub struct Secs(pub Duration, pub u32);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Tenths(self.0.as_millis(), 3, self.1).fmt(f)
    }
}

/// A signed count of nanoseconds as seconds with 3 decimals and a sign
/// (`+0.250`, `-1.500`), truncated.
pub struct SignedSecs(pub i64);

impl fmt::Display for SignedSecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 < 0 { "-" } else { "+" })?;
        Tenths(u128::from(self.0.unsigned_abs() / 1_000_000), 3, 3).fmt(f)
    }
}

/// `value` with `scale` decimal digits, shown with `decimals` of them.
struct Tenths(u128, u32, u32);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (value, scale, decimals) = (self.0, self.1, self.2.min(self.1));
        let unit = 10u128.pow(scale);
        write!(f, "{}", value / unit)?;
        if decimals > 0 {
            let frac = value % unit / 10u128.pow(scale - decimals);
            write!(f, ".{frac:0width$}", width = decimals as usize)?;
        }
        Ok(())
    }
}

/// Bytes as GiB with one decimal (`8.0`), truncated.
pub fn gib(bytes: u64) -> impl fmt::Display {
    Tenths((u128::from(bytes) * 10) >> 30, 1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_what_the_float_formats_showed() {
        assert_eq!(Secs(Duration::from_millis(1234), 2).to_string(), "1.23");
        assert_eq!(Secs(Duration::from_millis(1234), 1).to_string(), "1.2");
        assert_eq!(Secs(Duration::from_millis(5), 2).to_string(), "0.00");
        assert_eq!(Secs(Duration::from_secs(90), 0).to_string(), "90");
        assert_eq!(SignedSecs(250_000_000).to_string(), "+0.250");
        assert_eq!(SignedSecs(-1_500_000_000).to_string(), "-1.500");
        assert_eq!(gib(8 << 30).to_string(), "8.0");
        assert_eq!(gib(3 << 29).to_string(), "1.5");
    }
}
