//! The Bill every accounting adapter books, mapped once from an export.
//!
//! Amounts: each line amount, the tax and the stated total are rounded to two
//! places, half away from zero ([`round_to_cents`]), before anything is
//! added, so the bill's total is exactly the sum of the amounts the
//! destination shows. `quantity × unit_price` is computed exactly in decimals
//! and rounded once. Nothing passes through `f64`.
//!
//! When the line items do not add up to `total_amount`, with or without the
//! tax on top, the bill is still built from the lines, because each line is
//! an extracted fact. The mismatch goes into [`Bill::review_notes`], so
//! [`Bill::needs_review`] is true. Xero then creates a DRAFT whatever the
//! approval, QuickBooks carries the note in `PrivateNote`, and the generic
//! JSON carries `review_required: true`.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::money::round_to_cents;
use crate::payload::{ExportDocument, parse_date};

/// The routing annotation that requests one line carrying `total_amount`.
pub const SINGLE_LINE_ANNOTATION: &str = "single_line_bill";

/// A bill ready for an accounting system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bill {
    pub document_id: i64,
    pub vendor: Option<String>,
    pub invoice_number: Option<String>,
    pub invoice_date: Option<NaiveDate>,
    pub due_date: Option<NaiveDate>,
    /// ISO 4217 code, uppercased; `None` when absent or not a three-letter code.
    pub currency: Option<String>,
    pub lines: Vec<BillLine>,
    /// Sum of the line amounts.
    pub lines_total: Decimal,
    /// The extracted tax, rounded; `None` when absent.
    pub tax: Option<Decimal>,
    /// Whether the tax is already inside the line amounts. When `false` and
    /// the tax is not zero, adapters add it as a separate line or field.
    pub tax_included: bool,
    /// The bill's total as built: `lines_total`, plus `tax` unless included.
    pub total: Decimal,
    /// `total_amount` as extracted, rounded.
    pub stated_total: Option<Decimal>,
    /// One line carrying the total, because there were no line items or a rule asked for it.
    pub single_line: bool,
    /// Reasons for a person to check this bill before it is paid.
    pub review_notes: Vec<String>,
    /// RecordEngine's link to the document.
    pub doc_url: Option<String>,
}

/// One expense line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BillLine {
    pub description: String,
    pub quantity: Decimal,
    /// Up to four decimal places.
    pub unit_price: Decimal,
    /// Rounded to cents.
    pub amount: Decimal,
}

/// An export that cannot become a bill.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    #[error("the document has no line items and no total_amount, so the bill has no amount")]
    NoAmount,
    #[error("line_items[{index}] has neither amount nor quantity and unit_price")]
    LineWithoutAmount { index: usize },
    #[error("the bill total {total} is negative: credit notes are not booked as bills")]
    NegativeTotal { total: Decimal },
}

impl Bill {
    /// Whether a person should review the bill before it is approved.
    pub fn needs_review(&self) -> bool {
        !self.review_notes.is_empty()
    }

    /// Returns the tax to book separately: zero when absent or already inside the lines.
    pub fn separate_tax(&self) -> Decimal {
        match self.tax {
            Some(tax) if !self.tax_included => tax,
            _ => Decimal::ZERO,
        }
    }

    /// Describes the document in one line, for notes and memo fields.
    pub fn summary(&self) -> String {
        let mut text = format!("RecordEngine document {}", self.document_id);
        if let Some(number) = &self.invoice_number {
            text.push_str(&format!(", invoice {number}"));
        }
        if let Some(vendor) = &self.vendor {
            text.push_str(&format!(" from {vendor}"));
        }
        text
    }
}

