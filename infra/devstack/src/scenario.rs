//! Extraction scenarios: the values the simulator pretends to have extracted from a file.
//!
//! A scenario file is a JSON object that maps an uploaded file name to a
//! [`Scenario`]. Money and quantities are decimal text, because RecordEngine
//! sends them as strings (`"16500.0"`). The file may also write them as JSON
//! numbers, whose text is kept as written.
//!
//! The bundled `scenarios/invoices.json` describes the invoices in
//! `tests/fixtures/invoices/`. Its extracted values come from the
//! `NAME.invoice2data.json` file beside each invoice through
//! [`scenario_from_invoice2data`]; only `doc_type`, `confidence_score`,
//! `confidence_reasoning` and `custom_fields` are written by hand.
//! [`scenarios_from_fixtures`] rebuilds the file and a test checks it still matches.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::json::Json;

/// The scenario file bundled with the crate.
pub const BUILTIN_SCENARIOS: &str = include_str!("../scenarios/invoices.json");

/// Confidence score a rebuilt scenario gets when the existing file has none for it.
pub const DEFAULT_CONFIDENCE_SCORE: u8 = 90;

/// A decimal number kept as its text, such as `"279.84"` or `"16500.0"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecimalText(String);

impl DecimalText {
    /// Accepts text that parses as a decimal.
    pub fn parse(text: &str) -> Option<DecimalText> {
        let trimmed = text.trim();
        Json::String(trimmed.to_owned())
            .as_decimal()
            .map(|_| DecimalText(trimmed.to_owned()))
    }

    /// Reads a JSON number or numeric string, keeping its text.
    pub fn from_json(value: &Json) -> Option<DecimalText> {
        match value {
            Json::Number(text) | Json::String(text) => DecimalText::parse(text),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DecimalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for DecimalText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Json::deserialize(deserializer)?;
        DecimalText::from_json(&value).ok_or_else(|| {
            serde::de::Error::custom(format!("expected a decimal number or numeric string, got {value}"))
        })
    }
}

/// One line item as RecordEngine sends it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioLine {
    pub description: Option<String>,
    pub quantity: Option<DecimalText>,
    pub unit_price: Option<DecimalText>,
    pub amount: Option<DecimalText>,
}

/// Extraction values for one file name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// RecordEngine's document type, `Invoice` when absent.
    #[serde(default)]
    pub doc_type: Option<String>,
    #[serde(default)]
    pub contact_name: Option<String>,
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub invoice_number: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub invoice_date: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub due_date: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub subtotal: Option<DecimalText>,
    #[serde(default)]
    pub tax: Option<DecimalText>,
    #[serde(default)]
    pub total_amount: Option<DecimalText>,
    #[serde(default)]
    pub line_items: Vec<ScenarioLine>,
    /// On RecordEngine's 0–100 scale.
    #[serde(default)]
    pub confidence_score: Option<u8>,
    #[serde(default)]
    pub confidence_reasoning: Option<String>,
    /// Custom fields keyed by their label, sent as given.
    #[serde(default = "empty_object")]
    pub custom_fields: Json,
}

fn empty_object() -> Json {
    Json::Object(Vec::new())
}

/// A scenario file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid scenario file {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Scenarios by uploaded file name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scenarios {
    by_name: BTreeMap<String, Scenario>,
}

impl Scenarios {
    /// Parses a scenario file; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Scenarios, ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        let by_name: BTreeMap<String, Scenario> =
            serde_json::from_str(text).map_err(|error| invalid(error.to_string()))?;
        for (name, scenario) in &by_name {
            if let Some(score) = scenario.confidence_score
                && score > 100
            {
                return Err(invalid(format!(
                    "{name}: confidence_score must be from 0 to 100, got {score}"
                )));
            }
            if !scenario.custom_fields.is_object() {
                return Err(invalid(format!("{name}: custom_fields must be an object")));
            }
        }
        Ok(Scenarios { by_name })
    }

    /// Reads a scenario file from disk.
    pub fn load(path: &Path) -> Result<Scenarios, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenarios::from_json(&text, &path.display().to_string())
    }

    /// Parses the bundled invoice scenarios.
    pub fn builtin() -> Scenarios {
        // The test `builtin_scenarios_parse` parses the bundled file, so this cannot fail in a tested build.
        Scenarios::from_json(BUILTIN_SCENARIOS, "scenarios/invoices.json").expect("the bundled scenario file is valid")
    }

    /// Finds the scenario for an uploaded file name: an exact match, else one that differs only in letter case.
    pub fn find(&self, filename: &str) -> Option<&Scenario> {
        self.by_name.get(filename).or_else(|| {
            self.by_name
                .iter()
                .find(|(name, _)| name.to_lowercase() == filename.to_lowercase())
                .map(|(_, scenario)| scenario)
        })
    }

    pub fn insert(&mut self, filename: impl Into<String>, scenario: Scenario) {
        self.by_name.insert(filename.into(), scenario);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Scenario)> {
        self.by_name.iter()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Serialises in the scenario file format, with a final newline.
    pub fn to_pretty_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.by_name).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Builds a scenario from invoice2data's output for one invoice (a JSON array
