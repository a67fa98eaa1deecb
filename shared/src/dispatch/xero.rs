//! Xero: creates a bill, an `ACCPAY` invoice, per export.
//!
//! `PUT {base}/api.xro/2.0/Invoices?summarizeErrors=false` with the
//! `xero-tenant-id` header and the message's idempotency key as
//! `Idempotency-Key`, so Xero returns the first response to a repeated
//! request. The status is AUTHORISED when the routing skipped approval and
//! DRAFT otherwise. AUTHORISED needs a due date, so a bill without one, or
//! one whose amounts need review, is created as DRAFT for a person to complete.
//!
//! With `summarizeErrors=false` a 200 can still carry `HasErrors: true` for
//! the invoice, with an all-zero `InvoiceID`: that is a validation failure,
//! and such an id is never stored. A 429 with `X-Rate-Limit-Problem: day`
//! asks for a wait of hours, which the engine turns into a parked message.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;

use super::body::{cut_chars, insert_some, number, object, text};
use super::budget::{BudgetScope, RateLimit};
use super::destination::{Delivered, Delivery, Destination};
use super::error::DispatchError;
use super::http::{HttpClient, HttpReply, join_url, with_query};
use super::oauth::OAuthClient;
use crate::bill::{Bill, map_bill};
use crate::json::Node;
use crate::money::round_to_cents;
use crate::rules::Approval;

/// The id Xero returns for an invoice that was not saved.
pub const EMPTY_INVOICE_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Settings of the Xero destination (`kind: xero` in `infra/destinations.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XeroSettings {
    /// API base URL, `https://api.xero.com` in production.
    pub base_url: String,
    /// Xero's token endpoint, `https://identity.xero.com/connect/token`.
    pub token_url: String,
    /// The expense account code of every line.
    pub account_code: String,
    /// The tax type of every line (`NONE`, `INPUT`, …).
    #[serde(default = "default_tax_type")]
    pub tax_type: String,
    /// The account code of the separate tax line; the expense account when unset.
    #[serde(default)]
    pub tax_account_code: Option<String>,
    #[serde(default = "default_rate_limit")]
    pub rate_limit: RateLimit,
}

fn default_tax_type() -> String {
    "NONE".to_owned()
}

fn default_rate_limit() -> RateLimit {
    RateLimit::XERO
}

#[derive(Debug, Default, Deserialize)]
struct SavedInvoices {
    #[serde(rename = "Invoices", default)]
    invoices: Vec<SavedInvoice>,
}

#[derive(Debug, Default, Deserialize)]
struct SavedInvoice {
    #[serde(rename = "InvoiceID", default)]
    invoice_id: Option<String>,
    #[serde(rename = "HasErrors", default)]
    has_errors: bool,
    #[serde(rename = "ValidationErrors", default)]
    validation_errors: Vec<ValidationError>,
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    #[serde(rename = "Status", default)]
    status: Option<String>,
    #[serde(rename = "Contact", default)]
    contact: Option<ContactName>,
}

#[derive(Debug, Default, Deserialize)]
struct ContactName {
    #[serde(rename = "Name", default)]
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ValidationError {
    #[serde(rename = "Message", default)]
    message: String,
}

/// The Xero bill destination.
pub struct Xero {
    settings: XeroSettings,
    http: HttpClient,
    oauth: Arc<OAuthClient>,
}

impl Xero {
    pub fn new(settings: XeroSettings, http: HttpClient, oauth: Arc<OAuthClient>) -> Self {
        Xero { settings, http, oauth }
    }

    async fn tenant_id(&self) -> Result<String, DispatchError> {
        self.oauth.credentials().await?.field("tenant_id").ok_or_else(|| {
            DispatchError::permanent("the Xero secret has no tenant_id; add the organisation's tenant id to it")
        })
    }

    fn invoices_url(&self) -> String {
        join_url(&self.settings.base_url, "api.xro/2.0/Invoices")
    }

    /// Sends one API request, refreshing the access token once after a 401.
    async fn call(
        &self,
        delivery: &Delivery,
        method: Method,
        url: &str,
        tenant_id: &str,
        body: Option<&Node>,
        display: &str,
    ) -> Result<HttpReply, DispatchError> {
        let mut token = self.oauth.access_token().await?;
        for round in 0..2 {
            delivery.spend_request().await?;
            let mut request = self
                .http
                .request(method.clone(), url, display)?
                .bearer_auth(&token)
                .header("xero-tenant-id", tenant_id)
                .header("Accept", "application/json");
            if let Some(body) = body {
                request = request
                    .header("Content-Type", "application/json")
                    .header("Idempotency-Key", &delivery.idempotency_key)
                    .body(body.to_canonical_string());
            }
            let reply = self.http.send(request, display).await?;
            if reply.status == 401 && round == 0 {
                tracing::info!("Xero returned 401; refreshing the access token once");
                token = self.oauth.token_after_rejection(&token).await?;
                continue;
            }
            return Ok(reply);
        }
        unreachable!("the loop returns in its second round")
    }

