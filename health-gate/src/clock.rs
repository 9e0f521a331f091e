//! Clock helpers: the boot-time clock used to compare a process's start time
//! with the instant a change was written, and millisecond serde for durations.

use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};
use serde::{Deserialize, Serialize};

/// An instant on the kernel's `CLOCK_BOOTTIME` clock (nanoseconds since boot,
/// suspend included).
///
/// `/proc/PID/stat` reports a process's start time in clock ticks since boot
/// on this same clock, so a write instant taken here can be compared with it
/// directly — without the one-second truncation of `/proc/stat`'s `btime`
/// that a wall-clock comparison would suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BootInstant {
    nanos: u64,
}

impl BootInstant {
    /// The current instant.
    #[must_use]
    pub fn now() -> Self {
        let ts = clock_gettime(ClockId::Boottime);
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        Self {
            nanos: secs.saturating_mul(1_000_000_000).saturating_add(nanos),
        }
    }

    /// Builds an instant from nanoseconds since boot.
    #[must_use]
    pub const fn from_nanos(nanos: u64) -> Self {
        Self { nanos }
    }

    /// Builds an instant from clock ticks since boot (as `/proc/PID/stat`
    /// field 22 reports them) and the number of ticks per second.
    #[must_use]
    pub fn from_ticks(ticks: u64, ticks_per_second: u64) -> Self {
        let hz = u128::from(ticks_per_second.max(1));
        let nanos = u128::from(ticks) * 1_000_000_000 / hz;
        Self {
            nanos: u64::try_from(nanos).unwrap_or(u64::MAX),
        }
    }

    /// Nanoseconds since boot.
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// This instant in whole clock ticks (rounded down), the unit of
    /// `/proc/PID/stat`'s start time.
    #[must_use]
    pub fn as_ticks(self, ticks_per_second: u64) -> u64 {
        let ticks = u128::from(self.nanos) * u128::from(ticks_per_second) / 1_000_000_000;
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`, the clock behind [`std::time::Instant`]
/// on Linux. Two processes on one machine can compare these values; the
/// simulator records the instant it starts answering with it and the detection
/// latency benchmark compares it with the gate's verdict.
#[must_use]
pub fn monotonic_nanos() -> u64 {
    let ts = clock_gettime(ClockId::Monotonic);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Formats a duration for humans: `850ms`, `1.25s`, `2m3.5s`.
#[must_use]
pub fn human(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 60_000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        let secs = d.as_secs();
        format!(
            "{}m{:.1}s",
            secs / 60,
            d.as_secs_f64() - (secs / 60 * 60) as f64
        )
    }
}

/// Parses a Go-style duration (`150ms`, `2s`, `1.5s`, `1m30s`, `2h`), the
/// form kube-apiserver flags and `kubesafe` options use.
///
/// # Errors
/// Returns a message naming the offending text when it is not a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0.0_f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {text:?} lacks a unit (ms, s, m, h)"))?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("invalid number {num:?} in duration {text:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let factor = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        total += value * factor;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("duration {text:?} out of range: {e}"))
}

/// Serde for [`Duration`] as fractional milliseconds (`"elapsed_ms": 812.5`),
/// readable in JSON output and audit logs.
pub mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes a duration as fractional milliseconds.
    ///
    /// # Errors
    /// Only the serializer's own errors.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(round_ms(*d))
    }

    /// Deserializes fractional milliseconds.
    ///
    /// # Errors
    /// When the value is negative, not finite or not a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom)
    }

    pub(crate) fn round_ms(d: Duration) -> f64 {
        (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
    }
}

/// Serde for `Option<Duration>` as fractional milliseconds or `null`.
pub mod option_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes an optional duration as fractional milliseconds or `null`.
    ///
    /// # Errors
    /// Only the serializer's own errors.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::duration_ms::round_ms(*d)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes fractional milliseconds or `null`.
    ///
    /// # Errors
    /// When the value is negative, not finite or not a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let ms = Option::<f64>::deserialize(d)?;
        ms.map(|ms| Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("150ms"), Ok(Duration::from_millis(150)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn ticks_round_trip_rounds_down() {
        let t = BootInstant::from_nanos(1_234_567_890);
        assert_eq!(t.as_ticks(100), 123);
        assert_eq!(BootInstant::from_ticks(123, 100).as_nanos(), 1_230_000_000);
        assert!(BootInstant::from_ticks(t.as_ticks(100), 100) <= t);
    }

    #[test]
    fn boot_clock_advances() {
        let a = BootInstant::now();
        std::thread::sleep(Duration::from_millis(2));
        let b = BootInstant::now();
        assert!(b > a);
        assert!(b.saturating_duration_since(a) >= Duration::from_millis(2));
    }

    #[test]
    fn human_formats() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(1250)), "1.25s");
        assert_eq!(human(Duration::from_millis(123_500)), "2m3.5s");
    }
}
