//! Routing rules: which destinations receive an export.
//!
//! Rules are data. A YAML rule set (the bundled default is
//! `infra/routing-rules.yaml`) lists rules that are evaluated in order. A rule
//! fires when all its conditions hold; it then adds its routes and
//! annotations, and `stop: true` ends evaluation. Every decision records the
//! rule-set version and the rules that fired.
//!
//! A rule set is validated when it is loaded: an unknown field, operator or
//! destination is an error that names the rule.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::json::Node;
use crate::money::{decimal_from_node, parse_amount_text};
use crate::payload::ExportDocument;

/// The rule set shipped with the bundle.
pub const BUNDLED_RULES: &str = include_str!("../../infra/routing-rules.yaml");

/// The destinations the default template creates queues for.
pub const DEFAULT_DESTINATIONS: [&str; 4] = ["accounting", "china-accounting", "crm", "alerts"];

/// A rule set that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("routing rules ({source_name}): {message}")]
pub struct RulesError {
    /// Where the rules came from, for example `bundled` or `s3://bucket/key`.
    pub source_name: String,
    pub message: String,
}

/// Whether a Bill needs approval in the accounting system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    #[default]
    Required,
    Skip,
}

/// One destination chosen for an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub destination: String,
    #[serde(default)]
    pub approval: Approval,
    /// The rule that chose this destination.
    pub rule: String,
}

/// The outcome of evaluating a rule set on one export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub ruleset_version: String,
    /// Names of the rules that fired, in evaluation order.
    pub rules_fired: Vec<String>,
    pub routes: Vec<Route>,
    /// Flags set by rules for the dispatchers, for example `single_line_bill`.
    #[serde(default)]
    pub annotations: Vec<String>,
}

impl Decision {
    pub fn destinations(&self) -> Vec<&str> {
        self.routes.iter().map(|route| route.destination.as_str()).collect()
    }
}

/// How one rule fared, for `bridgectl rules check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleOutcome {
    pub name: String,
    /// `fired`, `not matched`, or `not evaluated` after an earlier `stop`.
    pub result: &'static str,
    pub conditions: Vec<ConditionOutcome>,
}

/// How one condition fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConditionOutcome {
    pub condition: String,
    /// The value found at the path, as JSON text; `None` when the path is missing.
    pub actual: Option<String>,
    pub holds: bool,
}

/// A decision with the outcome of every rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub decision: Decision,
    pub rules: Vec<RuleOutcome>,
}

/// A validated rule set.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    pub version: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub conditions: Vec<Condition>,
    pub routes: Vec<(String, Approval)>,
    pub annotations: Vec<String>,
    pub stop: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    path_text: String,
    path: Vec<String>,
    operator: Operator,
    value: RuleValue,
    ignore_case: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Exists,
    Empty,
}

const OPERATOR_NAMES: &str = "eq, ne, lt, le, gt, ge, in, not_in, exists, empty";

impl Operator {
    fn parse(name: &str) -> Option<Self> {
        let operator = match name {
            "eq" => Operator::Eq,
            "ne" => Operator::Ne,
            "lt" => Operator::Lt,
            "le" => Operator::Le,
            "gt" => Operator::Gt,
            "ge" => Operator::Ge,
            "in" => Operator::In,
            "not_in" => Operator::NotIn,
            "exists" => Operator::Exists,
            "empty" => Operator::Empty,
            _ => return None,
        };
        Some(operator)
    }

    fn name(self) -> &'static str {
        match self {
            Operator::Eq => "eq",
            Operator::Ne => "ne",
            Operator::Lt => "lt",
            Operator::Le => "le",
            Operator::Gt => "gt",
            Operator::Ge => "ge",
            Operator::In => "in",
            Operator::NotIn => "not_in",
            Operator::Exists => "exists",
            Operator::Empty => "empty",
        }
    }
}

/// A constant in a condition.
#[derive(Debug, Clone, PartialEq)]
enum RuleValue {
    Null,
    Bool(bool),
    Number(Decimal),
    Text(String),
    List(Vec<RuleValue>),
}

