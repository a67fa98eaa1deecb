//! An order-preserving JSON tree that keeps every number as its source text.
//!
//! The servers echo money back to the client (a QuickBooks `TotalAmt`, a Xero
//! `LineAmount`, the amounts of an export webhook) and record request bodies
//! for tests to compare. `serde_json::Value` would turn `16500.10` into an
//! `f64` and write it back as `16500.1`, so bodies are read into this tree
//! instead. Object members keep their order, so an export payload keeps the
//! documented field order (envelope first).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;

/// One JSON value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Json {
    #[default]
    Null,
    Bool(bool),
    /// The number exactly as written, for example `16500.50`.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Members in source order. A repeated key keeps its first position and its last value.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses JSON text; errors carry serde_json's line and column.
    pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(text)?;
        Self::from_raw(raw)
    }

    /// Parses JSON bytes, which must be UTF-8.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Json, serde_json::Error> {
        let raw: &RawValue = serde_json::from_slice(bytes)?;
        Self::from_raw(raw)
    }

    // serde_json limits nesting to 128 levels in the outer parse, which also bounds this recursion.
    fn from_raw(raw: &RawValue) -> Result<Json, serde_json::Error> {
        let text = raw.get();
        let value = match text.as_bytes().first() {
            Some(b'{') => {
                let members: OrderedMembers = serde_json::from_str(text)?;
                let mut object = Json::Object(Vec::with_capacity(members.0.len()));
                for (key, member) in members.0 {
                    object.insert(&key, Self::from_raw(&member)?);
                }
                object
            }
            Some(b'[') => {
                let elements: Vec<&RawValue> = serde_json::from_str(text)?;
                let mut array = Vec::with_capacity(elements.len());
                for element in elements {
                    array.push(Self::from_raw(element)?);
                }
                Json::Array(array)
            }
            Some(b'"') => Json::String(serde_json::from_str(text)?),
            Some(b't') => Json::Bool(true),
            Some(b'f') => Json::Bool(false),
            Some(b'n') => Json::Null,
            _ => Json::Number(text.to_owned()),
        };
        Ok(value)
    }

    /// Builds an object from `(key, value)` pairs in the given order.
    pub fn object<K: Into<String>>(members: impl IntoIterator<Item = (K, Json)>) -> Json {
        let mut object = Json::Object(Vec::new());
        for (key, value) in members {
            object.insert(&key.into(), value);
        }
        object
    }

    /// Creates a number from a decimal, written with its scale (`16500.0` stays `16500.0`).
    pub fn decimal(value: Decimal) -> Json {
        Json::Number(value.to_string())
    }

    /// Returns the member `key` of an object, or `None` for a missing key or a non-object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(name, _)| name == key).map(|(_, value)| value),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Object(members) => members.iter_mut().find(|(name, _)| name == key).map(|(_, value)| value),
            _ => None,
        }
    }

    /// Sets member `key`, replacing an existing value in place or appending a new member.
    /// Does nothing unless `self` is an object.
    pub fn insert(&mut self, key: &str, value: Json) {
        let Json::Object(members) = self else {
            return;
        };
        match members.iter_mut().find(|(name, _)| name == key) {
            Some((_, existing)) => *existing = value,
            None => members.push((key.to_owned(), value)),
        }
    }

    /// Removes member `key` and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Json> {
        let Json::Object(members) = self else {
            return None;
        };
        let index = members.iter().position(|(name, _)| name == key)?;
        Some(members.remove(index).1)
    }

    /// Merges `patch` into `self`: objects merge member by member, recursively, and any
    /// other patch value (including `null`) replaces the current value.
    pub fn merge(&mut self, patch: Json) {
        match (self, patch) {
            (target @ Json::Object(_), Json::Object(members)) => {
                for (key, value) in members {
                    match target.get_mut(&key) {
                        Some(existing) if matches!(existing, Json::Object(_)) => existing.merge(value),
                        _ => target.insert(&key, value),
                    }
                }
            }
            (target, patch) => *target = patch,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(elements) => Some(elements),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// Text of a string, or the source text of a number or boolean; `None` for anything else.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Json::String(text) | Json::Number(text) => Some(text.clone()),
            Json::Bool(value) => Some(value.to_string()),
            _ => None,
        }
    }

    /// Reads a number, or a string holding a number, as a decimal without going through `f64`.
    pub fn as_decimal(&self) -> Option<Decimal> {
        let text = match self {
            Json::Number(text) => text.as_str(),
            Json::String(text) => text.trim(),
            _ => return None,
        };
        Decimal::from_str(text).or_else(|_| Decimal::from_scientific(text)).ok()
    }

    /// Reads an integer given as a JSON integer or as a string of digits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(text) => text.parse().ok(),
            Json::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    }

    /// Serialises without whitespace, keeping member order and number text.
    pub fn to_compact_string(&self) -> String {
        // Serialising fails only for number text that is not valid JSON, and every
        // `Number` comes from serde_json's parser or from a `Decimal`.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Serialises with two-space indentation.
    pub fn to_pretty_string(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Returns the JSON type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_compact_string())
    }
}

