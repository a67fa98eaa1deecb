//! RecordEngine webhook payloads.
//!
//! Two generations of payload reach the same URL. The current one carries a
//! flat envelope (`schema_version`, `event`, `timestamp`) beside the document
//! fields; the older one is the bare document. RecordEngine documents few
//! types and no nullability, so every field except the document `id` is
//! optional and each field accepts the shapes seen in practice. The whole
//! payload is kept in [`ExportDocument::raw`], so fields this model does not
//! name still reach the destinations.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::json::Node;
use crate::money::decimal_from_node;

/// The `event` value of a document export.
pub const EXPORT_EVENT: &str = "document.exported";

/// The `status` value that marks a bare (envelope-less) payload as an export.
pub const EXPORT_STATUS: &str = "Export";

/// Envelope keys, excluded from the export fingerprint because a redelivery
/// of unchanged content may carry a new timestamp.
pub const ENVELOPE_KEYS: [&str; 3] = ["schema_version", "event", "timestamp"];

/// A payload that could not be read, naming the JSON path and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("request body is not valid JSON: {0}")]
    Syntax(String),
    #[error("request body is not UTF-8 text: {0}")]
    Encoding(String),
    #[error("{path}: expected {expected}, got {got}")]
    Field {
        path: String,
        expected: &'static str,
        got: String,
    },
}

/// What arrived at the webhook URL.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    /// A `document.exported` event, with or without the envelope.
    Export(Box<ExportDocument>),
    /// Any other event (`contact.created`, `audit.log`, …). `event` is `None`
    /// for a bare payload that is not an export.
    Other { event: Option<String> },
}

/// The optional envelope of the current payload generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub schema_version: Option<String>,
    pub event: Option<String>,
    /// RFC 3339 text as sent; fractional seconds and offsets are not documented.
    pub timestamp: Option<String>,
}

/// A document that reached RecordEngine's Export status.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportDocument {
    pub envelope: Envelope,
    /// RecordEngine's document id, the same value the upload response returns.
    pub id: i64,
    pub filename: Option<String>,
    pub original_filename: Option<String>,
    pub status: Option<String>,
    pub source: Option<String>,
    pub doc_type: Option<String>,
    /// `YYYY-MM-DD` as sent; see [`parse_date`].
    pub doc_date: Option<String>,
    pub contact_id: Option<i64>,
    pub contact_name: Option<String>,
    pub folder_id: Option<i64>,
    pub folder_name: Option<String>,
    pub ai_summary: Option<String>,
    /// On RecordEngine's 0–100 scale; integers and fractions are both accepted.
    pub confidence_score: Option<Decimal>,
    pub confidence_label: Option<String>,
    pub confidence_reasoning: Option<String>,
    pub fields: ExtractedFields,
    /// Custom fields keyed by their human-readable label (`"PO Number"`).
    pub custom_fields: BTreeMap<String, Node>,
    pub line_items: Vec<LineItem>,
    /// References to records in other systems, keyed by system name.
    pub external_refs: BTreeMap<String, Node>,
    /// Deep link into the RecordEngine UI. It points at a private host: show it, never fetch it.
    pub doc_url: Option<String>,
    /// The whole payload as received, including fields not named above.
    pub raw: Node,
}

/// The invoice fields of `extracted_fields`; other profiles' keys stay in `raw`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExtractedFields {
    /// `vendor`, or `vendor_name` as RecordEngine's rules engine calls it.
    pub vendor: Option<String>,
    pub invoice_number: Option<String>,
    pub invoice_date: Option<String>,
    pub due_date: Option<String>,
    /// As extracted: usually an ISO 4217 code, sometimes lowercase or a symbol.
    pub currency: Option<String>,
    pub subtotal: Option<Decimal>,
    pub tax: Option<Decimal>,
    pub total_amount: Option<Decimal>,
}

/// One element of `line_items`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineItem {
    pub description: Option<String>,
    pub quantity: Option<Decimal>,
    pub unit_price: Option<Decimal>,
    pub amount: Option<Decimal>,
}

