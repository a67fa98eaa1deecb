//! HubSpot: updates the CRM record named in the export's `external_refs`.
//!
//! `external_refs.hubspot` names the record, for example
//! `{"record_id": "12345678901", "record_type": "Deal"}`, optionally with
//! `id_property` to address the record by a unique property instead of its id.
//! The update is `PATCH {base}/crm/v3/objects/{objectType}/{objectId}` with
//! `{"properties": {...}}`, where the settings map each HubSpot property to
//! a value of the bill. A PATCH sets the same values however often it runs,
//! so a repeated delivery is harmless.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use sha2::Digest;

use super::budget::{BudgetScope, RateLimit};
use super::destination::{Delivered, Delivery, Destination};
use super::error::DispatchError;
use super::http::{HttpClient, HttpReply, join_url, with_query};
use super::ports::SecretStore;
use crate::auth::token_from_secret;
use crate::bill::map_bill;
use crate::json::Node;
use crate::payload::ExportDocument;

/// Settings of the HubSpot destination (`kind: hubspot` in `infra/destinations.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotSettings {
    /// API base URL, `https://api.hubapi.com` in production.
    pub base_url: String,
    /// HubSpot property name to the bill value it receives; see [`SOURCE_FIELDS`].
    pub properties: BTreeMap<String, String>,
    /// The budget key of the HubSpot account; the token's hash when unset.
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default = "default_rate_limit")]
    pub rate_limit: RateLimit,
}

fn default_rate_limit() -> RateLimit {
    RateLimit::HUBSPOT
}

/// The bill values a HubSpot property can receive.
pub const SOURCE_FIELDS: &[&str] = &[
    "document_id",
    "invoice_number",
    "vendor",
    "total_amount",
    "currency",
    "invoice_date",
    "due_date",
    "doc_url",
    "confidence_score",
    "filename",
    "summary",
];

/// The HubSpot record an export names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    /// The API object type (`deals`, `contacts`, `0-3`).
    pub object_type: String,
    pub record_id: String,
    pub id_property: Option<String>,
}

/// Reads `external_refs.hubspot`.
pub fn record_ref(document: &ExportDocument) -> Result<RecordRef, DispatchError> {
    let reference = document.external_refs.get("hubspot").ok_or_else(|| {
        DispatchError::permanent("external_refs.hubspot is missing, so there is no HubSpot record to update")
    })?;
    let record_id = match reference.get("record_id") {
        Some(Node::String(id)) if !id.trim().is_empty() => id.trim().to_owned(),
        Some(Node::Number(id)) => id.clone(),
        _ => {
            return Err(DispatchError::permanent(
                "external_refs.hubspot.record_id is missing or empty",
            ));
        }
    };
    let record_type = reference
        .get("record_type")
        .and_then(Node::as_str)
        .map(str::trim)
        .filter(|kind| !kind.is_empty())
        .ok_or_else(|| DispatchError::permanent("external_refs.hubspot.record_type is missing or empty"))?;
    let object_type = object_type(record_type).ok_or_else(|| {
        DispatchError::permanent(format!(
            "external_refs.hubspot.record_type {record_type:?} is not a HubSpot object type \
             (Deal, Contact, Company, Ticket, or an id such as 2-123456)"
        ))
    })?;
    let id_property = reference.get("id_property").and_then(Node::as_str).map(str::to_owned);
    Ok(RecordRef {
        object_type,
        record_id,
        id_property,
    })
}

/// Maps a record type to the API's object type.
fn object_type(record_type: &str) -> Option<String> {
    let lower = record_type.to_ascii_lowercase();
    let standard = match lower.as_str() {
        "deal" | "deals" => Some("deals"),
        "contact" | "contacts" => Some("contacts"),
        "company" | "companies" => Some("companies"),
        "ticket" | "tickets" => Some("tickets"),
        _ => None,
    };
    if let Some(name) = standard {
        return Some(name.to_owned());
    }
    // Object type ids (`0-3`, `2-123456`) and custom object names (`p_invoices`).
    let valid = lower
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    (valid && (lower.contains('-') || lower.starts_with("p_"))).then_some(lower)
}

/// The HubSpot destination.
pub struct HubSpot {
    settings: HubSpotSettings,
    http: HttpClient,
    secrets: Arc<dyn SecretStore>,
    secret_id: String,
    token: tokio::sync::OnceCell<String>,
}

impl HubSpot {
    pub fn new(settings: HubSpotSettings, http: HttpClient, secrets: Arc<dyn SecretStore>, secret_id: &str) -> Self {
        HubSpot {
            settings,
            http,
            secrets,
            secret_id: secret_id.to_owned(),
            token: tokio::sync::OnceCell::new(),
        }
    }

    async fn token(&self) -> Result<String, DispatchError> {
        let token = self
            .token
            .get_or_try_init(|| async {
                let text = self.secrets.read(&self.secret_id).await?;
                Ok::<_, DispatchError>(token_from_secret(&text))
            })
            .await?;
        Ok(token.clone())
    }