/// Maps an export to a bill. `annotations` are the routing decision's flags.
pub fn map_bill(document: &ExportDocument, annotations: &[String]) -> Result<Bill, BillError> {
    let fields = &document.fields;
    let mut notes = Vec::new();

    let invoice_date = read_date("invoice_date", fields.invoice_date.as_deref(), &mut notes);
    let due_date = read_date("due_date", fields.due_date.as_deref(), &mut notes);
    let currency = currency_code(document, &mut notes);
    let tax = fields.tax.map(round_to_cents);
    let stated_total = fields.total_amount.map(round_to_cents);
    let vendor = document.vendor_name().map(|name| name.trim().to_owned());
    let invoice_number = fields
        .invoice_number
        .as_deref()
        .map(str::trim)
        .filter(|number| !number.is_empty())
        .map(str::to_owned);

    let single_line = document.line_items.is_empty() || annotations.iter().any(|flag| flag == SINGLE_LINE_ANNOTATION);

    let (lines, tax_included) = if single_line {
        let amount = match (stated_total, fields.subtotal) {
            (Some(total), _) => total,
            (None, Some(subtotal)) => {
                notes.push("total_amount is missing: the single line carries subtotal plus tax".to_owned());
                round_to_cents(subtotal) + tax.unwrap_or_default()
            }
            (None, None) => return Err(BillError::NoAmount),
        };
        let description = match (&invoice_number, &vendor) {
            (Some(number), Some(vendor)) => format!("Invoice {number} from {vendor}"),
            (Some(number), None) => format!("Invoice {number}"),
            (None, Some(vendor)) => format!("Invoice from {vendor}"),
            (None, None) => format!("RecordEngine document {}", document.id),
        };
        // The one line carries the whole total, so any tax is inside it.
        let line = BillLine {
            description,
            quantity: Decimal::ONE,
            unit_price: amount,
            amount,
        };
        (vec![line], true)
    } else {
        let lines = map_lines(document)?;
        let lines_total: Decimal = lines.iter().map(|line| line.amount).sum();
        let tax_amount = tax.unwrap_or_default();
        let tax_included = match stated_total {
            Some(total) if lines_total + tax_amount == total => false,
            Some(total) if lines_total == total => true,
            Some(total) => {
                notes.push(format!(
                    "line items add up to {lines_total} and tax is {tax_amount}, but total_amount is {total}: \
                     the bill follows the line items"
                ));
                false
            }
            None => false,
        };
        (lines, tax_included)
    };

    let lines_total: Decimal = lines.iter().map(|line| line.amount).sum();
    let separate_tax = if tax_included {
        Decimal::ZERO
    } else {
        tax.unwrap_or_default()
    };
    let total = lines_total + separate_tax;
    if total.is_sign_negative() && !total.is_zero() {
        return Err(BillError::NegativeTotal { total });
    }

    Ok(Bill {
        document_id: document.id,
        vendor,
        invoice_number,
        invoice_date,
        due_date,
        currency,
        lines,
        lines_total,
        tax,
        tax_included,
        total,
        stated_total,
        single_line,
        review_notes: notes,
        doc_url: document.doc_url.clone(),
    })
}

fn map_lines(document: &ExportDocument) -> Result<Vec<BillLine>, BillError> {
    let mut lines = Vec::with_capacity(document.line_items.len());
    for (index, item) in document.line_items.iter().enumerate() {
        let quantity = item.quantity.unwrap_or(Decimal::ONE);
        let amount = match (item.amount, item.unit_price) {
            (Some(amount), _) => amount,
            (None, Some(unit_price)) => quantity * unit_price,
            (None, None) => return Err(BillError::LineWithoutAmount { index }),
        };
        let amount = round_to_cents(amount);
        let unit_price = match item.unit_price {
            Some(unit_price) => unit_price.round_dp(4),
            None if !quantity.is_zero() => (amount / quantity).round_dp(4),
            None => amount,
        };
        let description = item
            .description
            .as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Line {}", index + 1));
        lines.push(BillLine {
            description,
            quantity: quantity.normalize(),
            unit_price: unit_price.normalize(),
            amount,
        });
    }
    Ok(lines)
}