/// Parses a webhook body.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookEvent, PayloadError> {
    let text = std::str::from_utf8(body).map_err(|error| PayloadError::Encoding(error.to_string()))?;
    let raw = Node::parse(text).map_err(|error| PayloadError::Syntax(error.to_string()))?;
    classify(raw)
}

/// Decides which event a parsed body is and reads an export into the model.
pub fn classify(raw: Node) -> Result<WebhookEvent, PayloadError> {
    let Node::Object(_) = &raw else {
        return Err(field_error("$", "a JSON object", &raw));
    };

    let reader = Reader { root: &raw };
    let event = reader.string(&raw, "event", "event")?;
    let status = reader.string(&raw, "status", "status")?;

    let is_export = match event.as_deref() {
        Some(name) => name == EXPORT_EVENT,
        // The older generation sends the bare document; its status tells an export apart.
        None => status.as_deref() == Some(EXPORT_STATUS),
    };
    if !is_export {
        return Ok(WebhookEvent::Other { event });
    }

    let document = reader.export_document()?;
    Ok(WebhookEvent::Export(Box::new(document)))
}

/// Parses a `YYYY-MM-DD` date; anything else (AI extraction can produce
/// free text) is `None`.
pub fn parse_date(text: Option<&str>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text?.trim(), "%Y-%m-%d").ok()
}

impl ExportDocument {
    /// The payload without its envelope, in canonical form: the input of the export fingerprint.
    pub fn canonical_content(&self) -> String {
        match &self.raw {
            Node::Object(object) => {
                let mut content = object.clone();
                for key in ENVELOPE_KEYS {
                    content.remove(key);
                }
                Node::Object(content).to_canonical_string()
            }
            other => other.to_canonical_string(),
        }
    }

    /// The uppercased currency code, if one was extracted.
    pub fn currency_code(&self) -> Option<String> {
        let currency = self.fields.currency.as_deref()?.trim();
        (!currency.is_empty()).then(|| currency.to_uppercase())
    }

    /// The vendor: `extracted_fields.vendor`, else `vendor_name`, else `contact_name`.
    pub fn vendor_name(&self) -> Option<&str> {
        self.fields
            .vendor
            .as_deref()
            .or(self.contact_name.as_deref())
            .filter(|name| !name.trim().is_empty())
    }

    /// The file name a person would recognise.
    pub fn display_filename(&self) -> Option<&str> {
        self.original_filename.as_deref().or(self.filename.as_deref())
    }
}