impl fmt::Display for RuleValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleValue::Null => f.write_str("null"),
            RuleValue::Bool(value) => write!(f, "{value}"),
            RuleValue::Number(value) => write!(f, "{value}"),
            RuleValue::Text(text) => write!(f, "{text:?}"),
            RuleValue::List(values) => {
                let items: Vec<String> = values.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator {
            Operator::Exists | Operator::Empty if self.value == RuleValue::Bool(true) => {
                write!(f, "{} {}", self.path_text, self.operator.name())
            }
            _ => write!(f, "{} {} {}", self.path_text, self.operator.name(), self.value),
        }
    }
}

// The YAML shapes, kept apart from the validated types so that every
// validation error can name the rule it belongs to.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSetSpec {
    version: serde_yaml_ng::Value,
    rules: Vec<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    when: Vec<ConditionSpec>,
    #[serde(default)]
    route: Vec<RouteSpec>,
    #[serde(default)]
    annotate: Vec<String>,
    #[serde(default)]
    stop: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionSpec {
    path: String,
    op: String,
    #[serde(default)]
    value: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    ignore_case: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RouteSpec {
    Name(String),
    Detailed(DetailedRouteSpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetailedRouteSpec {
    destination: String,
    #[serde(default)]
    approval: Approval,
}

impl RuleSet {
    /// Loads and validates a rule set. `destinations` are the names that
    /// routes may use (one SQS queue each).
    pub fn from_yaml(text: &str, source_name: &str, destinations: &BTreeSet<String>) -> Result<Self, RulesError> {
        let fail = |message: String| RulesError {
            source_name: source_name.to_owned(),
            message,
        };

        let spec: RuleSetSpec = serde_yaml_ng::from_str(text).map_err(|error| fail(error.to_string()))?;
        let version = yaml_scalar_text(&spec.version)
            .filter(|version| !version.trim().is_empty())
            .ok_or_else(|| fail("`version` must be a non-empty string, for example \"2026-12-04.1\"".into()))?;

        let mut rules = Vec::with_capacity(spec.rules.len());
        let mut names = BTreeSet::new();
        for (index, value) in spec.rules.into_iter().enumerate() {
            let label = rule_label(index, &value);
            let rule_spec: RuleSpec =
                serde_yaml_ng::from_value(value).map_err(|error| fail(format!("{label}: {error}")))?;
            let rule =
                Rule::from_spec(rule_spec, destinations).map_err(|message| fail(format!("{label}: {message}")))?;
            if !names.insert(rule.name.clone()) {
                return Err(fail(format!(
                    "{label}: the name is used by an earlier rule; rule names must be unique"
                )));
            }
            rules.push(rule);
        }

        Ok(RuleSet { version, rules })
    }

    /// Chooses the destinations for an export.
    pub fn decide(&self, document: &ExportDocument) -> Decision {
        self.evaluate(document).decision
    }

    /// Chooses the destinations and reports how every rule fared.
    pub fn evaluate(&self, document: &ExportDocument) -> Evaluation {
        let view = routing_view(document);
        let mut decision = Decision {
            ruleset_version: self.version.clone(),
            rules_fired: Vec::new(),
            routes: Vec::new(),
            annotations: Vec::new(),
        };
        let mut outcomes = Vec::with_capacity(self.rules.len());
        let mut stopped = false;

        for rule in &self.rules {
            if stopped {
                outcomes.push(RuleOutcome {
                    name: rule.name.clone(),
                    result: "not evaluated",
                    conditions: Vec::new(),
                });
                continue;
            }

            let conditions: Vec<ConditionOutcome> = rule
                .conditions
                .iter()
                .map(|condition| {
                    let actual = lookup(&view, &condition.path);
                    ConditionOutcome {
                        condition: condition.to_string(),
                        actual: actual.map(|node| node.excerpt(80)),
                        holds: condition.holds(actual),
                    }
                })
                .collect();
            let fired = conditions.iter().all(|outcome| outcome.holds);

            if fired {
                decision.rules_fired.push(rule.name.clone());
                for (destination, approval) in &rule.routes {
                    // The first rule to choose a destination sets its options.
                    if !decision.routes.iter().any(|route| &route.destination == destination) {
                        decision.routes.push(Route {
                            destination: destination.clone(),
                            approval: *approval,
                            rule: rule.name.clone(),
                        });
                    }
                }
                for annotation in &rule.annotations {
                    if !decision.annotations.contains(annotation) {
                        decision.annotations.push(annotation.clone());
                    }
                }
                stopped = rule.stop;
            }

            outcomes.push(RuleOutcome {
                name: rule.name.clone(),
                result: if fired { "fired" } else { "not matched" },
                conditions,
            });
        }

        Evaluation {
            decision,
            rules: outcomes,
        }
    }
}

impl Rule {
    fn from_spec(spec: RuleSpec, destinations: &BTreeSet<String>) -> Result<Self, String> {
        if spec.name.trim().is_empty() {
            return Err("`name` must not be empty".into());
        }

        let mut conditions = Vec::with_capacity(spec.when.len());
        for condition in spec.when {
            conditions.push(Condition::from_spec(condition)?);
        }

        let mut routes = Vec::with_capacity(spec.route.len());
        for route in spec.route {
            let (destination, approval) = match route {
                RouteSpec::Name(destination) => (destination, Approval::Required),
                RouteSpec::Detailed(detailed) => (detailed.destination, detailed.approval),
            };
            if !destinations.contains(&destination) {
                let known: Vec<&str> = destinations.iter().map(String::as_str).collect();
                return Err(format!(
                    "unknown destination `{destination}`; configured destinations are {}",
                    known.join(", ")
                ));
            }
            routes.push((destination, approval));
        }

        Ok(Rule {
            name: spec.name,
            conditions,
            routes,
            annotations: spec.annotate,
            stop: spec.stop,
        })
    }
}

impl Condition {
    fn from_spec(spec: ConditionSpec) -> Result<Self, String> {
        let path = parse_path(&spec.path).map_err(|message| format!("path `{}`: {message}", spec.path))?;
        let operator = Operator::parse(&spec.op)
            .ok_or_else(|| format!("unknown operator `{}`; use one of {OPERATOR_NAMES}", spec.op))?;

        let value = match (&spec.value, operator) {
            (None, Operator::Exists | Operator::Empty) => RuleValue::Bool(true),
            (None, _) => return Err(format!("operator `{}` on `{}` needs a `value`", spec.op, spec.path)),
            (Some(value), _) => {
                rule_value(value).map_err(|message| format!("`value` of `{}`: {message}", spec.path))?
            }
        };

        match operator {
            Operator::In | Operator::NotIn if !matches!(value, RuleValue::List(_)) => {
                return Err(format!(
                    "operator `{}` on `{}` needs a list `value`",
                    spec.op, spec.path
                ));
            }
            Operator::Exists | Operator::Empty if !matches!(value, RuleValue::Bool(_)) => {
                return Err(format!(
                    "operator `{}` on `{}` takes `value: true` or `value: false`",
                    spec.op, spec.path
                ));
            }
            Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge
                if !matches!(value, RuleValue::Number(_) | RuleValue::Text(_)) =>
            {
                return Err(format!(
                    "operator `{}` on `{}` needs a number or text `value`",
                    spec.op, spec.path
                ));
            }
            _ => {}
        }

        Ok(Condition {
            path_text: spec.path,
            path,
            operator,
            value,
            ignore_case: spec.ignore_case,
        })
    }

    fn holds(&self, actual: Option<&Node>) -> bool {
        match self.operator {
            Operator::Exists => {
                let exists = actual.is_some_and(|node| !node.is_null());
                exists == (self.value == RuleValue::Bool(true))
            }
            Operator::Empty => is_empty(actual) == (self.value == RuleValue::Bool(true)),
            Operator::Eq => actual.is_some_and(|node| self.equals(node, &self.value)),
            Operator::Ne => !actual.is_some_and(|node| self.equals(node, &self.value)),
            Operator::In => match (&self.value, actual) {
                (RuleValue::List(values), Some(node)) => values.iter().any(|value| self.equals(node, value)),
                _ => false,
            },
            Operator::NotIn => match (&self.value, actual) {
                (RuleValue::List(values), Some(node)) => !values.iter().any(|value| self.equals(node, value)),
                _ => true,
            },
            Operator::Lt => self.compare(actual) == Some(Ordering::Less),
            Operator::Le => matches!(self.compare(actual), Some(Ordering::Less | Ordering::Equal)),
            Operator::Gt => self.compare(actual) == Some(Ordering::Greater),
            Operator::Ge => matches!(self.compare(actual), Some(Ordering::Greater | Ordering::Equal)),
        }
    }

    fn equals(&self, node: &Node, value: &RuleValue) -> bool {
        match value {
            RuleValue::Null => node.is_null(),
            RuleValue::Bool(expected) => matches!(node, Node::Bool(actual) if actual == expected),
            RuleValue::Number(expected) => node_decimal(node).is_some_and(|actual| actual == *expected),
            RuleValue::Text(expected) => match node_text(node) {
                Some(actual) if self.ignore_case => actual.trim().to_lowercase() == expected.trim().to_lowercase(),
                Some(actual) => actual == expected.as_str(),
                None => false,
            },
            RuleValue::List(_) => false,
        }
    }

    /// Orders the value at the path against the constant: as decimals when
    /// the constant is a number, as text otherwise (ISO dates order correctly
    /// as text). Missing or incomparable values give `None`, so no ordering
    /// operator holds for them.
    fn compare(&self, actual: Option<&Node>) -> Option<Ordering> {
        let node = actual?;
        match &self.value {
            RuleValue::Number(expected) => Some(node_decimal(node)?.cmp(expected)),
            RuleValue::Text(expected) => Some(node_text(node)?.cmp(expected.as_str())),
            _ => None,
        }
    }
}

fn node_decimal(node: &Node) -> Option<Decimal> {
    match node {
        Node::Number(_) => decimal_from_node(node).ok().flatten(),
        Node::String(text) => parse_amount_text(text),
        _ => None,
    }
}

fn node_text(node: &Node) -> Option<&str> {
    match node {
        Node::String(text) | Node::Number(text) => Some(text),
        _ => None,
    }
}

fn is_empty(actual: Option<&Node>) -> bool {
    match actual {
        None | Some(Node::Null) => true,
        Some(Node::String(text)) => text.trim().is_empty(),
        Some(Node::Array(array)) => array.is_empty(),
        Some(Node::Object(object)) => object.is_empty(),
        Some(Node::Bool(_) | Node::Number(_)) => false,
    }
}

/// The tree rules are evaluated against: the payload as received, with
/// `line_items` lifted to the top level when a profile nests it under
/// `extracted_fields`.
fn routing_view(document: &ExportDocument) -> std::borrow::Cow<'_, Node> {
    let nested = document
        .raw
        .get("extracted_fields")
        .and_then(|fields| fields.get("line_items"))
        .filter(|items| !items.is_null());
    let top_missing = document.raw.get("line_items").is_none_or(Node::is_null);

    match (nested, &document.raw) {
        (Some(items), Node::Object(object)) if top_missing => {
            let mut lifted = object.clone();
            lifted.insert("line_items".into(), items.clone());
            std::borrow::Cow::Owned(Node::Object(lifted))
        }
        _ => std::borrow::Cow::Borrowed(&document.raw),
    }
}

/// Follows a parsed path; numeric segments index arrays.
fn lookup<'a>(root: &'a Node, path: &[String]) -> Option<&'a Node> {
    let mut node = root;
    for segment in path {
        node = match node {
            Node::Object(object) => object.get(segment)?,
            Node::Array(array) => array.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Splits a dotted path. A segment in double quotes may contain dots and
/// spaces (`custom_fields."PO Number"`); `\"` and `\\` escape inside quotes.
pub fn parse_path(text: &str) -> Result<Vec<String>, String> {
    let mut segments = Vec::new();
    let mut chars = text.chars().peekable();

    loop {
        let mut segment = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some(escaped @ ('"' | '\\')) => segment.push(escaped),
                        _ => return Err("only \\\" and \\\\ may follow a backslash in a quoted segment".into()),
                    },
                    other => segment.push(other),
                }
            }
            if !closed {
                return Err("a quoted segment is not closed".into());
            }
            if !matches!(chars.peek(), None | Some('.')) {
                return Err("a quoted segment must be followed by `.` or the end of the path".into());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == '"' {
                    return Err("quote a whole segment, not part of one".into());
                }
                segment.push(c);
                chars.next();
            }
            if segment.trim().is_empty() {
                return Err("empty segment; write segments separated by single dots".into());
            }
        }
        segments.push(segment);

        match chars.next() {
            None => return Ok(segments),
            Some('.') => continue,
            Some(_) => unreachable!("segments end at a dot or the end of the path"),
        }
    }
}

