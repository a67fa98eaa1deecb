//! QuickBooks Online: creates a Bill per export.
//!
//! `POST {base}/v3/company/{realmId}/bill?requestid=<idempotency key>&minorversion=<n>`.
//! QuickBooks replays the first response to a repeated `requestid`, which
//! makes redeliveries safe. Because a duplicate has still been reported
//! despite the `requestid`, an attempt that follows an ambiguous one first
//! looks the Bill up by `DocNumber` (`select * from Bill where DocNumber = '…'`).
//!
//! Fault codes: 6140 (duplicate document number) and 6240 (duplicate name)
//! mean the Bill may exist already, so it is looked up. 610 (object not
//! found), 2500 (invalid reference) and 6190 (subscription ended) are
//! permanent. HTTP 429 (`ThrottleExceeded`, code 3001) is throttling. HTTP 401
//! refreshes the access token once.

use std::collections::BTreeMap;
use std::sync::Arc;

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
use crate::rules::Approval;

/// Settings of the QuickBooks destination (`kind: quickbooks` in `infra/destinations.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickBooksSettings {
    /// API base URL, `https://quickbooks.api.intuit.com` in production.
    pub base_url: String,
    /// Intuit's token endpoint.
    pub token_url: String,
    #[serde(default = "default_minor_version")]
    pub minor_version: u32,
    /// The expense account (`AccountRef`) of every bill line.
    pub expense_account_id: String,
    /// The account of the separate tax line; the expense account when unset.
    #[serde(default)]
    pub tax_account_id: Option<String>,
    /// The accounts-payable account (`APAccountRef`); QuickBooks' default when unset.
    #[serde(default)]
    pub ap_account_id: Option<String>,
    /// Vendor display name to QuickBooks vendor id, matched without regard to case.
    #[serde(default)]
    pub vendors: BTreeMap<String, String>,
    /// Whether unmapped vendors are looked up by `DisplayName`.
    #[serde(default)]
    pub vendor_lookup: bool,
    /// The vendor of bills whose vendor is neither mapped nor found.
    #[serde(default)]
    pub default_vendor_id: Option<String>,
    #[serde(default = "default_rate_limit")]
    pub rate_limit: RateLimit,
}

fn default_minor_version() -> u32 {
    75
}

fn default_rate_limit() -> RateLimit {
    RateLimit::QUICKBOOKS
}

/// One `Fault.Error` element.
#[derive(Debug, Clone, Default, Deserialize)]
struct FaultError {
    #[serde(rename = "Message", default)]
    message: String,
    #[serde(rename = "Detail", default)]
    detail: Option<String>,
    #[serde(default)]
    code: String,
}

/// The QuickBooks Bill destination.
pub struct QuickBooks {
    settings: QuickBooksSettings,
    http: HttpClient,
    oauth: Arc<OAuthClient>,
    /// Vendor ids found by DisplayName, by `(realm id, display name)`. Looking a
    /// vendor up for every Bill would spend the company's request budget on
    /// queries; an execution environment lives minutes to hours, so a renamed
    /// vendor is picked up when it ends.
    vendor_cache: std::sync::Mutex<std::collections::HashMap<(String, String), String>>,
}

