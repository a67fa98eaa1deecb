//! Builders for JSON request bodies whose amounts must keep their decimal
//! text: a [`Node::Number`] is written exactly as given, never through `f64`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::json::Node;

/// Builds a JSON object from `(name, value)` pairs.
pub fn object<const N: usize>(members: [(&str, Node); N]) -> Node {
    Node::Object(
        members
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    )
}

/// Builds a JSON string.
pub fn text(value: impl Into<String>) -> Node {
    Node::String(value.into())
}

/// Builds a JSON number with the decimal's exact text (`16500.00`).
pub fn number(value: Decimal) -> Node {
    Node::Number(value.to_string())
}

/// Adds a member when `value` is present.
pub fn insert_some(node: &mut Node, name: &str, value: Option<Node>) {
    if let (Node::Object(members), Some(value)) = (node, value) {
        members.insert(name.to_owned(), value);
    }
}

/// Builds an empty JSON object.
pub fn empty() -> Node {
    Node::Object(BTreeMap::new())
}

/// Cuts text to at most `max_chars` characters, for length-limited fields.
pub fn cut_chars(value: &str, max_chars: usize) -> String {
    value.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_text() {
        let node = object([("Amount", number("0.30".parse().unwrap())), ("Name", text("发票"))]);

        assert_eq!(node.to_canonical_string(), r#"{"Amount":0.30,"Name":"发票"}"#);
    }
}
