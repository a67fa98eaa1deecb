//! Decimal parsing for amounts as RecordEngine sends them.
//!
//! RecordEngine writes amounts as strings with Python float formatting
//! (`"16500.0"`), but integrations also see plain JSON numbers, empty strings,
//! OCR text with thousands separators (`"1,650.00"`) and a currency symbol
//! (`"¥18,500"`). Everything is parsed from text into `rust_decimal::Decimal`;
//! nothing passes through `f64`.

use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::json::Node;

/// Currency symbols accepted before or after an amount written as text.
const CURRENCY_SYMBOLS: &[char] = &['¥', '￥', '$', '€', '£', '₹', '元'];

/// Why a value could not be read as an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a decimal, got {got}")]
pub struct DecimalError {
    /// The offending JSON value, shortened for messages.
    pub got: String,
}

/// Reads an optional amount: `null`, `""` and whitespace mean absent.
pub fn decimal_from_node(node: &Node) -> Result<Option<Decimal>, DecimalError> {
    let invalid = || DecimalError { got: node.excerpt(60) };

    match node {
        Node::Null => Ok(None),
        Node::Number(text) => parse_number_text(text).map(Some).ok_or_else(invalid),
        Node::String(text) => {
            let trimmed = text.trim();
            if trimmed.is_empty() {
                return Ok(None);
            }
            parse_amount_text(trimmed).map(Some).ok_or_else(invalid)
        }
        Node::Bool(_) | Node::Array(_) | Node::Object(_) => Err(invalid()),
    }
}

/// Parses a JSON number's text: plain (`16500`, `-0.5`) or scientific (`1.65e4`).
fn parse_number_text(text: &str) -> Option<Decimal> {
    if text.contains(['e', 'E']) {
        return Decimal::from_scientific(text).ok();
    }
    Decimal::from_str_exact(text).ok()
}

/// Parses an amount written as text, allowing a currency symbol and
/// comma thousands separators in groups of three.
///
/// Grouping is checked strictly so that a European decimal comma (`"1,5"`) is
/// rejected rather than read as fifteen.
pub fn parse_amount_text(text: &str) -> Option<Decimal> {
    let without_symbol = text
        .trim()
        .trim_start_matches(CURRENCY_SYMBOLS)
        .trim_end_matches(CURRENCY_SYMBOLS)
        .trim();

    let (negative, unsigned) = match without_symbol.strip_prefix('-') {
        Some(rest) => (true, rest.trim_start_matches(CURRENCY_SYMBOLS)),
        None => (false, without_symbol),
    };

    let plain = if unsigned.contains(',') {
        ungroup_thousands(unsigned)?
    } else {
        unsigned.to_owned()
    };
    if plain.is_empty() || plain.starts_with(['+', '-']) {
        return None;
    }

    let value = parse_number_text(&plain)?;
    Some(if negative { -value } else { value })
}

/// Removes comma separators from `1,234,567.89`, or returns `None` when the
/// commas are not thousands separators.
fn ungroup_thousands(text: &str) -> Option<String> {
    let (integer_part, fraction) = match text.split_once('.') {
        Some((integer_part, fraction)) => (integer_part, Some(fraction)),
        None => (text, None),
    };

    let groups: Vec<&str> = integer_part.split(',').collect();
    let first_ok = (1..=3).contains(&groups[0].len());
    let rest_ok = groups[1..].iter().all(|group| group.len() == 3);
    let digits_ok = groups
        .iter()
        .all(|group| group.bytes().all(|byte| byte.is_ascii_digit()));
    if !(first_ok && rest_ok && digits_ok) {
        return None;
    }

    let mut plain = groups.concat();
    if let Some(fraction) = fraction {
        plain.push('.');
        plain.push_str(fraction);
    }
    Some(plain)
}

/// Rounds to two decimal places, half away from zero (commercial rounding:
/// `0.125` becomes `0.13`, `-0.125` becomes `-0.13`).
/// The result always has scale 2, so `7` is written `7.00`.
pub fn round_to_cents(value: Decimal) -> Decimal {
    let mut rounded = value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    rounded
}

/// Parses a decimal from configuration text, without symbols or grouping.
pub fn decimal_from_config(text: &str) -> Option<Decimal> {
    Decimal::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn parse(json: &str) -> Result<Option<Decimal>, DecimalError> {
        decimal_from_node(&Node::parse(json).unwrap())
    }

    #[test]
    fn strings_and_numbers_parse_exactly() {
        let cases = [
            (r#""16500.0""#, "16500.0"),
            (r#""16500""#, "16500"),
            ("16500", "16500"),
            ("16500.5", "16500.5"),
            ("0.1", "0.1"),
            ("1.65e4", "16500"),
            (r#""  42.10 ""#, "42.10"),
            (r#""1,650.00""#, "1650.00"),
            (r#""¥18,500""#, "18500"),
            (r#""18,500 元""#, "18500"),
            (r#""-$3.20""#, "-3.20"),
            (r#""1,234,567.891""#, "1234567.891"),
        ];
        for (json, expected) in cases {
            assert_eq!(parse(json), Ok(Some(dec(expected))), "input {json}");
        }
    }

    #[test]
    fn empty_and_null_are_absent() {
        assert_eq!(parse(r#""""#), Ok(None));
        assert_eq!(parse(r#""   ""#), Ok(None));
        assert_eq!(parse("null"), Ok(None));
    }

    #[test]
    fn invalid_values_name_what_arrived() {
        assert_eq!(parse(r#""abc""#), Err(DecimalError { got: r#""abc""#.into() }));
        assert!(parse(r#""1,5""#).is_err(), "a decimal comma is ambiguous");
        assert!(parse(r#""12,34,567""#).is_err());
        assert!(parse(r#""--1""#).is_err());
        assert!(parse(r#""+1""#).is_err());
        assert!(parse("true").is_err());
        assert!(parse("[1]").is_err());
        assert!(parse(r#"{"amount": 1}"#).is_err());
    }

    #[test]
    fn addition_is_exact() {
        let sum = dec("0.1") + dec("0.2");

        assert_eq!(sum, dec("0.3"));
        assert_eq!(round_to_cents(sum).to_string(), "0.30");
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(round_to_cents(dec("0.125")), dec("0.13"));
        assert_eq!(round_to_cents(dec("-0.125")), dec("-0.13"));
        assert_eq!(round_to_cents(dec("2.344")), dec("2.34"));
        assert_eq!(round_to_cents(dec("7")).to_string(), "7.00");
    }
}
