//! Durations on the command line (`30m`, `24h`, `7d`) and ages in tables.

use chrono::{DateTime, Duration, Utc};

/// Parses a duration of the form `<number><unit>` with unit `s`, `m`, `h`, `d` or `w`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let amount: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: write a number and a unit, such as 30m, 24h or 7d"))?;
    if unit.is_empty() {
        return Err(format!("{text:?} has no unit: add s, m, h, d or w, such as 24h"));
    }
    let duration = match unit {
        "s" => Duration::try_seconds(amount),
        "m" => Duration::try_minutes(amount),
        "h" => Duration::try_hours(amount),
        "d" => Duration::try_days(amount),
        "w" => Duration::try_weeks(amount),
        _ => None,
    };
    duration
        .filter(|duration| *duration > Duration::zero())
        .ok_or_else(|| format!("{text:?} is not a duration: use a positive number and one of s, m, h, d or w"))
}

/// Formats the time since `at` (RFC 3339) as `45s`, `12m`, `3h 5m` or `2d 4h`.
pub fn age(at: &str, now: DateTime<Utc>) -> String {
    let Ok(time) = DateTime::parse_from_rfc3339(at) else {
        return "?".into();
    };
    let seconds = (now - time.with_timezone(&Utc)).num_seconds().max(0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86_400 => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d {}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

/// Cuts `text` to `max` characters, ending with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    let single_line = text.replace('\n', " ");
    if single_line.chars().count() <= max {
        return single_line;
    }
    let mut cut: String = single_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30m"), Ok(Duration::minutes(30)));
        assert_eq!(parse_duration("24h"), Ok(Duration::hours(24)));
        assert_eq!(parse_duration("7d"), Ok(Duration::days(7)));
        assert!(parse_duration("7").unwrap_err().contains("unit"));
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("3y").is_err());
    }

    #[test]
    fn ages_format() {
        let now: DateTime<Utc> = "2026-12-04T08:00:00Z".parse().unwrap();

        assert_eq!(age("2026-12-04T07:59:15Z", now), "45s");
        assert_eq!(age("2026-12-04T06:55:00.000Z", now), "1h 5m");
        assert_eq!(age("2026-12-02T04:00:00Z", now), "2d 4h");
        assert_eq!(age("yesterday", now), "?");
    }

    #[test]
    fn cuts_on_characters() {
        assert_eq!(cut("发票发票", 3), "发票…");
        assert_eq!(cut("a\nb", 10), "a b");
    }
}
