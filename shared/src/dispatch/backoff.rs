//! Retry delays: exponential backoff with jitter, and `Retry-After` parsing.

use std::time::{Duration, SystemTime};

/// Maximum visibility timeout SQS accepts: 12 hours.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// Maximum `DelaySeconds` SQS accepts on a message: 15 minutes.
pub const MAX_MESSAGE_DELAY: Duration = Duration::from_secs(900);

/// Returns the delay before retry number `attempt` (1 for the first retry).
/// The nominal delay is `base × 2^(attempt-1)`, capped at `cap`. The result is
/// a random point in its upper half ("equal jitter"), so messages that failed
/// together spread out while each still waits at least half the nominal delay.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let nominal = base.saturating_mul(1u32 << exponent).min(cap);
    let half = nominal / 2;
    let jitter_ms = rand::random_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter_ms)
}

/// Parses a `Retry-After` header: delta seconds (`37`) or an HTTP date.
/// A date in the past gives zero.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Some(Duration::from_secs(seconds.ceil() as u64));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Rounds a delay up to whole seconds, as SQS takes them, within `[minimum, maximum]`.
pub fn whole_seconds(delay: Duration, minimum: Duration, maximum: Duration) -> Duration {
    let rounded = Duration::from_secs(delay.as_secs() + u64::from(delay.subsec_nanos() > 0));
    rounded.clamp(minimum, maximum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_within_bounds() {
        let base = Duration::from_secs(10);
        let cap = Duration::from_secs(300);
        for attempt in 1..=12 {
            let nominal = (base * (1 << (attempt - 1).min(20))).min(cap);
            for _ in 0..50 {
                let delay = backoff(attempt, base, cap);
                assert!(
                    delay >= nominal / 2,
                    "attempt {attempt}: {delay:?} below half of {nominal:?}"
                );
                assert!(delay <= nominal, "attempt {attempt}: {delay:?} above {nominal:?}");
            }
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Fri, 04 Dec 2026 08:00:00 GMT").unwrap();

        assert_eq!(parse_retry_after("37", now), Some(Duration::from_secs(37)));
        assert_eq!(parse_retry_after(" 2.5 ", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Fri, 04 Dec 2026 08:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Fri, 04 Dec 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn whole_seconds_rounds_up_and_clamps() {
        let one = Duration::from_secs(1);
        assert_eq!(
            whole_seconds(Duration::from_millis(36_001), one, MAX_VISIBILITY),
            Duration::from_secs(37)
        );
        assert_eq!(whole_seconds(Duration::ZERO, one, MAX_VISIBILITY), one);
        assert_eq!(
            whole_seconds(Duration::from_secs(90_000), one, MAX_VISIBILITY),
            MAX_VISIBILITY
        );
    }
}
