//! A JSON tree that keeps every number as the text it arrived in.
//!
//! `serde_json::Value` stores a number with a fraction as `f64` unless the
//! `arbitrary_precision` feature is on, and that feature breaks the untagged
//! enums `lambda_http` uses to tell API Gateway event shapes apart. Money must
//! never pass through floating point, so webhook bodies are read into this tree
//! instead. serde_json still does all the parsing (through `RawValue`); numbers
//! simply keep their source text until someone parses them as decimals.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;

/// One JSON value. Objects are ordered by key, which makes
/// [`Node::to_canonical_string`] stable for hashing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Node {
    #[default]
    Null,
    Bool(bool),
    /// The number exactly as written in the source, for example `16500.50`.
    Number(String),
    String(String),
    Array(Vec<Node>),
    Object(BTreeMap<String, Node>),
}

impl Node {
    /// Parses JSON text. Errors carry serde_json's line and column.
    pub fn parse(text: &str) -> Result<Node, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(text)?;
        Self::from_raw(raw)
    }

    // NOTE: each nesting level is parsed again from its raw text, so the cost
    // grows with depth times size. serde_json's outer parse has already limited
    // depth to 128, which also bounds this recursion.
    fn from_raw(raw: &RawValue) -> Result<Node, serde_json::Error> {
        let text = raw.get();
        let node = match text.as_bytes().first() {
            Some(b'{') => {
                let members: BTreeMap<String, &RawValue> = serde_json::from_str(text)?;
                let mut object = BTreeMap::new();
                for (key, value) in members {
                    object.insert(key, Self::from_raw(value)?);
                }
                Node::Object(object)
            }
            Some(b'[') => {
                let elements: Vec<&RawValue> = serde_json::from_str(text)?;
                let mut array = Vec::with_capacity(elements.len());
                for element in elements {
                    array.push(Self::from_raw(element)?);
                }
                Node::Array(array)
            }
            Some(b'"') => Node::String(serde_json::from_str(text)?),
            Some(b't') => Node::Bool(true),
            Some(b'f') => Node::Bool(false),
            Some(b'n') => Node::Null,
            _ => Node::Number(text.to_owned()),
        };
        Ok(node)
    }

    /// Returns the member `key` of an object, or `None` for a missing key or a non-object.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(object) => object.get(key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&BTreeMap<String, Node>> {
        match self {
            Node::Object(object) => Some(object),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    /// The JSON type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }

    /// Serialises without whitespace, with object keys in sorted order and
    /// numbers as they arrived, so equal content always gives equal text.
    pub fn to_canonical_string(&self) -> String {
        // Serialising a tree of strings, numbers and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A short JSON rendering for error messages, cut after `max_chars` characters.
    pub fn excerpt(&self, max_chars: usize) -> String {
        let text = self.to_canonical_string();
        if text.chars().count() <= max_chars {
            return text;
        }
        let cut: String = text.chars().take(max_chars).collect();
        format!("{cut}…")
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical_string())
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(value) => serializer.serialize_bool(*value),
            Node::Number(text) => {
                // RawValue writes the text unchanged under serde_json. The text
                // came from serde_json's own parser, so it is a valid number.
                let raw = RawValue::from_string(text.clone()).map_err(serde::ser::Error::custom)?;
                raw.serialize(serializer)
            }
            Node::String(text) => serializer.serialize_str(text),
            Node::Array(array) => {
                let mut seq = serializer.serialize_seq(Some(array.len()))?;
                for element in array {
                    seq.serialize_element(element)?;
                }
                seq.end()
            }
            Node::Object(object) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                for (key, value) in object {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Node {
    /// Deserialises from serde_json only: the number text is taken from a raw value.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = serde::Deserialize::deserialize(deserializer)?;
        Node::from_raw(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_text() {
        let node = Node::parse(r#"{"a": 16500.10, "b": 1e3, "c": -0.0}"#).unwrap();

        assert_eq!(node.get("a"), Some(&Node::Number("16500.10".into())));
        assert_eq!(node.get("b"), Some(&Node::Number("1e3".into())));
        assert_eq!(node.get("c"), Some(&Node::Number("-0.0".into())));
    }

    #[test]
    fn canonical_text_sorts_keys_and_keeps_numbers() {
        let node = Node::parse(" {\"b\": [1.50, null, true], \"a\": \"发票\"} ").unwrap();

        assert_eq!(node.to_canonical_string(), r#"{"a":"发票","b":[1.50,null,true]}"#);
    }

    #[test]
    fn escaped_strings_and_keys_round_trip() {
        let node = Node::parse(r#"{"PO \"Number\"": "line\nbreak \u00e9"}"#).unwrap();

        assert_eq!(node.get("PO \"Number\"").and_then(Node::as_str), Some("line\nbreak é"));
        assert_eq!(Node::parse(&node.to_canonical_string()).unwrap(), node);
    }

    #[test]
    fn invalid_json_is_an_error() {
        assert!(Node::parse("{").is_err());
        assert!(Node::parse("").is_err());
        assert!(Node::parse("{} extra").is_err());
    }

    #[test]
    fn deserialize_inside_a_struct() {
        #[derive(serde::Deserialize)]
        struct Holder {
            payload: Node,
        }

        let holder: Holder = serde_json::from_str(r#"{"payload": {"total": 0.30}}"#).unwrap();

        assert_eq!(holder.payload.get("total"), Some(&Node::Number("0.30".into())));
    }

    #[test]
    fn excerpt_cuts_on_characters() {
        let node = Node::String("发票发票发票".into());

        assert_eq!(node.excerpt(4), "\"发票发…");
    }
}