impl From<&str> for Json {
    fn from(text: &str) -> Json {
        Json::String(text.to_owned())
    }
}

impl From<String> for Json {
    fn from(text: String) -> Json {
        Json::String(text)
    }
}

impl From<&String> for Json {
    fn from(text: &String) -> Json {
        Json::String(text.clone())
    }
}

impl From<bool> for Json {
    fn from(value: bool) -> Json {
        Json::Bool(value)
    }
}

impl From<i64> for Json {
    fn from(value: i64) -> Json {
        Json::Number(value.to_string())
    }
}

impl From<u64> for Json {
    fn from(value: u64) -> Json {
        Json::Number(value.to_string())
    }
}

impl From<Vec<Json>> for Json {
    fn from(elements: Vec<Json>) -> Json {
        Json::Array(elements)
    }
}

impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(value: Option<T>) -> Json {
        value.map_or(Json::Null, Into::into)
    }
}

/// Converts a `serde_json::Value` built with `json!`. Only use it for values
/// without fractional numbers, because `Value` stores those as `f64`.
impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Json {
        Json::parse(&value.to_string()).unwrap_or_default()
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(value) => serializer.serialize_bool(*value),
            Json::Number(text) => {
                // serde_json writes a RawValue unchanged. A number built from a
                // decimal or parsed by serde_json is valid JSON number text.
                let raw = RawValue::from_string(text.clone()).map_err(serde::ser::Error::custom)?;
                raw.serialize(serializer)
            }
            Json::String(text) => serializer.serialize_str(text),
            Json::Array(elements) => {
                let mut sequence = serializer.serialize_seq(Some(elements.len()))?;
                for element in elements {
                    sequence.serialize_element(element)?;
                }
                sequence.end()
            }
            Json::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (key, value) in members {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    /// Deserialises from serde_json only, because the number text is taken from a raw value.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(deserializer)?;
        Json::from_raw(&raw).map_err(serde::de::Error::custom)
    }
}

/// Object members as raw values, in source order.
struct OrderedMembers(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for OrderedMembers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedMembersVisitor)
    }
}

struct OrderedMembersVisitor;

impl<'de> Visitor<'de> for OrderedMembersVisitor {
    type Value = OrderedMembers;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
            members.push((key, value));
        }
        Ok(OrderedMembers(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_text() {
        let value = Json::parse(r#"{"a": 16500.10, "b": 1e3, "c": -0.0, "d": 279.84}"#).unwrap();

        assert_eq!(value.get("a"), Some(&Json::Number("16500.10".into())));
        assert_eq!(value.get("b"), Some(&Json::Number("1e3".into())));
        assert_eq!(
            value.to_compact_string(),
            r#"{"a":16500.10,"b":1e3,"c":-0.0,"d":279.84}"#
        );
    }

    #[test]
    fn members_keep_source_order() {
        let value = Json::parse(r#"{"z": 1, "a": {"y": [true, null], "b": "发票"}}"#).unwrap();

        assert_eq!(value.to_compact_string(), r#"{"z":1,"a":{"y":[true,null],"b":"发票"}}"#);
    }

    #[test]
    fn repeated_key_keeps_last_value() {
        let value = Json::parse(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap();

        assert_eq!(value.to_compact_string(), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn merge_is_recursive() {
        let mut target = Json::parse(r#"{"a": {"x": 1, "y": 2}, "b": [1], "c": "keep"}"#).unwrap();
        let patch = Json::parse(r#"{"a": {"y": 20.50, "z": 3}, "b": {"new": true}, "d": null}"#).unwrap();

        target.merge(patch);

        assert_eq!(
            target.to_compact_string(),
            r#"{"a":{"x":1,"y":20.50,"z":3},"b":{"new":true},"c":"keep","d":null}"#
        );
    }

    #[test]
    fn decimals_read_without_floats() {
        assert_eq!(Json::Number("279.84".into()).as_decimal(), Some(Decimal::new(27984, 2)));
        assert_eq!(
            Json::String(" 16500.0 ".into()).as_decimal(),
            Some(Decimal::new(165000, 1))
        );
        assert_eq!(Json::Number("1e3".into()).as_decimal(), Some(Decimal::new(1000, 0)));
        assert_eq!(Json::String("n/a".into()).as_decimal(), None);
        assert_eq!(Json::Null.as_decimal(), None);
    }

    #[test]
    fn invalid_text_is_an_error() {
        assert!(Json::parse("{").is_err());
        assert!(Json::parse("").is_err());
        assert!(Json::parse("[1] extra").is_err());
        assert!(Json::parse_bytes(b"\xff").is_err());
    }

    #[test]
    fn deserialize_inside_a_struct() {
        #[derive(serde::Deserialize)]
        struct Holder {
            body: Json,
        }

        let holder: Holder = serde_json::from_str(r#"{"body": {"total": 0.30}}"#).unwrap();

        assert_eq!(holder.body.get("total"), Some(&Json::Number("0.30".into())));
    }
}