fn field_error(path: &str, expected: &'static str, got: &Node) -> PayloadError {
    PayloadError::Field {
        path: path.to_owned(),
        expected,
        got: got.excerpt(60),
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Typed reads from the tree, each naming its path on failure.
struct Reader<'a> {
    root: &'a Node,
}

impl Reader<'_> {
    fn export_document(&self) -> Result<ExportDocument, PayloadError> {
        let root = self.root;
        let extracted = Node::Object(self.object_or_empty(root, "extracted_fields", "extracted_fields")?);

        Ok(ExportDocument {
            envelope: Envelope {
                schema_version: self.string(root, "schema_version", "schema_version")?,
                event: self.string(root, "event", "event")?,
                timestamp: self.string(root, "timestamp", "timestamp")?,
            },
            id: self.document_id()?,
            filename: self.string(root, "filename", "filename")?,
            original_filename: self.string(root, "original_filename", "original_filename")?,
            status: self.string(root, "status", "status")?,
            source: self.string(root, "source", "source")?,
            doc_type: self.string(root, "doc_type", "doc_type")?,
            doc_date: self.string(root, "doc_date", "doc_date")?,
            contact_id: self.integer(root, "contact_id", "contact_id")?,
            contact_name: self.string(root, "contact_name", "contact_name")?,
            folder_id: self.integer(root, "folder_id", "folder_id")?,
            folder_name: self.string(root, "folder_name", "folder_name")?,
            ai_summary: self.string(root, "ai_summary", "ai_summary")?,
            confidence_score: self.confidence_score()?,
            confidence_label: self.string(root, "confidence_label", "confidence_label")?,
            confidence_reasoning: self.string(root, "confidence_reasoning", "confidence_reasoning")?,
            fields: self.extracted_fields(&extracted)?,
            custom_fields: self.object_or_empty(root, "custom_fields", "custom_fields")?,
            line_items: self.line_items(&extracted)?,
            external_refs: self.object_or_empty(root, "external_refs", "external_refs")?,
            doc_url: self.string(root, "doc_url", "doc_url")?,
            raw: root.clone(),
        })
    }

    fn document_id(&self) -> Result<i64, PayloadError> {
        match self.root.get("id") {
            None | Some(Node::Null) => Err(PayloadError::Field {
                path: "id".into(),
                expected: "the RecordEngine document id (an integer)",
                got: "nothing".into(),
            }),
            Some(node) => integer_from_node(node).ok_or_else(|| field_error("id", "an integer document id", node)),
        }
    }

    fn confidence_score(&self) -> Result<Option<Decimal>, PayloadError> {
        let Some(node) = self.root.get("confidence_score") else {
            return Ok(None);
        };
        let expected = "a number from 0 to 100";
        let score = decimal_from_node(node).map_err(|_| field_error("confidence_score", expected, node))?;
        match score {
            Some(value) if value < Decimal::ZERO || value > Decimal::ONE_HUNDRED => {
                Err(field_error("confidence_score", expected, node))
            }
            other => Ok(other),
        }
    }

    fn extracted_fields(&self, node: &Node) -> Result<ExtractedFields, PayloadError> {
        let parent = "extracted_fields";
        let vendor = match self.string(node, "vendor", &join(parent, "vendor"))? {
            Some(vendor) => Some(vendor),
            None => self.string(node, "vendor_name", &join(parent, "vendor_name"))?,
        };

        Ok(ExtractedFields {
            vendor,
            invoice_number: self.string(node, "invoice_number", &join(parent, "invoice_number"))?,
            invoice_date: self.string(node, "invoice_date", &join(parent, "invoice_date"))?,
            due_date: self.string(node, "due_date", &join(parent, "due_date"))?,
            currency: self.string(node, "currency", &join(parent, "currency"))?,
            subtotal: self.decimal(node, "subtotal", &join(parent, "subtotal"))?,
            tax: self.decimal(node, "tax", &join(parent, "tax"))?,
            total_amount: self.decimal(node, "total_amount", &join(parent, "total_amount"))?,
        })
    }

    /// Reads `line_items` from the top level, or from `extracted_fields` where
    /// some profiles may put it (its position is not documented).
    fn line_items(&self, extracted: &Node) -> Result<Vec<LineItem>, PayloadError> {
        let (node, path) = match self.root.get("line_items") {
            Some(node) if !node.is_null() => (node, "line_items".to_owned()),
            _ => match extracted.get("line_items") {
                Some(node) if !node.is_null() => (node, "extracted_fields.line_items".to_owned()),
                _ => return Ok(Vec::new()),
            },
        };

        let Node::Array(elements) = node else {
            return Err(field_error(&path, "an array of line items", node));
        };

        let mut items = Vec::with_capacity(elements.len());
        for (index, element) in elements.iter().enumerate() {
            let item_path = format!("{path}[{index}]");
            if !matches!(element, Node::Object(_)) {
                return Err(field_error(&item_path, "a line item object", element));
            }
            items.push(LineItem {
                description: self.string(element, "description", &join(&item_path, "description"))?,
                quantity: self.decimal(element, "quantity", &join(&item_path, "quantity"))?,
                unit_price: self.decimal(element, "unit_price", &join(&item_path, "unit_price"))?,
                amount: self.decimal(element, "amount", &join(&item_path, "amount"))?,
            });
        }
        Ok(items)
    }

    /// Reads text. Numbers and booleans are accepted as their JSON text
    /// because AI extraction sometimes types an invoice number as a number.
    fn string(&self, parent: &Node, key: &str, path: &str) -> Result<Option<String>, PayloadError> {
        match parent.get(key) {
            None | Some(Node::Null) => Ok(None),
            Some(Node::String(text)) => Ok(Some(text.clone())),
            Some(Node::Number(text)) => Ok(Some(text.clone())),
            Some(Node::Bool(value)) => Ok(Some(value.to_string())),
            Some(node) => Err(field_error(path, "a string", node)),
        }
    }

    fn integer(&self, parent: &Node, key: &str, path: &str) -> Result<Option<i64>, PayloadError> {
        match parent.get(key) {
            None | Some(Node::Null) => Ok(None),
            Some(Node::String(text)) if text.trim().is_empty() => Ok(None),
            Some(node) => integer_from_node(node)
                .map(Some)
                .ok_or_else(|| field_error(path, "an integer", node)),
        }
    }

    fn decimal(&self, parent: &Node, key: &str, path: &str) -> Result<Option<Decimal>, PayloadError> {
        match parent.get(key) {
            None => Ok(None),
            Some(node) => decimal_from_node(node).map_err(|_| field_error(path, "a decimal", node)),
        }
    }

    fn object_or_empty(&self, parent: &Node, key: &str, path: &str) -> Result<BTreeMap<String, Node>, PayloadError> {
        match parent.get(key) {
            None | Some(Node::Null) => Ok(BTreeMap::new()),
            Some(Node::Object(object)) => Ok(object.clone()),
            Some(node) => Err(field_error(path, "an object", node)),
        }
    }
}