impl QuickBooks {
    pub fn new(settings: QuickBooksSettings, http: HttpClient, oauth: Arc<OAuthClient>) -> Self {
        QuickBooks {
            settings,
            http,
            oauth,
            vendor_cache: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    async fn realm_id(&self) -> Result<String, DispatchError> {
        self.oauth
            .credentials()
            .await?
            .field("realm_id")
            .ok_or_else(|| DispatchError::permanent("the QuickBooks secret has no realm_id; add the company id to it"))
    }

    fn company_url(&self, realm_id: &str, path: &str) -> String {
        join_url(&self.settings.base_url, &format!("v3/company/{realm_id}/{path}"))
    }

    /// Sends one API request with a bearer token, refreshing the token once after a 401.
    async fn call(
        &self,
        delivery: &Delivery,
        method: Method,
        url: &str,
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
                .header("Accept", "application/json");
            if let Some(body) = body {
                request = request
                    .header("Content-Type", "application/json")
                    .body(body.to_canonical_string());
            }
            let reply = self.http.send(request, display).await?;
            if reply.status == 401 && round == 0 {
                tracing::info!("QuickBooks returned 401; refreshing the access token once");
                token = self.oauth.token_after_rejection(&token).await?;
                continue;
            }
            return Ok(reply);
        }
        unreachable!("the loop returns in its second round")
    }

    async fn vendor_id(&self, delivery: &Delivery, realm_id: &str, bill: &Bill) -> Result<String, DispatchError> {
        let Some(vendor) = bill.vendor.as_deref() else {
            return self.settings.default_vendor_id.clone().ok_or_else(|| {
                DispatchError::permanent("the document names no vendor and no default_vendor_id is configured")
            });
        };
        if let Some((_, id)) = self
            .settings
            .vendors
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(vendor))
        {
            return Ok(id.clone());
        }
        let cache_key = (realm_id.to_owned(), vendor.to_owned());
        if let Some(id) = self.cached_vendor(&cache_key) {
            return Ok(id);
        }
        if self.settings.vendor_lookup {
            let query = format!("select * from Vendor where DisplayName = '{}'", escape_query(vendor));
            let url = with_query(
                &self.company_url(realm_id, "query"),
                &[
                    ("query", &query),
                    ("minorversion", &self.settings.minor_version.to_string()),
                ],
            );
            let reply = self
                .call(delivery, Method::GET, &url, None, "QuickBooks vendor query")
                .await?;
            if !reply.is_success() {
                return Err(classify(&reply));
            }
            if let Some(id) = reply
                .json()
                .and_then(|body| body.pointer("/QueryResponse/Vendor/0/Id").cloned())
                .and_then(|id| id.as_str().map(str::to_owned))
            {
                self.vendor_cache
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(cache_key, id.clone());
                return Ok(id);
            }
        }
        self.settings.default_vendor_id.clone().ok_or_else(|| {
            DispatchError::permanent(format!(
                "no QuickBooks vendor for {vendor:?}: add it to vendors in the destination settings or create it in QuickBooks"
            ))
        })
    }

    fn cached_vendor(&self, key: &(String, String)) -> Option<String> {
        self.vendor_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key)
            .cloned()
    }

    /// Looks a Bill up by document number (and vendor); returns its id.
    async fn find_bill(
        &self,
        delivery: &Delivery,
        realm_id: &str,
        doc_number: &str,
        vendor_id: &str,
    ) -> Result<Option<String>, DispatchError> {
        let query = format!(
            "select * from Bill where DocNumber = '{}' and VendorRef = '{}'",
            escape_query(doc_number),
            escape_query(vendor_id)
        );
        let url = with_query(
            &self.company_url(realm_id, "query"),
            &[
                ("query", &query),
                ("minorversion", &self.settings.minor_version.to_string()),
            ],
        );
        let reply = self
            .call(delivery, Method::GET, &url, None, "QuickBooks bill query")
            .await?;
        if !reply.is_success() {
            return Err(classify(&reply).context("looking the Bill up by DocNumber"));
        }
        Ok(reply
            .json()
            .and_then(|body| body.pointer("/QueryResponse/Bill/0/Id").cloned())
            .and_then(|id| id.as_str().map(str::to_owned)))
    }

    fn bill_body(&self, bill: &Bill, vendor_id: &str, approval: Approval, key: &str) -> Node {
        let mut lines: Vec<Node> = bill
            .lines
            .iter()
            .map(|line| expense_line(&line.description, line.amount, &self.settings.expense_account_id))
            .collect();
        let tax = bill.separate_tax();
        if !tax.is_zero() {
            let account = self
                .settings
                .tax_account_id
                .as_deref()
                .unwrap_or(&self.settings.expense_account_id);
            lines.push(expense_line("Tax", tax, account));
        }

        let mut body = object([
            ("VendorRef", object([("value", text(vendor_id))])),
            ("Line", Node::Array(lines)),
            ("PrivateNote", text(private_note(bill, approval, key))),
        ]);
        insert_some(
            &mut body,
            "DocNumber",
            bill.invoice_number.as_deref().map(|n| text(cut_chars(n, 21))),
        );
        insert_some(
            &mut body,
            "TxnDate",
            bill.invoice_date.map(|date| text(date.to_string())),
        );
        insert_some(&mut body, "DueDate", bill.due_date.map(|date| text(date.to_string())));
        insert_some(
            &mut body,
            "CurrencyRef",
            bill.currency.as_deref().map(|code| object([("value", text(code))])),
        );
        insert_some(
            &mut body,
            "APAccountRef",
            self.settings
                .ap_account_id
                .as_deref()
                .map(|id| object([("value", text(id))])),
        );
        body
    }
}