fn rule_label(index: usize, value: &serde_yaml_ng::Value) -> String {
    match value.get("name").and_then(serde_yaml_ng::Value::as_str) {
        Some(name) => format!("rule {} `{name}`", index + 1),
        None => format!("rule {}", index + 1),
    }
}

fn yaml_scalar_text(value: &serde_yaml_ng::Value) -> Option<String> {
    match value {
        serde_yaml_ng::Value::String(text) => Some(text.clone()),
        serde_yaml_ng::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn rule_value(value: &serde_yaml_ng::Value) -> Result<RuleValue, String> {
    use serde_yaml_ng::Value;

    match value {
        Value::Null => Ok(RuleValue::Null),
        Value::Bool(flag) => Ok(RuleValue::Bool(*flag)),
        // NOTE: YAML parses `0.1` as f64. Its shortest decimal rendering
        // (`0.1`) is what the author wrote for up to 15 significant digits;
        // quote longer constants so they are read as exact text.
        Value::Number(number) => parse_amount_text(&number.to_string())
            .map(RuleValue::Number)
            .ok_or_else(|| format!("{number} is not a decimal")),
        Value::String(text) => Ok(RuleValue::Text(text.clone())),
        Value::Sequence(items) => items
            .iter()
            .map(|item| match rule_value(item)? {
                RuleValue::List(_) => Err("lists cannot be nested".to_owned()),
                scalar => Ok(scalar),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(RuleValue::List),
        Value::Mapping(_) | Value::Tagged(_) => Err("expected a string, number, boolean, null or list".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{WebhookEvent, parse_webhook};

    const DOCUMENTED: &str = include_str!("../../tests/fixtures/recordengine/document-exported.json");

    fn destinations() -> BTreeSet<String> {
        DEFAULT_DESTINATIONS.iter().map(|name| name.to_string()).collect()
    }

    fn bundled() -> RuleSet {
        RuleSet::from_yaml(BUNDLED_RULES, "bundled", &destinations()).expect("bundled rules load")
    }

    fn document(edit: impl FnOnce(&mut std::collections::BTreeMap<String, Node>)) -> ExportDocument {
        let mut root = Node::parse(DOCUMENTED).unwrap();
        if let Node::Object(object) = &mut root {
            edit(object);
        }
        match parse_webhook(root.to_canonical_string().as_bytes()).unwrap() {
            WebhookEvent::Export(document) => *document,
            other => panic!("not an export: {other:?}"),
        }
    }

    fn set_field(object: &mut std::collections::BTreeMap<String, Node>, key: &str, json: &str) {
        if let Some(Node::Object(fields)) = object.get_mut("extracted_fields") {
            fields.insert(key.into(), Node::parse(json).unwrap());
        }
    }

    fn routes(decision: &Decision) -> Vec<(&str, Approval)> {
        decision
            .routes
            .iter()
            .map(|route| (route.destination.as_str(), route.approval))
            .collect()
    }

    #[test]
    fn documented_payload_routes_to_accounting() {
        let decision = bundled().decide(&document(|_| {}));

        assert!(decision.destinations().contains(&"accounting"));
        assert!(decision.rules_fired.contains(&"approval-required".to_string()));
    }

    #[test]
    fn low_confidence_alerts_only() {
        let decision = bundled().decide(&document(|object| {
            object.insert("confidence_score".into(), Node::Number("59".into()));
        }));

        assert_eq!(routes(&decision), vec![("alerts", Approval::Required)]);
        assert_eq!(decision.rules_fired, vec!["low-confidence"]);
    }

    #[test]
    fn confidence_sixty_is_not_low() {
        let decision = bundled().decide(&document(|object| {
            object.insert("confidence_score".into(), Node::Number("60".into()));
        }));

        assert!(decision.destinations().contains(&"accounting"));
        assert!(!decision.destinations().contains(&"alerts"));
    }

    #[test]
    fn cny_goes_to_china_accounting() {
        let decision = bundled().decide(&document(|object| set_field(object, "currency", r#""cny""#)));

        assert!(decision.destinations().contains(&"china-accounting"));
    }

    #[test]
    fn usd_skips_china_accounting() {
        let decision = bundled().decide(&document(|object| set_field(object, "currency", r#""USD""#)));

        assert_eq!(routes(&decision), vec![("accounting", Approval::Required)]);
    }

    #[test]
    fn trusted_vendor_skips_approval() {
        let decision = bundled().decide(&document(|object| {
            object.insert("contact_name".into(), Node::String("Amazon Web Services".into()));
            set_field(object, "currency", r#""USD""#);
        }));

        assert_eq!(routes(&decision), vec![("accounting", Approval::Skip)]);
        assert_eq!(decision.rules_fired, vec!["trusted-vendor"]);
    }

    #[test]
    fn crm_reference_adds_crm() {
        let decision = bundled().decide(&document(|object| {
            object.insert(
                "external_refs".into(),
                Node::parse(r#"{"hubspot": {"record_id": "12345678901", "record_type": "Deal"}}"#).unwrap(),
            );
        }));

        assert!(decision.destinations().contains(&"crm"));
        assert!(decision.destinations().contains(&"accounting"));
    }

    #[test]
    fn missing_line_items_annotates_single_line() {
        let decision = bundled().decide(&document(|object| {
            object.remove("line_items");
        }));

        assert!(decision.annotations.contains(&"single_line_bill".to_string()));
        assert!(decision.rules_fired.contains(&"no-line-items".to_string()));
    }

    #[test]
    fn quoted_and_chinese_paths() {
        assert_eq!(
            parse_path(r#"custom_fields."PO Number""#).unwrap(),
            vec!["custom_fields", "PO Number"]
        );
        assert_eq!(
            parse_path("custom_fields.采购订单号").unwrap(),
            vec!["custom_fields", "采购订单号"]
        );
        assert_eq!(parse_path(r#"a."x.y".b"#).unwrap(), vec!["a", "x.y", "b"]);
        assert_eq!(
            parse_path("line_items.0.amount").unwrap(),
            vec!["line_items", "0", "amount"]
        );
        assert!(parse_path("a..b").is_err());
        assert!(parse_path(r#"a."open"#).is_err());
        assert!(parse_path(r#"a.b"c""#).is_err());
        assert!(parse_path("").is_err());
    }

    fn load(yaml: &str) -> Result<RuleSet, RulesError> {
        RuleSet::from_yaml(yaml, "test.yaml", &destinations())
    }

    #[test]
    fn custom_field_labels_and_decimal_comparison() {
        let rules = load(
            r#"
version: "t1"
rules:
  - name: po-match
    when:
      - { path: 'custom_fields."PO Number"', op: eq, value: PO-2026-099 }
      - { path: extracted_fields.total_amount, op: ge, value: 18500 }
      - { path: extracted_fields.total_amount, op: lt, value: "18500.01" }
    route: [crm]
"#,
        )
        .unwrap();

        let decision = rules.decide(&document(|_| {}));

        assert_eq!(decision.destinations(), vec!["crm"]);
    }

    #[test]
    fn chinese_label_condition() {
        let rules = load(
            r#"
version: "t1"
rules:
  - name: 发票规则
    when: [{ path: custom_fields.采购订单号, op: exists }]
    route: [alerts]
"#,
        )
        .unwrap();

        let decision = rules.decide(&document(|object| {
            object.insert(
                "custom_fields".into(),
                Node::parse(r#"{"采购订单号": "PO-7"}"#).unwrap(),
            );
        }));

        assert_eq!(decision.rules_fired, vec!["发票规则"]);
    }

    #[test]
    fn operators_table() {
        let doc = document(|object| {
            object.insert("confidence_score".into(), Node::Number("87.5".into()));
        });
        let cases = [
            ("confidence_score", "eq", "87.50", true),
            ("confidence_score", "ne", "87.5", false),
            ("confidence_score", "gt", "87", true),
            ("confidence_score", "le", "87.5", true),
            ("confidence_score", "lt", "87.5", false),
            ("extracted_fields.currency", "in", "[USD, CNY]", true),
            ("extracted_fields.currency", "not_in", "[USD, EUR]", true),
            ("extracted_fields.invoice_date", "ge", "\"2025-11-01\"", true),
            ("extracted_fields.missing", "eq", "x", false),
            ("extracted_fields.missing", "ne", "x", true),
            ("extracted_fields.missing", "lt", "5", false),
            ("extracted_fields.missing", "empty", "true", true),
            ("line_items", "empty", "false", true),
            ("doc_url", "exists", "true", true),
            ("nothing_here", "exists", "false", true),
        ];

        for (path, op, value, expected) in cases {
            let yaml = format!(
                "version: t\nrules:\n  - name: r\n    when: [{{ path: {path}, op: {op}, value: {value} }}]\n    route: [alerts]\n"
            );
            let fired = !load(&yaml).unwrap().decide(&doc).rules_fired.is_empty();
            assert_eq!(fired, expected, "{path} {op} {value}");
        }
    }

    #[test]
    fn stop_ends_evaluation() {
        let rules = load(
            "version: t\nrules:\n  - { name: first, route: [alerts], stop: true }\n  - { name: second, route: [crm] }\n",
        )
        .unwrap();

        let evaluation = rules.evaluate(&document(|_| {}));

        assert_eq!(evaluation.decision.destinations(), vec!["alerts"]);
        assert_eq!(evaluation.rules[1].result, "not evaluated");
    }

    #[test]
    fn validation_names_the_rule() {
        let cases = [
            (
                "version: t\nrules:\n  - { name: a, route: [accounting] }\n  - { name: bad, wen: [], route: [alerts] }\n",
                "rule 2 `bad`: unknown field `wen`",
            ),
            (
                "version: t\nrules:\n  - { name: bad-op, when: [{ path: x, op: gte, value: 1 }], route: [alerts] }\n",
                "rule 1 `bad-op`: unknown operator `gte`",
            ),
            (
                "version: t\nrules:\n  - { name: bad-dest, route: [sap] }\n",
                "rule 1 `bad-dest`: unknown destination `sap`",
            ),
            (
                "version: t\nrules:\n  - { name: no-value, when: [{ path: x, op: eq }], route: [alerts] }\n",
                "rule 1 `no-value`: operator `eq` on `x` needs a `value`",
            ),
            (
                "version: t\nrules:\n  - { name: in-scalar, when: [{ path: x, op: in, value: 3 }], route: [alerts] }\n",
                "rule 1 `in-scalar`: operator `in` on `x` needs a list `value`",
            ),
            (
                "version: t\nrules:\n  - { name: dup, route: [alerts] }\n  - { name: dup, route: [crm] }\n",
                "rule 2 `dup`: the name is used by an earlier rule",
            ),
            ("rules: []\n", "missing field `version`"),
            ("version: t\nrules: []\nextra: 1\n", "unknown field `extra`"),
        ];

        for (yaml, expected) in cases {
            let error = load(yaml).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should contain {expected:?}");
            assert!(error.starts_with("routing rules (test.yaml): "), "{error}");
        }
    }
}