/// with one result object, as in the fixtures), keeping number text as written.
///
/// Field mapping: issuer → vendor and contact_name, amount → total_amount,
/// amount_untaxed → subtotal, amount_tax → tax, date → invoice_date,
/// date_due → due_date. invoice_number and currency keep their names.
///
/// Line mapping, from `lines` (or `line_items`): name (or desc) → description,
/// qty → quantity, price_unit (or price) → unit_price, price_subtotal → amount.
/// Section headers and notes among the lines are skipped. The hand-written
/// fields are left empty; see [`scenarios_from_fixtures`].
pub fn scenario_from_invoice2data(text: &str) -> Result<Scenario, String> {
    let parsed = Json::parse(text).map_err(|error| format!("not valid JSON: {error}"))?;
    let result = match &parsed {
        Json::Array(results) => match results.as_slice() {
            [single] => single,
            _ => return Err(format!("expected exactly one result, got {}", results.len())),
        },
        Json::Object(_) => &parsed,
        other => {
            return Err(format!(
                "expected an array with one result object, got {}",
                other.type_name()
            ));
        }
    };
    if !result.is_object() {
        return Err(format!("the result must be an object, got {}", result.type_name()));
    }

    let text_of = |key: &str| result.get(key).and_then(Json::scalar_text);
    let decimal_of = |key: &str| -> Result<Option<DecimalText>, String> {
        match result.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(value) => DecimalText::from_json(value)
                .map(Some)
                .ok_or_else(|| format!("{key} must be a number, got {value}")),
        }
    };

    let mut line_items = Vec::new();
    let lines = result.get("lines").or_else(|| result.get("line_items"));
    for (index, line) in lines.and_then(Json::as_array).unwrap_or_default().iter().enumerate() {
        if line.get("sectionheader").is_some() || line.get("line_note").is_some() {
            continue;
        }
        let decimal = |keys: &[&str]| -> Result<Option<DecimalText>, String> {
            match keys
                .iter()
                .find_map(|key| line.get(key).filter(|value| !value.is_null()))
            {
                None => Ok(None),
                Some(value) => DecimalText::from_json(value)
                    .map(Some)
                    .ok_or_else(|| format!("lines[{index}].{} must be a number, got {value}", keys[0])),
            }
        };
        line_items.push(ScenarioLine {
            description: ["name", "desc"]
                .iter()
                .find_map(|key| line.get(key).and_then(Json::scalar_text)),
            quantity: decimal(&["qty"])?,
            unit_price: decimal(&["price_unit", "price"])?,
            amount: decimal(&["price_subtotal"])?,
        });
    }

    let issuer = text_of("issuer");
    Ok(Scenario {
        doc_type: None,
        contact_name: issuer.clone(),
        vendor: issuer,
        invoice_number: text_of("invoice_number"),
        invoice_date: text_of("date"),
        due_date: text_of("date_due"),
        currency: text_of("currency"),
        subtotal: decimal_of("amount_untaxed")?,
        tax: decimal_of("amount_tax")?,
        total_amount: decimal_of("amount")?,
        line_items,
        confidence_score: None,
        confidence_reasoning: None,
        custom_fields: empty_object(),
    })
}

/// Extensions tried, in order, for the document beside a `NAME.invoice2data.json` file.
const DOCUMENT_EXTENSIONS: [&str; 2] = ["pdf", "txt"];