    fn properties(&self, document: &ExportDocument, annotations: &[String]) -> Result<Node, DispatchError> {
        let bill = map_bill(document, annotations).ok();
        let mut properties = BTreeMap::new();
        for (property, source) in &self.settings.properties {
            let value = match source.as_str() {
                "document_id" => Some(document.id.to_string()),
                "invoice_number" => document.fields.invoice_number.clone(),
                "vendor" => document.vendor_name().map(str::to_owned),
                "total_amount" => bill
                    .as_ref()
                    .map(|bill| bill.total.to_string())
                    .or_else(|| document.fields.total_amount.map(|total| total.to_string())),
                "currency" => document.currency_code(),
                "invoice_date" => document.fields.invoice_date.clone(),
                "due_date" => document.fields.due_date.clone(),
                "doc_url" => document.doc_url.clone(),
                "confidence_score" => document.confidence_score.map(|score| score.to_string()),
                "filename" => document.display_filename().map(str::to_owned),
                "summary" => document.ai_summary.clone(),
                other => {
                    return Err(DispatchError::permanent(format!(
                        "HubSpot property {property} maps to unknown value {other:?}; use one of {}",
                        SOURCE_FIELDS.join(", ")
                    )));
                }
            };
            // HubSpot takes every property value as a string; an absent value is left unchanged.
            if let Some(value) = value {
                properties.insert(property.clone(), Node::String(value));
            }
        }
        Ok(Node::Object(BTreeMap::from([(
            "properties".to_owned(),
            Node::Object(properties),
        )])))
    }
}

fn classify(reply: &HttpReply) -> DispatchError {
    let message = reply
        .json()
        .and_then(|body| body.get("message").and_then(|value| value.as_str()).map(str::to_owned))
        .unwrap_or_else(|| reply.excerpt());
    let reason = format!("HubSpot returned HTTP {}: {message}", reply.status);
    match reply.status {
        429 => {
            let interval = reply
                .header("x-hubspot-ratelimit-interval-milliseconds")
                .and_then(|value| value.parse::<u64>().ok())
                .map(Duration::from_millis);
            DispatchError::throttled(
                reason,
                reply.retry_after().or(interval).unwrap_or(Duration::from_secs(10)),
            )
        }
        408 | 500..=599 => DispatchError::Retryable {
            reason,
            retry_after: reply.retry_after(),
        },
        404 => DispatchError::permanent(format!("{reason}; the record in external_refs.hubspot does not exist")),
        _ => DispatchError::permanent(reason),
    }
}

#[async_trait]
impl Destination for HubSpot {
    fn kind(&self) -> &'static str {
        "hubspot"
    }

    async fn budget(&self) -> Result<Option<BudgetScope>, DispatchError> {
        let account = match &self.settings.account {
            Some(account) => account.clone(),
            None => hex::encode(&sha2::Sha256::digest(self.token().await?.as_bytes())[..8]),
        };
        Ok(Some(BudgetScope::new("hubspot", &account, self.settings.rate_limit)))
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Delivered, DispatchError> {
        let (message, document) = delivery.routed()?;
        let record = record_ref(document)?;
        let body = self.properties(document, &message.decision.annotations)?;

        let path = format!(
            "crm/v3/objects/{}/{}",
            record.object_type,
            percent_encoding::utf8_percent_encode(&record.record_id, percent_encoding::NON_ALPHANUMERIC)
        );
        let mut url = join_url(&self.settings.base_url, &path);
        if let Some(property) = &record.id_property {
            url = with_query(&url, &[("idProperty", property)]);
        }
        let display = format!("HubSpot {} {}", record.object_type, record.record_id);
        let token = self.token().await?;
        delivery.spend_request().await?;
        let request = self
            .http
            .request(Method::PATCH, &url, &display)?
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body.to_canonical_string());
        let reply = self.http.send(request, &display).await?;

        if let Some(remaining) = reply
            .header("x-hubspot-ratelimit-remaining")
            .and_then(|value| value.parse::<u64>().ok())
            && remaining < 10
        {
            tracing::info!(remaining, "HubSpot rate limit nearly used up for this interval");
        }
        if !reply.is_success() {
            return Err(classify(&reply));
        }
        let id = reply
            .json()
            .and_then(|body| body.get("id").and_then(|id| id.as_str()).map(str::to_owned))
            .unwrap_or_else(|| record.record_id.clone());
        Ok(Delivered {
            detail: format!("{} {id} updated", record.object_type),
            remote_id: id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_types_map_to_object_types() {
        assert_eq!(object_type("Deal").as_deref(), Some("deals"));
        assert_eq!(object_type("companies").as_deref(), Some("companies"));
        assert_eq!(object_type("2-123456").as_deref(), Some("2-123456"));
        assert_eq!(object_type("p_invoices").as_deref(), Some("p_invoices"));
        assert_eq!(object_type("Opportunity"), None);
        assert_eq!(object_type("../deals"), None);
    }
}
