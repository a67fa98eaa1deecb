//! Typed configuration from environment variables. A missing or invalid
//! variable fails at start-up with a message naming it.

use std::collections::BTreeMap;
use std::str::FromStr;

/// A configuration problem, naming the variable and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Reads a required variable.
pub fn required(name: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        Ok(_) => Err(ConfigError(format!(
            "environment variable {name} is empty; set it in template.yaml"
        ))),
        Err(_) => Err(ConfigError(format!(
            "environment variable {name} is not set; set it in template.yaml"
        ))),
    }
}

/// Reads an optional variable; empty counts as unset.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// Reads and parses an optional variable, with a default.
pub fn parsed_or<T: FromStr>(name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match optional(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|error| ConfigError(format!("environment variable {name}={text:?} is invalid: {error}"))),
    }
}

/// Parses `name=value` pairs separated by commas, as in
/// `DESTINATION_QUEUES=accounting=https://…,alerts=https://…`.
pub fn parse_pairs(name: &str, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut pairs = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let Some((key, value)) = entry.split_once('=') else {
            return Err(ConfigError(format!(
                "environment variable {name}: entry {entry:?} is not of the form name=value"
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            return Err(ConfigError(format!(
                "environment variable {name}: entry {entry:?} has an empty name or value"
            )));
        }
        pairs.insert(key.to_owned(), value.to_owned());
    }
    if pairs.is_empty() {
        return Err(ConfigError(format!("environment variable {name} lists no entries")));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse() {
        let pairs = parse_pairs("Q", "accounting=https://q/1, alerts=https://q/2").unwrap();

        assert_eq!(pairs.get("accounting").map(String::as_str), Some("https://q/1"));
        assert_eq!(pairs.len(), 2);
    }

    #[test]
    fn bad_pairs_name_the_variable() {
        assert!(
            parse_pairs("Q", "accounting")
                .unwrap_err()
                .0
                .contains("Q: entry \"accounting\"")
        );
        assert!(parse_pairs("Q", "=x").is_err());
        assert!(parse_pairs("Q", " , ").unwrap_err().0.contains("lists no entries"));
    }
}