/// Reads an id: a JSON integer, or a string of digits (accepted defensively).
fn integer_from_node(node: &Node) -> Option<i64> {
    match node {
        Node::Number(text) => text.parse().ok(),
        Node::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = include_str!("../../tests/fixtures/recordengine/document-exported.json");
    const DOCUMENTED_BARE: &str = include_str!("../../tests/fixtures/recordengine/document-exported-no-envelope.json");

    fn export(json: &str) -> ExportDocument {
        match parse_webhook(json.as_bytes()).expect("payload parses") {
            WebhookEvent::Export(document) => *document,
            other => panic!("expected an export, got {other:?}"),
        }
    }

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    /// Replaces one member of the documented payload's `extracted_fields`.
    fn with_extracted(key: &str, value_json: &str) -> String {
        let mut root = Node::parse(DOCUMENTED).unwrap();
        if let Node::Object(object) = &mut root
            && let Some(Node::Object(fields)) = object.get_mut("extracted_fields")
        {
            fields.insert(key.into(), Node::parse(value_json).unwrap());
        }
        root.to_canonical_string()
    }

    fn with_top(key: &str, value_json: Option<&str>) -> String {
        let mut root = Node::parse(DOCUMENTED).unwrap();
        if let Node::Object(object) = &mut root {
            match value_json {
                Some(value) => object.insert(key.into(), Node::parse(value).unwrap()),
                None => object.remove(key),
            };
        }
        root.to_canonical_string()
    }

    #[test]
    fn documented_payload_with_envelope() {
        let document = export(DOCUMENTED);

        assert_eq!(document.id, 847);
        assert_eq!(document.envelope.schema_version.as_deref(), Some("2.0"));
        assert_eq!(document.envelope.event.as_deref(), Some(EXPORT_EVENT));
        assert_eq!(document.contact_name.as_deref(), Some("Acme Corporation"));
        assert_eq!(document.confidence_score, Some(dec("87")));
        assert_eq!(document.fields.total_amount, Some(dec("18500.0")));
        assert_eq!(document.fields.subtotal, Some(dec("16500.0")));
        assert_eq!(document.fields.currency.as_deref(), Some("CNY"));
        assert_eq!(document.line_items.len(), 1);
        assert_eq!(document.line_items[0].quantity, Some(dec("1")));
        assert!(document.external_refs.contains_key("salesforce"));
        assert_eq!(
            document.custom_fields.get("PO Number").and_then(Node::as_str),
            Some("PO-2026-099")
        );
    }

    #[test]
    fn documented_payload_without_envelope() {
        let bare = export(DOCUMENTED_BARE);
        let full = export(DOCUMENTED);

        assert_eq!(bare.envelope, Envelope::default());
        assert_eq!(bare.id, full.id);
        assert_eq!(bare.fields, full.fields);
        assert_eq!(bare.canonical_content(), full.canonical_content());
    }

    #[test]
    fn money_shapes() {
        assert_eq!(
            export(&with_extracted("total_amount", r#""16500.0""#))
                .fields
                .total_amount,
            Some(dec("16500.0"))
        );
        assert_eq!(
            export(&with_extracted("total_amount", "16500")).fields.total_amount,
            Some(dec("16500"))
        );
        assert_eq!(
            export(&with_extracted("total_amount", "16500.5")).fields.total_amount,
            Some(dec("16500.5"))
        );
        assert_eq!(
            export(&with_extracted("total_amount", r#""""#)).fields.total_amount,
            None
        );
        assert_eq!(
            export(&with_extracted("total_amount", "null")).fields.total_amount,
            None
        );
    }

    #[test]
    fn bad_amount_names_its_path() {
        let error = parse_webhook(with_extracted("total_amount", r#""abc""#).as_bytes()).unwrap_err();

        assert_eq!(
            error.to_string(),
            r#"extracted_fields.total_amount: expected a decimal, got "abc""#
        );
    }

    #[test]
    fn bad_line_item_names_its_index() {
        let body = with_top("line_items", Some(r#"[{"amount": "1"}, {"amount": "x"}]"#));

        let error = parse_webhook(body.as_bytes()).unwrap_err();

        assert_eq!(
            error.to_string(),
            r#"line_items[1].amount: expected a decimal, got "x""#
        );
    }

    #[test]
    fn line_items_absent_null_or_empty() {
        assert!(export(&with_top("line_items", None)).line_items.is_empty());
        assert!(export(&with_top("line_items", Some("null"))).line_items.is_empty());
        assert!(export(&with_top("line_items", Some("[]"))).line_items.is_empty());
    }

    #[test]
    fn line_items_under_extracted_fields() {
        let body = with_top("line_items", None);
        let body = {
            let mut root = Node::parse(&body).unwrap();
            if let Node::Object(object) = &mut root
                && let Some(Node::Object(fields)) = object.get_mut("extracted_fields")
            {
                fields.insert("line_items".into(), Node::parse(r#"[{"amount": 5}]"#).unwrap());
            }
            root.to_canonical_string()
        };

        assert_eq!(export(&body).line_items[0].amount, Some(dec("5")));
    }

    #[test]
    fn external_refs_shapes() {
        assert!(export(&with_top("external_refs", None)).external_refs.is_empty());
        assert!(
            export(&with_top("external_refs", Some("null")))
                .external_refs
                .is_empty()
        );
        assert!(export(&with_top("external_refs", Some("{}"))).external_refs.is_empty());

        let odd = export(&with_top("external_refs", Some(r#"{"erp": [1, 2], "crm": "x"}"#)));
        assert_eq!(odd.external_refs.len(), 2);

        let error = parse_webhook(with_top("external_refs", Some("[]")).as_bytes()).unwrap_err();
        assert_eq!(error.to_string(), "external_refs: expected an object, got []");
    }

    #[test]
    fn confidence_score_scale() {
        assert_eq!(
            export(&with_top("confidence_score", Some("0"))).confidence_score,
            Some(dec("0"))
        );
        assert_eq!(
            export(&with_top("confidence_score", Some("100"))).confidence_score,
            Some(dec("100"))
        );
        assert_eq!(
            export(&with_top("confidence_score", Some("87.5"))).confidence_score,
            Some(dec("87.5"))
        );
        assert_eq!(
            export(&with_top("confidence_score", Some(r#""59""#))).confidence_score,
            Some(dec("59"))
        );
        assert_eq!(export(&with_top("confidence_score", None)).confidence_score, None);

        let error = parse_webhook(with_top("confidence_score", Some("101")).as_bytes()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "confidence_score: expected a number from 0 to 100, got 101"
        );
    }

    #[test]
    fn unknown_fields_are_kept() {
        let document = export(&with_top("new_field_from_2027", Some(r#"{"nested": 1.10}"#)));

        assert_eq!(
            document
                .raw
                .get("new_field_from_2027")
                .map(Node::to_canonical_string)
                .as_deref(),
            Some(r#"{"nested":1.10}"#)
        );
    }

    #[test]
    fn chinese_text_round_trips() {
        let body = with_top("contact_name", Some(r#""深圳市腾飞科技有限公司""#));
        let body = {
            let mut root = Node::parse(&body).unwrap();
            if let Node::Object(object) = &mut root {
                object.insert(
                    "custom_fields".into(),
                    Node::parse(r#"{"采购订单号": "PO-7"}"#).unwrap(),
                );
                object.insert("filename".into(), Node::String("2024年 发票.pdf".into()));
            }
            root.to_canonical_string()
        };

        let document = export(&body);

        assert_eq!(document.contact_name.as_deref(), Some("深圳市腾飞科技有限公司"));
        assert_eq!(document.filename.as_deref(), Some("2024年 发票.pdf"));
        assert!(document.custom_fields.contains_key("采购订单号"));
    }

    #[test]
    fn other_events_are_not_exports() {
        let event = parse_webhook(br#"{"schema_version": "2.0", "event": "contact.created", "id": 5}"#).unwrap();
        assert_eq!(
            event,
            WebhookEvent::Other {
                event: Some("contact.created".into())
            }
        );

        let bare_contact = parse_webhook(br#"{"id": 5, "name": "Acme"}"#).unwrap();
        assert_eq!(bare_contact, WebhookEvent::Other { event: None });
    }

    #[test]
    fn unknown_schema_version_still_parses() {
        let document = export(&with_top("schema_version", Some(r#""3.0""#)));

        assert_eq!(document.envelope.schema_version.as_deref(), Some("3.0"));
    }

    #[test]
    fn malformed_bodies() {
        assert!(matches!(parse_webhook(b"{"), Err(PayloadError::Syntax(_))));
        assert!(matches!(parse_webhook(b""), Err(PayloadError::Syntax(_))));
        assert!(matches!(parse_webhook(b"\xff\xfe"), Err(PayloadError::Encoding(_))));
        assert_eq!(
            parse_webhook(b"[1]").unwrap_err().to_string(),
            "$: expected a JSON object, got [1]"
        );
        assert_eq!(
            parse_webhook(br#"{"event": "document.exported"}"#)
                .unwrap_err()
                .to_string(),
            "id: expected the RecordEngine document id (an integer), got nothing"
        );
        assert_eq!(
            parse_webhook(br#"{"event": "document.exported", "id": "x"}"#)
                .unwrap_err()
                .to_string(),
            r#"id: expected an integer document id, got "x""#
        );
    }

    #[test]
    fn large_and_string_ids() {
        assert_eq!(
            export(&with_top("id", Some("9007199254740993"))).id,
            9_007_199_254_740_993
        );
        assert_eq!(export(&with_top("id", Some(r#""848""#))).id, 848);
    }

    #[test]
    fn dates_parse_or_are_absent() {
        assert_eq!(parse_date(Some("2025-11-15")), NaiveDate::from_ymd_opt(2025, 11, 15));
        assert_eq!(parse_date(Some("15/11/2025")), None);
        assert_eq!(parse_date(Some("")), None);
        assert_eq!(parse_date(None), None);
    }

    #[test]
    fn currency_code_normalises_case() {
        assert_eq!(
            export(&with_extracted("currency", r#"" cny ""#))
                .currency_code()
                .as_deref(),
            Some("CNY")
        );
        assert_eq!(export(&with_extracted("currency", "null")).currency_code(), None);
    }
}