fn expense_line(description: &str, amount: rust_decimal::Decimal, account_id: &str) -> Node {
    object([
        ("DetailType", text("AccountBasedExpenseLineDetail")),
        ("Amount", number(amount)),
        ("Description", text(cut_chars(description, 4000))),
        (
            "AccountBasedExpenseLineDetail",
            object([("AccountRef", object([("value", text(account_id))]))]),
        ),
    ])
}

/// Writes the Bill's memo: its origin, whether it awaits approval, and review notes.
fn private_note(bill: &Bill, approval: Approval, key: &str) -> String {
    let mut note = bill.summary();
    if approval == Approval::Required {
        note.push_str(". Approval required before payment");
    }
    for review in &bill.review_notes {
        note.push_str(". Review: ");
        note.push_str(review);
    }
    if let Some(url) = &bill.doc_url {
        note.push_str(&format!(". {url}"));
    }
    note.push_str(&format!(". Bridge key {key}"));
    cut_chars(&note, 4000)
}

/// Escapes a value for a single-quoted QuickBooks query literal.
fn escape_query(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

fn fault_errors(reply: &HttpReply) -> Vec<FaultError> {
    reply
        .json()
        .and_then(|body| {
            let errors = body.get("Fault")?.get("Error")?.clone();
            serde_json::from_value(errors).ok()
        })
        .unwrap_or_default()
}

/// Classifies a failed QuickBooks reply by status and fault code.
fn classify(reply: &HttpReply) -> DispatchError {
    let errors = fault_errors(reply);
    let described: Vec<String> = errors
        .iter()
        .map(|error| match &error.detail {
            Some(detail) => format!("{} {} ({detail})", error.code, error.message),
            None => format!("{} {}", error.code, error.message),
        })
        .collect();
    let reason = if described.is_empty() {
        format!("QuickBooks returned HTTP {}: {}", reply.status, reply.excerpt())
    } else {
        format!("QuickBooks returned HTTP {}: {}", reply.status, described.join("; "))
    };
    let codes: Vec<&str> = errors.iter().map(|error| error.code.trim_start_matches('0')).collect();

    if reply.status == 429 || codes.contains(&"3001") {
        let wait = reply.retry_after().unwrap_or(std::time::Duration::from_secs(60));
        return DispatchError::throttled(reason, wait);
    }
    if reply.status == 401 {
        return DispatchError::permanent(format!(
            "{reason}; authorization failed after a token refresh: reconnect the app"
        ));
    }
    if codes.iter().any(|code| matches!(*code, "610" | "2500" | "6190")) {
        return DispatchError::permanent(reason);
    }
    match reply.status {
        408 | 500..=599 => DispatchError::Retryable {
            reason,
            retry_after: reply.retry_after(),
        },
        _ => DispatchError::permanent(reason),
    }
}

fn maybe_created(reply: &HttpReply) -> bool {
    fault_errors(reply)
        .iter()
        .any(|error| matches!(error.code.trim_start_matches('0'), "6140" | "6240"))
}

#[async_trait]
impl Destination for QuickBooks {
    fn kind(&self) -> &'static str {
        "quickbooks"
    }

    async fn budget(&self) -> Result<Option<BudgetScope>, DispatchError> {
        let realm_id = self.realm_id().await?;
        Ok(Some(BudgetScope::new(
            "quickbooks",
            &realm_id,
            self.settings.rate_limit,
        )))
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Delivered, DispatchError> {
        let (message, document) = delivery.routed()?;
        let bill = map_bill(document, &message.decision.annotations)
            .map_err(|error| DispatchError::permanent(error.to_string()))?;
        let realm_id = self.realm_id().await?;
        let vendor_id = self.vendor_id(delivery, &realm_id, &bill).await?;

        if delivery.previous_ambiguous
            && let Some(doc_number) = bill.invoice_number.as_deref()
            && let Some(id) = self.find_bill(delivery, &realm_id, doc_number, &vendor_id).await?
        {
            return Ok(Delivered {
                detail: format!("found Bill {id} by DocNumber {doc_number} after an unconfirmed attempt"),
                remote_id: id,
            });
        }

        let body = self.bill_body(&bill, &vendor_id, message.approval, &delivery.idempotency_key);
        let url = with_query(
            &self.company_url(&realm_id, "bill"),
            &[
                ("requestid", &delivery.idempotency_key),
                ("minorversion", &self.settings.minor_version.to_string()),
            ],
        );
        let reply = self
            .call(delivery, Method::POST, &url, Some(&body), "QuickBooks bill create")
            .await?;

        if reply.is_success() {
            let id = reply
                .json()
                .and_then(|body| body.pointer("/Bill/Id").cloned())
                .and_then(|id| id.as_str().map(str::to_owned))
                .ok_or_else(|| {
                    DispatchError::ambiguous(format!(
                        "QuickBooks returned HTTP {} without a Bill id: {}",
                        reply.status,
                        reply.excerpt()
                    ))
                })?;
            return Ok(Delivered {
                detail: format!("Bill {id} created for {}", bill.total),
                remote_id: id,
            });
        }

        if maybe_created(&reply)
            && let Some(doc_number) = bill.invoice_number.as_deref()
        {
            if let Some(id) = self.find_bill(delivery, &realm_id, doc_number, &vendor_id).await? {
                return Ok(Delivered {
                    detail: format!("Bill {id} with DocNumber {doc_number} already existed"),
                    remote_id: id,
                });
            }
            return Err(classify(&reply).context("QuickBooks reported a duplicate but the lookup found none"));
        }
        Err(classify(&reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn reply(status: u16, body: &str) -> HttpReply {
        HttpReply {
            status,
            headers: HeaderMap::new(),
            body: body.to_owned(),
        }
    }

    fn fault(code: &str) -> String {
        format!(r#"{{"Fault":{{"Error":[{{"Message":"m","Detail":"d","code":"{code}"}}],"type":"ValidationFault"}}}}"#)
    }

    #[test]
    fn fault_codes_classify() {
        for code in ["610", "2500", "6190"] {
            assert!(
                matches!(classify(&reply(400, &fault(code))), DispatchError::Permanent { .. }),
                "code {code}"
            );
        }
        assert!(matches!(
            classify(&reply(429, &fault("003001"))),
            DispatchError::Throttled { .. }
        ));
        assert!(matches!(classify(&reply(503, "oops")), DispatchError::Retryable { .. }));
        assert!(matches!(
            classify(&reply(401, &fault("120"))),
            DispatchError::Permanent { .. }
        ));
        assert!(maybe_created(&reply(400, &fault("6140"))));
        assert!(maybe_created(&reply(400, &fault("6240"))));
        assert!(!maybe_created(&reply(400, &fault("2500"))));
    }

    #[test]
    fn fault_reason_names_code_and_detail() {
        let error = classify(&reply(400, &fault("2500")));

        assert_eq!(error.reason(), "QuickBooks returned HTTP 400: 2500 m (d)");
    }

    #[test]
    fn query_literals_are_escaped() {
        assert_eq!(escape_query(r"O'Brien\1"), r"O\'Brien\\1");
    }
}