    /// Looks a bill up by invoice number and supplier; returns its `InvoiceID`.
    async fn find_bill(
        &self,
        delivery: &Delivery,
        tenant_id: &str,
        invoice_number: &str,
        vendor: Option<&str>,
    ) -> Result<Option<String>, DispatchError> {
        let url = with_query(&self.invoices_url(), &[("InvoiceNumbers", invoice_number)]);
        let reply = self
            .call(delivery, Method::GET, &url, tenant_id, None, "Xero invoice lookup")
            .await?;
        if !reply.is_success() {
            return Err(classify(&reply).context("looking the bill up by InvoiceNumber"));
        }
        let found: SavedInvoices = serde_json::from_str(&reply.body).unwrap_or_default();
        Ok(found
            .invoices
            .into_iter()
            .filter(|invoice| invoice.kind.as_deref() == Some("ACCPAY"))
            .filter(|invoice| {
                invoice.status.as_deref() != Some("DELETED") && invoice.status.as_deref() != Some("VOIDED")
            })
            .filter(|invoice| {
                // Another supplier's bill may carry the same number.
                let name = invoice.contact.as_ref().and_then(|contact| contact.name.as_deref());
                match (vendor, name) {
                    (Some(vendor), Some(name)) => vendor.eq_ignore_ascii_case(name),
                    _ => true,
                }
            })
            .filter_map(|invoice| invoice.invoice_id)
            .find(|id| id != EMPTY_INVOICE_ID))
    }

    fn invoice_body(&self, bill: &Bill, status: &str, key: &str) -> Node {
        let mut lines: Vec<Node> = bill
            .lines
            .iter()
            .map(|line| {
                // Quantity × unit price must give the line amount, or the
                // line is sent as one unit at its amount.
                let exact = round_to_cents(line.quantity * line.unit_price) == line.amount;
                let (quantity, unit_amount) = if exact {
                    (line.quantity, line.unit_price)
                } else {
                    (rust_decimal::Decimal::ONE, line.amount)
                };
                object([
                    ("Description", text(cut_chars(&line.description, 4000))),
                    ("Quantity", number(quantity)),
                    ("UnitAmount", number(unit_amount)),
                    ("AccountCode", text(&self.settings.account_code)),
                    ("TaxType", text(&self.settings.tax_type)),
                ])
            })
            .collect();
        let tax = bill.separate_tax();
        if !tax.is_zero() {
            let account = self
                .settings
                .tax_account_code
                .as_deref()
                .unwrap_or(&self.settings.account_code);
            lines.push(object([
                ("Description", text("Tax")),
                ("Quantity", number(rust_decimal::Decimal::ONE)),
                ("UnitAmount", number(tax)),
                ("AccountCode", text(account)),
                ("TaxType", text(&self.settings.tax_type)),
            ]));
        }

        let contact_name = bill.vendor.clone().unwrap_or_else(|| "Unknown supplier".to_owned());
        let reference = format!("RecordEngine {} / {}", bill.document_id, &key[..12.min(key.len())]);
        let mut invoice = object([
            ("Type", text("ACCPAY")),
            ("Contact", object([("Name", text(cut_chars(&contact_name, 255)))])),
            ("LineItems", Node::Array(lines)),
            // Tax is booked as its own line, so line amounts carry no tax.
            ("LineAmountTypes", text("NoTax")),
            ("Status", text(status)),
            ("Reference", text(cut_chars(&reference, 255))),
        ]);
        insert_some(
            &mut invoice,
            "InvoiceNumber",
            bill.invoice_number.as_deref().map(|n| text(cut_chars(n, 255))),
        );
        insert_some(
            &mut invoice,
            "Date",
            bill.invoice_date.map(|date| text(date.to_string())),
        );
        insert_some(
            &mut invoice,
            "DueDate",
            bill.due_date.map(|date| text(date.to_string())),
        );
        insert_some(&mut invoice, "CurrencyCode", bill.currency.as_deref().map(text));
        object([("Invoices", Node::Array(vec![invoice]))])
    }
}

/// AUTHORISED when approval was skipped and the bill is complete; DRAFT otherwise.
fn invoice_status(bill: &Bill, approval: Approval) -> &'static str {
    if approval == Approval::Skip && !bill.needs_review() && bill.due_date.is_some() {
        "AUTHORISED"
    } else {
        "DRAFT"
    }
}