fn read_date(name: &str, text: Option<&str>, notes: &mut Vec<String>) -> Option<NaiveDate> {
    let text = text.map(str::trim).filter(|text| !text.is_empty())?;
    let date = parse_date(Some(text));
    if date.is_none() {
        notes.push(format!("{name} {text:?} is not a YYYY-MM-DD date and was left out"));
    }
    date
}

/// Reads the ISO 4217 code of the export. `RMB` and `元` mean CNY. Other
/// symbols (`$`, `¥`) name several currencies, so they are left out with a note.
fn currency_code(document: &ExportDocument, notes: &mut Vec<String>) -> Option<String> {
    let code = document.currency_code()?;
    let code = match code.as_str() {
        "RMB" | "元" => "CNY".to_owned(),
        _ => code,
    };
    if code.len() == 3 && code.bytes().all(|byte| byte.is_ascii_uppercase()) {
        return Some(code);
    }
    notes.push(format!(
        "currency {code:?} is not an ISO 4217 code; the destination's default currency applies"
    ));
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Node;
    use crate::payload::{WebhookEvent, classify};

    const DOCUMENTED: &str = include_str!("../../tests/fixtures/recordengine/document-exported.json");

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    /// Builds the documented export with members replaced (`None` removes one).
    fn export(top: &[(&str, Option<&str>)], extracted: &[(&str, Option<&str>)]) -> ExportDocument {
        let mut root = Node::parse(DOCUMENTED).unwrap();
        if let Node::Object(object) = &mut root {
            for (key, value) in top {
                match value {
                    Some(json) => object.insert((*key).into(), Node::parse(json).unwrap()),
                    None => object.remove(*key),
                };
            }
            if let Some(Node::Object(fields)) = object.get_mut("extracted_fields") {
                for (key, value) in extracted {
                    match value {
                        Some(json) => fields.insert((*key).into(), Node::parse(json).unwrap()),
                        None => fields.remove(*key),
                    };
                }
            }
        }
        match classify(root).unwrap() {
            WebhookEvent::Export(document) => *document,
            other => panic!("expected an export, got {other:?}"),
        }
    }

    #[test]
    fn documented_export_maps_with_separate_tax() {
        let bill = map_bill(&export(&[], &[]), &[]).unwrap();

        assert_eq!(bill.vendor.as_deref(), Some("Acme Corporation"));
        assert_eq!(bill.invoice_number.as_deref(), Some("INV-2025-1147"));
        assert_eq!(bill.invoice_date, NaiveDate::from_ymd_opt(2025, 11, 15));
        assert_eq!(bill.due_date, NaiveDate::from_ymd_opt(2025, 12, 15));
        assert_eq!(bill.currency.as_deref(), Some("CNY"));
        assert_eq!(bill.lines.len(), 1);
        assert_eq!(bill.lines[0].amount, dec("16500.00"));
        assert_eq!(bill.separate_tax(), dec("2000.00"));
        assert_eq!(bill.total, dec("18500.00"));
        assert!(!bill.needs_review(), "{:?}", bill.review_notes);
    }

    #[test]
    fn empty_line_items_give_one_total_line() {
        for line_items in [Some("[]"), Some("null"), None] {
            let bill = map_bill(&export(&[("line_items", line_items)], &[]), &[]).unwrap();

            assert!(bill.single_line, "line_items {line_items:?}");
            assert_eq!(bill.lines.len(), 1, "line_items {line_items:?}");
            assert_eq!(bill.lines[0].amount, dec("18500.00"));
            assert_eq!(bill.lines[0].description, "Invoice INV-2025-1147 from Acme Corporation");
            assert!(bill.tax_included, "the single line carries the tax");
            assert_eq!(bill.total, dec("18500.00"));
        }
    }

    #[test]
    fn single_line_annotation_overrides_lines() {
        let bill = map_bill(&export(&[], &[]), &[SINGLE_LINE_ANNOTATION.to_owned()]).unwrap();

        assert_eq!(bill.lines.len(), 1);
        assert_eq!(bill.total, dec("18500.00"));
    }

    #[test]
    fn tenth_plus_two_tenths_is_exactly_thirty_cents() {
        let document = export(
            &[(
                "line_items",
                Some(r#"[{"description": "a", "amount": "0.1"}, {"description": "b", "amount": 0.2}]"#),
            )],
            &[("tax", None), ("total_amount", Some(r#""0.3""#))],
        );

        let bill = map_bill(&document, &[]).unwrap();

        assert_eq!(bill.total, dec("0.30"));
        assert_eq!(bill.total.to_string(), "0.30");
        assert_eq!(bill.lines_total.to_string(), "0.30");
        assert!(!bill.needs_review(), "{:?}", bill.review_notes);
    }

    #[test]
    fn lines_that_include_tax_add_no_tax_line() {
        let document = export(&[("line_items", Some(r#"[{"amount": "18500.0"}]"#))], &[]);

        let bill = map_bill(&document, &[]).unwrap();

        assert!(bill.tax_included);
        assert_eq!(bill.separate_tax(), Decimal::ZERO);
        assert_eq!(bill.total, dec("18500.00"));
        assert!(!bill.needs_review());
    }

    #[test]
    fn mismatch_follows_lines_and_flags_review() {
        let document = export(&[("line_items", Some(r#"[{"amount": "100"}, {"amount": "50"}]"#))], &[]);

        let bill = map_bill(&document, &[]).unwrap();

        assert_eq!(bill.lines_total, dec("150.00"));
        assert_eq!(bill.total, dec("2150.00"));
        assert!(bill.needs_review());
        assert!(
            bill.review_notes[0].contains("total_amount is 18500.00"),
            "{:?}",
            bill.review_notes
        );
    }

    #[test]
    fn quantity_times_unit_price_rounds_once() {
        let document = export(
            &[(
                "line_items",
                Some(r#"[{"description": "widgets", "quantity": "3", "unit_price": "0.335"}]"#),
            )],
            &[("tax", None), ("total_amount", Some("1.01"))],
        );

        let bill = map_bill(&document, &[]).unwrap();

        // 3 × 0.335 = 1.005, rounded half away from zero.
        assert_eq!(bill.lines[0].amount, dec("1.01"));
        assert_eq!(bill.lines[0].unit_price, dec("0.335"));
        assert!(!bill.needs_review());
    }

    #[test]
    fn unusable_amounts_are_errors() {
        let no_amount = export(
            &[("line_items", Some("[]"))],
            &[("total_amount", None), ("subtotal", None)],
        );
        assert_eq!(map_bill(&no_amount, &[]), Err(BillError::NoAmount));

        let bare_line = export(&[("line_items", Some(r#"[{"amount": 1}, {"description": "x"}]"#))], &[]);
        assert_eq!(
            map_bill(&bare_line, &[]),
            Err(BillError::LineWithoutAmount { index: 1 })
        );

        let credit = export(&[("line_items", Some("[]"))], &[("total_amount", Some(r#""-5.00""#))]);
        assert!(matches!(map_bill(&credit, &[]), Err(BillError::NegativeTotal { .. })));
    }

    #[test]
    fn odd_dates_and_currencies_become_notes() {
        let document = export(
            &[],
            &[("due_date", Some(r#""15/12/2025""#)), ("currency", Some(r#""$""#))],
        );

        let bill = map_bill(&document, &[]).unwrap();

        assert_eq!(bill.due_date, None);
        assert_eq!(bill.currency, None);
        assert_eq!(bill.review_notes.len(), 2, "{:?}", bill.review_notes);

        let rmb = map_bill(&export(&[], &[("currency", Some(r#""rmb""#))]), &[]).unwrap();
        assert_eq!(rmb.currency.as_deref(), Some("CNY"));
    }
}
