//! Schedule expressions of EventBridge and EventBridge Scheduler:
//! `rate(5 minutes)`, `cron(0 8 ? * MON-FRI *)` and `at(2026-03-01T09:00:00)`.
//!
//! Cron fields are minutes, hours, day of month, month, day of week and year.
//! Day of week counts 1 = SUN to 7 = SAT. Exactly one of the two day fields
//! is `?`. Supported forms: `*`, `?`, numbers, names (`JAN`, `MON`), ranges,
//! lists, steps (`0/15`, `*/5`, `8-17/2`), `L` and `LW` and `<n>W` in the day
//! of month, `<n>L` (last such weekday) and `<n>#<k>` (k-th such weekday) in
//! the day of week.

use std::time::Duration;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike, Weekday};

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleExpression {
    Rate(Duration),
    Cron(Box<CronExpression>),
    /// A one-time schedule, in the schedule's time zone.
    At(NaiveDateTime),
}

impl ScheduleExpression {
    pub fn parse(text: &str) -> Result<ScheduleExpression, String> {
        let text = text.trim();
        if let Some(inner) = strip_call(text, "rate") {
            return parse_rate(inner).map(ScheduleExpression::Rate);
        }
        if let Some(inner) = strip_call(text, "cron") {
            return CronExpression::parse(inner).map(|cron| ScheduleExpression::Cron(Box::new(cron)));
        }
        if let Some(inner) = strip_call(text, "at") {
            return NaiveDateTime::parse_from_str(inner.trim(), "%Y-%m-%dT%H:%M:%S")
                .map(ScheduleExpression::At)
                .map_err(|error| format!("invalid at() time {inner:?}, expected YYYY-MM-DDThh:mm:ss: {error}"));
        }
        Err(format!(
            "unsupported schedule expression {text:?}: expected rate(...), cron(...) or at(...)"
        ))
    }
}

fn strip_call<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.strip_prefix(name)?
        .trim_start()
        .strip_prefix('(')?
        .strip_suffix(')')
}

fn parse_rate(inner: &str) -> Result<Duration, String> {
    let mut words = inner.split_whitespace();
    let (Some(count), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("invalid rate({inner}): expected rate(<number> <unit>)"));
    };
    let count: u64 = count
        .parse()
        .map_err(|_| format!("invalid rate({inner}): {count:?} is not a whole number"))?;
    let seconds = match unit {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        other => return Err(format!("invalid rate({inner}): unknown unit {other:?}")),
    };
    if count == 0 {
        return Err(format!("invalid rate({inner}): the value must be at least 1"));
    }
    Ok(Duration::from_secs(count * seconds))
}

/// A set of allowed values of one field, as a bit mask (bit n = value n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ValueSet(u64);