/// Classifies a failed Xero reply.
fn classify(reply: &HttpReply) -> DispatchError {
    let body = reply.json();
    let mut messages: Vec<String> = Vec::new();
    if let Some(body) = &body {
        if let Some(message) = body.get("Message").and_then(|value| value.as_str()) {
            messages.push(message.to_owned());
        }
        if let Some(elements) = body.get("Elements").and_then(|value| value.as_array()) {
            for element in elements {
                for error in element
                    .get("ValidationErrors")
                    .and_then(|value| value.as_array())
                    .into_iter()
                    .flatten()
                {
                    if let Some(message) = error.get("Message").and_then(|value| value.as_str()) {
                        messages.push(message.to_owned());
                    }
                }
            }
        }
        if messages.is_empty()
            && let Some(detail) = body
                .get("Detail")
                .or(body.get("Title"))
                .and_then(|value| value.as_str())
        {
            messages.push(detail.to_owned());
        }
    }
    let detail = if messages.is_empty() {
        reply.excerpt()
    } else {
        messages.join("; ")
    };
    let reason = format!("Xero returned HTTP {}: {detail}", reply.status);

    match reply.status {
        429 => {
            let problem = reply.header("x-rate-limit-problem").unwrap_or("minute").to_owned();
            let fallback = if problem.eq_ignore_ascii_case("day") {
                Duration::from_secs(3600)
            } else {
                Duration::from_secs(60)
            };
            DispatchError::throttled(
                format!("{reason} (rate limit: {problem})"),
                reply.retry_after().unwrap_or(fallback),
            )
        }
        401 => DispatchError::permanent(format!(
            "{reason}; authorization failed after a token refresh: reconnect the app"
        )),
        403 => DispatchError::permanent(format!("{reason}; the organisation is not connected to this app")),
        408 | 500..=599 => DispatchError::Retryable {
            reason,
            retry_after: reply.retry_after(),
        },
        _ => DispatchError::permanent(reason),
    }
}

#[async_trait]
impl Destination for Xero {
    fn kind(&self) -> &'static str {
        "xero"
    }

    async fn budget(&self) -> Result<Option<BudgetScope>, DispatchError> {
        let tenant_id = self.tenant_id().await?;
        Ok(Some(BudgetScope::new("xero", &tenant_id, self.settings.rate_limit)))
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Delivered, DispatchError> {
        let (message, document) = delivery.routed()?;
        let bill = map_bill(document, &message.decision.annotations)
            .map_err(|error| DispatchError::permanent(error.to_string()))?;
        let tenant_id = self.tenant_id().await?;

        if delivery.previous_ambiguous
            && let Some(number) = bill.invoice_number.as_deref()
            && let Some(id) = self
                .find_bill(delivery, &tenant_id, number, bill.vendor.as_deref())
                .await?
        {
            return Ok(Delivered {
                detail: format!("found bill {id} by InvoiceNumber {number} after an unconfirmed attempt"),
                remote_id: id,
            });
        }

        let status = invoice_status(&bill, message.approval);
        let body = self.invoice_body(&bill, status, &delivery.idempotency_key);
        let url = with_query(&self.invoices_url(), &[("summarizeErrors", "false")]);
        let reply = self
            .call(
                delivery,
                Method::PUT,
                &url,
                &tenant_id,
                Some(&body),
                "Xero invoice create",
            )
            .await?;
        if !reply.is_success() {
            return Err(classify(&reply));
        }

        let saved: SavedInvoices = serde_json::from_str(&reply.body).map_err(|error| {
            DispatchError::ambiguous(format!(
                "Xero returned HTTP {} with an unreadable body: {error}",
                reply.status
            ))
        })?;
        let Some(invoice) = saved.invoices.into_iter().next() else {
            return Err(DispatchError::ambiguous("Xero returned no invoice element"));
        };
        if invoice.has_errors {
            let messages: Vec<String> = invoice
                .validation_errors
                .iter()
                .map(|error| error.message.clone())
                .collect();
            return Err(DispatchError::permanent(format!(
                "Xero rejected the bill: {}",
                if messages.is_empty() {
                    "HasErrors is true without a message".to_owned()
                } else {
                    messages.join("; ")
                }
            )));
        }
        match invoice.invoice_id {
            Some(id) if !id.is_empty() && id != EMPTY_INVOICE_ID => Ok(Delivered {
                detail: format!("{status} bill {id} created for {}", bill.total),
                remote_id: id,
            }),
            other => Err(DispatchError::permanent(format!(
                "Xero returned HTTP {} without a usable InvoiceID ({other:?}); nothing is stored",
                reply.status
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> HttpReply {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        HttpReply {
            status,
            headers: map,
            body: body.to_owned(),
        }
    }

    #[test]
    fn daily_limit_waits_as_told() {
        let error = classify(&reply(
            429,
            &[("retry-after", "20000"), ("x-rate-limit-problem", "day")],
            "{}",
        ));

        let DispatchError::Throttled { retry_after, reason } = error else {
            panic!("throttled");
        };
        assert_eq!(retry_after, Duration::from_secs(20000));
        assert!(reason.contains("day"), "{reason}");
    }

    #[test]
    fn validation_exception_lists_messages() {
        let body = r#"{"ErrorNumber":10,"Type":"ValidationException","Message":"A validation exception occurred",
            "Elements":[{"ValidationErrors":[{"Message":"Account code '999' is not a valid code"}]}]}"#;

        let error = classify(&reply(400, &[], body));

        assert!(matches!(error, DispatchError::Permanent { .. }));
        assert!(error.reason().contains("Account code '999'"), "{error}");
    }
}