/// Rebuilds the scenarios for every `NAME.invoice2data.json` in `dir`, keyed
/// by the name of the document beside it (`NAME.pdf` or `NAME.txt`). The
/// hand-written fields (`doc_type`, `confidence_score`, `confidence_reasoning`,
/// `custom_fields`) are taken from `existing` when it has the same file name.
pub fn scenarios_from_fixtures(dir: &Path, existing: &Scenarios) -> Result<Scenarios, String> {
    const SUFFIX: &str = ".invoice2data.json";

    let entries = std::fs::read_dir(dir).map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
    let mut stems = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(SUFFIX) {
            stems.push(stem.to_owned());
        }
    }
    stems.sort();

    let mut rebuilt = Scenarios::default();
    for stem in stems {
        let source = dir.join(format!("{stem}{SUFFIX}"));
        let document = DOCUMENT_EXTENSIONS
            .iter()
            .map(|extension| format!("{stem}.{extension}"))
            .find(|name| dir.join(name).is_file())
            .ok_or_else(|| format!("{} has no {stem}.pdf or {stem}.txt beside it", source.display()))?;
        let text =
            std::fs::read_to_string(&source).map_err(|error| format!("cannot read {}: {error}", source.display()))?;
        let mut scenario =
            scenario_from_invoice2data(&text).map_err(|error| format!("{}: {error}", source.display()))?;

        match existing.by_name.get(&document) {
            Some(curated) => {
                scenario.doc_type = curated.doc_type.clone();
                scenario.confidence_score = curated.confidence_score;
                scenario.confidence_reasoning = curated.confidence_reasoning.clone();
                scenario.custom_fields = curated.custom_fields.clone();
            }
            None => {
                scenario.doc_type = Some("Invoice".into());
                scenario.confidence_score = Some(DEFAULT_CONFIDENCE_SCORE);
            }
        }
        rebuilt.insert(document, scenario);
    }
    Ok(rebuilt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_decimal_text() {
        let scenario = scenario_from_invoice2data(
            r#"[{"issuer": "Azure Interior", "amount": 279.84, "amount_untaxed": 262.9, "amount_tax": 16.94,
                 "date": "2023-03-20", "date_due": "2023-04-04", "invoice_number": "INV/2023/03/0008",
                 "currency": "USD"}]"#,
        )
        .unwrap();

        assert_eq!(scenario.vendor.as_deref(), Some("Azure Interior"));
        assert_eq!(scenario.contact_name.as_deref(), Some("Azure Interior"));
        assert_eq!(scenario.total_amount.as_ref().map(DecimalText::as_str), Some("279.84"));
        assert_eq!(scenario.subtotal.as_ref().map(DecimalText::as_str), Some("262.9"));
        assert_eq!(scenario.tax.as_ref().map(DecimalText::as_str), Some("16.94"));
        assert_eq!(scenario.invoice_date.as_deref(), Some("2023-03-20"));
        assert_eq!(scenario.due_date.as_deref(), Some("2023-04-04"));
        assert!(scenario.line_items.is_empty());
    }

    #[test]
    fn lines_skip_headers_and_notes() {
        let scenario = scenario_from_invoice2data(
            r#"[{"issuer": "X", "lines": [
                {"sectionheader": "--- Food ---"},
                {"name": "Olive Oil", "qty": 1.0, "price_unit": 1.0, "price_subtotal": 0.9},
                {"line_note": "re-usable glass"},
                {"desc": "Exchange 2010", "qty": 1.0, "price": 5.39}]}]"#,
        )
        .unwrap();

        assert_eq!(
            scenario.line_items,
            vec![
                ScenarioLine {
                    description: Some("Olive Oil".into()),
                    quantity: DecimalText::parse("1.0"),
                    unit_price: DecimalText::parse("1.0"),
                    amount: DecimalText::parse("0.9"),
                },
                ScenarioLine {
                    description: Some("Exchange 2010".into()),
                    quantity: DecimalText::parse("1.0"),
                    unit_price: DecimalText::parse("5.39"),
                    amount: None,
                },
            ]
        );
    }

    #[test]
    fn numeric_invoice_number_becomes_text() {
        let scenario = scenario_from_invoice2data(r#"[{"invoice_number": 42183017}]"#).unwrap();

        assert_eq!(scenario.invoice_number.as_deref(), Some("42183017"));
        assert_eq!(scenario.vendor, None);
        assert_eq!(scenario.total_amount, None);
    }

    #[test]
    fn invalid_invoice2data_is_rejected() {
        for text in [
            "{",
            "[]",
            "[1]",
            r#"[{"a": 1}, {"b": 2}]"#,
            r#"[{"amount": "a lot"}]"#,
            r#"[{"lines": [{"name": "x", "qty": "two"}]}]"#,
        ] {
            assert!(scenario_from_invoice2data(text).is_err(), "accepted {text}");
        }
    }

    #[test]
    fn scenario_file_errors_name_the_entry() {
        let error = Scenarios::from_json(r#"{"a.pdf": {"confidence_score": 101}}"#, "test").unwrap_err();
        assert!(error.to_string().contains("a.pdf"), "{error}");

        let error = Scenarios::from_json(r#"{"a.pdf": {"total_amount": "ten"}}"#, "test").unwrap_err();
        assert!(error.to_string().contains("ten"), "{error}");

        assert!(Scenarios::from_json(r#"{"a.pdf": {"totl_amount": "1"}}"#, "test").is_err());
    }

    #[test]
    fn builtin_scenarios_parse() {
        assert!(Scenarios::from_json(BUILTIN_SCENARIOS, "scenarios/invoices.json").is_ok());
    }

    #[test]
    fn find_ignores_letter_case() {
        let scenarios = Scenarios::from_json(r#"{"Invoice.PDF": {"vendor": "V"}}"#, "test").unwrap();

        assert!(scenarios.find("Invoice.PDF").is_some());
        assert!(scenarios.find("invoice.pdf").is_some());
        assert!(scenarios.find("other.pdf").is_none());
    }
}