impl ValueSet {
    fn contains(self, value: u32) -> bool {
        value < 64 && self.0 & (1 << value) != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfMonth {
    /// `?`: the day of week decides.
    Unspecified,
    Values(ValueSet),
    /// `L`: the last day of the month.
    Last,
    /// `LW`: the last weekday (Monday to Friday) of the month.
    LastWeekday,
    /// `<n>W`: the weekday nearest to day n, within the same month.
    NearestWeekday(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfWeek {
    /// `?`: the day of month decides.
    Unspecified,
    /// Values 1 = SUN to 7 = SAT.
    Values(ValueSet),
    /// `<d>L`: the last weekday d of the month.
    Last(u32),
    /// `<d>#<k>`: the k-th weekday d of the month.
    Nth(u32, u32),
}

/// A cron expression of six fields, evaluated against local wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpression {
    minutes: ValueSet,
    hours: ValueSet,
    day_of_month: DayOfMonth,
    months: ValueSet,
    day_of_week: DayOfWeek,
    /// Years from 1970 to 2199, or every year.
    years: Option<Vec<u32>>,
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl CronExpression {
    /// Parses the six fields inside `cron(...)`.
    pub fn parse(inner: &str) -> Result<CronExpression, String> {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [minutes, hours, day_of_month, months, day_of_week, years] = fields[..] else {
            return Err(format!(
                "invalid cron({inner}): expected 6 fields (minutes hours day-of-month month day-of-week year), found {}",
                fields.len()
            ));
        };
        let context = |field: &str, error: String| format!("invalid cron({inner}): {field}: {error}");

        let day_of_month = parse_day_of_month(day_of_month).map_err(|error| context("day of month", error))?;
        let day_of_week = parse_day_of_week(day_of_week).map_err(|error| context("day of week", error))?;
        match (&day_of_month, &day_of_week) {
            (DayOfMonth::Unspecified, DayOfWeek::Unspecified) => {
                return Err(format!(
                    "invalid cron({inner}): day of month and day of week are both ?; set one of them"
                ));
            }
            (DayOfMonth::Unspecified, _) | (_, DayOfWeek::Unspecified) => {}
            _ => {
                return Err(format!(
                    "invalid cron({inner}): one of day of month and day of week must be ?"
                ));
            }
        }

        let years = if years == "*" {
            None
        } else {
            let mut list = Vec::new();
            for part in years.split(',') {
                let (low, high, step) = parse_range(part, 1970, 2199, &[]).map_err(|error| context("year", error))?;
                list.extend((low..=high).step_by(step as usize));
            }
            Some(list)
        };

        Ok(CronExpression {
            minutes: parse_values(minutes, 0, 59, &[]).map_err(|error| context("minutes", error))?,
            hours: parse_values(hours, 0, 23, &[]).map_err(|error| context("hours", error))?,
            day_of_month,
            months: parse_values(months, 1, 12, &MONTH_NAMES).map_err(|error| context("month", error))?,
            day_of_week,
            years,
        })
    }

    /// Returns whether the minute starting at `local` (seconds ignored) is a scheduled time.
    pub fn matches(&self, local: NaiveDateTime) -> bool {
        let date = local.date();
        self.minutes.contains(local.minute())
            && self.hours.contains(local.hour())
            && self.months.contains(date.month())
            && self
                .years
                .as_ref()
                .is_none_or(|years| years.contains(&(date.year() as u32)))
            && self.day_matches(date)
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let last_day = last_day_of_month(date);
        // 1 = SUN … 7 = SAT, as cron numbers them.
        let weekday = date.weekday().num_days_from_sunday() + 1;
        match (&self.day_of_month, &self.day_of_week) {
            (DayOfMonth::Values(days), DayOfWeek::Unspecified) => days.contains(date.day()),
            (DayOfMonth::Last, _) => date.day() == last_day,
            (DayOfMonth::LastWeekday, _) => date.day() == nearest_weekday(date, last_day),
            (DayOfMonth::NearestWeekday(day), _) => date.day() == nearest_weekday(date, (*day).min(last_day)),
            (DayOfMonth::Unspecified, DayOfWeek::Values(days)) => days.contains(weekday),
            (DayOfMonth::Unspecified, DayOfWeek::Last(day)) => weekday == *day && date.day() + 7 > last_day,
            (DayOfMonth::Unspecified, DayOfWeek::Nth(day, nth)) => weekday == *day && (date.day() - 1) / 7 + 1 == *nth,
            // Rejected by `parse`.
            _ => false,
        }
    }
}

fn last_day_of_month(date: NaiveDate) -> u32 {
    let (year, month) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|first| first.pred_opt())
        .map_or(28, |last| last.day())
}

/// Returns the day of `date`'s month that is the weekday nearest to `day`, without leaving the month.
fn nearest_weekday(date: NaiveDate, day: u32) -> u32 {
    let Some(target) = date.with_day(day) else {
        return 0;
    };
    let last_day = last_day_of_month(date);
    match target.weekday() {
        Weekday::Sat if day == 1 => 3,
        Weekday::Sat => day - 1,
        Weekday::Sun if day == last_day => day - 2,
        Weekday::Sun => day + 1,
        _ => day,
    }
}

fn parse_day_of_month(field: &str) -> Result<DayOfMonth, String> {
    match field {
        "?" => Ok(DayOfMonth::Unspecified),
        "L" => Ok(DayOfMonth::Last),
        "LW" => Ok(DayOfMonth::LastWeekday),
        _ => match field.strip_suffix('W') {
            Some(day) => {
                let day = parse_number(day, 1, 31, &[])?;
                Ok(DayOfMonth::NearestWeekday(day))
            }
            None => parse_values(field, 1, 31, &[]).map(DayOfMonth::Values),
        },
    }
}

fn parse_day_of_week(field: &str) -> Result<DayOfWeek, String> {
    if field == "?" {
        return Ok(DayOfWeek::Unspecified);
    }
    if let Some(day) = field.strip_suffix('L') {
        return Ok(DayOfWeek::Last(parse_number(day, 1, 7, &DAY_NAMES)?));
    }
    if let Some((day, nth)) = field.split_once('#') {
        let nth = parse_number(nth, 1, 5, &[])?;
        return Ok(DayOfWeek::Nth(parse_number(day, 1, 7, &DAY_NAMES)?, nth));
    }
    parse_values(field, 1, 7, &DAY_NAMES).map(DayOfWeek::Values)
}

/// Parses a list of `*`, values, ranges and steps into a set.
fn parse_values(field: &str, min: u32, max: u32, names: &[&str]) -> Result<ValueSet, String> {
    let mut mask = 0_u64;
    for part in field.split(',') {
        let (low, high, step) = parse_range(part, min, max, names)?;
        for value in (low..=high).step_by(step as usize) {
            mask |= 1 << value;
        }
    }
    Ok(ValueSet(mask))
}

/// Parses `*`, `a`, `a-b`, each optionally followed by `/step`; `a/step` runs to `max`.
fn parse_range(part: &str, min: u32, max: u32, names: &[&str]) -> Result<(u32, u32, u32), String> {
    let (range, step) = match part.split_once('/') {
        Some((range, step)) => {
            let step: u32 = step
                .parse()
                .ok()
                .filter(|step| *step >= 1)
                .ok_or_else(|| format!("invalid step {step:?} in {part:?}"))?;
            (range, Some(step))
        }
        None => (part, None),
    };
    let (low, high) = if range == "*" {
        (min, max)
    } else if let Some((low, high)) = range.split_once('-') {
        (
            parse_number(low, min, max, names)?,
            parse_number(high, min, max, names)?,
        )
    } else {
        let value = parse_number(range, min, max, names)?;
        // `a/step` starts at a and runs to the end of the field.
        (value, if step.is_some() { max } else { value })
    };
    if low > high {
        return Err(format!("range {range:?} runs backwards"));
    }
    Ok((low, high, step.unwrap_or(1)))
}

fn parse_number(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    let value = match names.iter().position(|name| *name == upper) {
        // Names start at the field's minimum: JAN = 1, SUN = 1.
        Some(index) => min + index as u32,
        None => text
            .parse()
            .map_err(|_| format!("{text:?} is not a number{}", name_hint(names)))?,
    };
    if !(min..=max).contains(&value) {
        return Err(format!("{value} is outside {min}-{max}"));
    }
    Ok(value)
}

fn name_hint(names: &[&str]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" or one of {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
    }

    fn cron(text: &str) -> CronExpression {
        match ScheduleExpression::parse(text).unwrap() {
            ScheduleExpression::Cron(cron) => *cron,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn rate_units() {
        assert_eq!(
            ScheduleExpression::parse("rate(1 minute)").unwrap(),
            ScheduleExpression::Rate(Duration::from_secs(60))
        );
        assert_eq!(
            ScheduleExpression::parse("rate(2 hours)").unwrap(),
            ScheduleExpression::Rate(Duration::from_secs(7200))
        );
        assert!(ScheduleExpression::parse("rate(0 minutes)").is_err());
        assert!(ScheduleExpression::parse("rate(5 weeks)").is_err());
    }

    #[test]
    fn weekday_mornings() {
        let expression = cron("cron(30 8 ? * MON-FRI *)");

        // 2026-03-02 is a Monday, 2026-03-07 a Saturday.
        assert!(expression.matches(at("2026-03-02 08:30")));
        assert!(!expression.matches(at("2026-03-02 08:31")));
        assert!(!expression.matches(at("2026-03-07 08:30")));
    }

    #[test]
    fn steps_and_lists() {
        let expression = cron("cron(0/15 9,17 * * ? *)");

        assert!(expression.matches(at("2026-01-10 09:45")));
        assert!(expression.matches(at("2026-01-10 17:00")));
        assert!(!expression.matches(at("2026-01-10 09:50")));
        assert!(!expression.matches(at("2026-01-10 10:00")));
    }

    #[test]
    fn last_day_forms() {
        let last = cron("cron(0 0 L * ? *)");
        assert!(last.matches(at("2028-02-29 00:00")));
        assert!(!last.matches(at("2028-02-28 00:00")));

        // 2026-05-31 is a Sunday, so the last weekday of May 2026 is Friday the 29th.
        let last_weekday = cron("cron(0 0 LW * ? *)");
        assert!(last_weekday.matches(at("2026-05-29 00:00")));
        assert!(!last_weekday.matches(at("2026-05-31 00:00")));

        // The last Friday (6) of March 2026 is the 27th.
        let last_friday = cron("cron(0 12 ? * 6L *)");
        assert!(last_friday.matches(at("2026-03-27 12:00")));
        assert!(!last_friday.matches(at("2026-03-20 12:00")));
    }

    #[test]
    fn nth_and_nearest_weekday() {
        // The second Tuesday (3) of March 2026 is the 10th.
        let second_tuesday = cron("cron(0 6 ? * 3#2 *)");
        assert!(second_tuesday.matches(at("2026-03-10 06:00")));
        assert!(!second_tuesday.matches(at("2026-03-03 06:00")));

        // 2026-03-01 is a Sunday: the nearest weekday in the month is Monday the 2nd.
        let first_weekday = cron("cron(0 6 1W * ? *)");
        assert!(first_weekday.matches(at("2026-03-02 06:00")));
        assert!(!first_weekday.matches(at("2026-03-01 06:00")));
    }

    #[test]
    fn year_and_month_names() {
        let expression = cron("cron(0 0 1 JAN,JUL ? 2027)");

        assert!(expression.matches(at("2027-07-01 00:00")));
        assert!(!expression.matches(at("2026-07-01 00:00")));
        assert!(!expression.matches(at("2027-06-01 00:00")));
    }

    #[test]
    fn invalid_expressions_name_the_field() {
        let cases = [
            ("cron(0 8 * * MON *)", "one of day of month and day of week must be ?"),
            ("cron(0 8 ? * ? *)", "both ?"),
            ("cron(61 8 * * ? *)", "minutes: 61 is outside 0-59"),
            ("cron(0 8 * FOO ? *)", "month: \"FOO\" is not a number"),
            ("cron(0 8 * * ?)", "expected 6 fields"),
            ("cron(0 20-8 * * ? *)", "runs backwards"),
            ("every day", "unsupported schedule expression"),
        ];
        for (text, expected) in cases {
            let error = ScheduleExpression::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn at_expression() {
        assert_eq!(
            ScheduleExpression::parse("at(2026-03-01T09:00:00)").unwrap(),
            ScheduleExpression::At(at("2026-03-01 09:00"))
        );
        assert!(ScheduleExpression::parse("at(tomorrow)").is_err());
    }
}
