//! Export webhooks: the `document.exported` payload and its delivery.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::{Document, Simulator, detail};
use crate::json::Json;
use crate::scenario::{DecimalText, Scenario};
use crate::util::{json_response, now_rfc3339};

/// Confidence score of a file without a scenario.
pub const GENERIC_CONFIDENCE_SCORE: u8 = 75;

/// One webhook delivery, for `GET /_exports`.
#[derive(Debug, Clone)]
pub struct ExportRecord {
    pub id: i64,
    /// The receiver's HTTP status; `None` when no response arrived.
    pub status_code: Option<u16>,
    /// Hex SHA-256 of the exact body sent.
    pub body_sha256: String,
    pub at: String,
    /// Reason no response arrived (connection refused, timed out).
    pub error: Option<String>,
    pub payload: Json,
}

impl ExportRecord {
    fn to_json(&self) -> Json {
        Json::object([
            ("id", Json::from(self.id)),
            ("status_code", Json::from(self.status_code.map(u64::from))),
            ("body_sha256", Json::from(self.body_sha256.as_str())),
            ("at", Json::from(self.at.as_str())),
            ("error", Json::from(self.error.clone())),
            ("payload", self.payload.clone()),
        ])
    }
}

/// Returns the label RecordEngine shows beside a confidence score.
// NOTE: RecordEngine documents the labels only by example (87 is "Good"); these
// thresholds are the simulator's own.
pub fn confidence_label(score: u8) -> &'static str {
    match score {
        90.. => "Excellent",
        75..=89 => "Good",
        60..=74 => "Fair",
        _ => "Low",
    }
}

fn text(value: Option<&str>) -> Json {
    value.map_or(Json::Null, Json::from)
}

fn money(value: Option<&DecimalText>) -> Json {
    value.map_or(Json::Null, |amount| Json::from(amount.as_str()))
}

/// Writes a one-sentence summary like the one RecordEngine's AI writes.
fn summary(document: &Document, scenario: Option<&Scenario>) -> String {
    let Some(scenario) = scenario else {
        return format!("Document {}; few invoice fields could be read.", document.filename);
    };
    let mut sentence = scenario.doc_type.clone().unwrap_or_else(|| "Invoice".into());
    if let Some(vendor) = &scenario.vendor {
        sentence.push_str(&format!(" from {vendor}"));
    }
    if let Some(date) = &scenario.invoice_date {
        sentence.push_str(&format!(" dated {date}"));
    }
    sentence.push('.');
    if let Some(total) = &scenario.total_amount {
        sentence.push_str(&format!(" Total amount {total}"));
        if let Some(currency) = &scenario.currency {
            sentence.push_str(&format!(" {currency}"));
        }
        sentence.push('.');
    }
    sentence
}

/// Builds the `document.exported` payload in RecordEngine's flat envelope form.
/// A file without a scenario gets a low-information invoice: USD, total `"0"`,
/// no line items, confidence 75.
pub(super) fn build_payload(document: &Document, scenario: Option<&Scenario>, base_url: &str) -> Json {
    let (extracted_fields, line_items, confidence, reasoning, custom_fields, doc_type, contact_name) = match scenario {
        Some(scenario) => {
            let fields = Json::object([
                ("vendor", text(scenario.vendor.as_deref())),
                ("invoice_number", text(scenario.invoice_number.as_deref())),
                ("invoice_date", text(scenario.invoice_date.as_deref())),
                ("due_date", text(scenario.due_date.as_deref())),
                ("currency", text(scenario.currency.as_deref())),
                ("subtotal", money(scenario.subtotal.as_ref())),
                ("tax", money(scenario.tax.as_ref())),
                ("total_amount", money(scenario.total_amount.as_ref())),
            ]);
            let lines = scenario
                .line_items
                .iter()
                .map(|line| {
                    Json::object([
                        ("description", text(line.description.as_deref())),
                        ("quantity", money(line.quantity.as_ref())),
                        ("unit_price", money(line.unit_price.as_ref())),
                        ("amount", money(line.amount.as_ref())),
                    ])
                })
                .collect();
            (
                fields,
                Json::Array(lines),
                scenario
                    .confidence_score
                    .unwrap_or(crate::scenario::DEFAULT_CONFIDENCE_SCORE),
                scenario.confidence_reasoning.clone(),
                scenario.custom_fields.clone(),
                scenario.doc_type.clone().unwrap_or_else(|| "Invoice".into()),
                scenario.contact_name.clone(),
            )
        }
        None => (
            Json::object([
                ("vendor", Json::Null),
                ("invoice_number", Json::Null),
                ("invoice_date", Json::Null),
                ("due_date", Json::Null),
                ("currency", Json::from("USD")),
                ("subtotal", Json::Null),
                ("tax", Json::Null),
                ("total_amount", Json::from("0")),
            ]),
            Json::Array(Vec::new()),
            GENERIC_CONFIDENCE_SCORE,
            Some("Few fields were found in this document; the total and vendor could not be read.".to_owned()),
            Json::Object(Vec::new()),
            "Invoice".to_owned(),
            None,
        ),
    };

    let contact_name = contact_name.unwrap_or_else(|| format!("Contact {}", document.contact_id));
    Json::object([
        ("schema_version", Json::from("2.0")),
        ("event", Json::from("document.exported")),
        ("timestamp", Json::from(now_rfc3339())),
        ("id", Json::from(document.id)),
        ("filename", Json::from(document.filename.as_str())),
        ("original_filename", Json::from(document.filename.as_str())),
        ("status", Json::from("Export")),
        ("source", Json::from("API")),
        ("doc_type", Json::from(doc_type)),
        (
            "doc_date",
            text(scenario.and_then(|scenario| scenario.invoice_date.as_deref())),
        ),
        ("contact_id", Json::from(document.contact_id)),
        ("contact_name", Json::from(contact_name)),
        ("folder_id", Json::from(document.folder_id)),
        ("folder_name", Json::from(format!("Folder {}", document.folder_id))),
        ("ai_summary", Json::from(summary(document, scenario))),
        ("confidence_score", Json::from(u64::from(confidence))),
        ("confidence_label", Json::from(confidence_label(confidence))),
        ("confidence_reasoning", Json::from(reasoning)),
        ("extracted_fields", extracted_fields),
        ("custom_fields", custom_fields),
        ("line_items", line_items),
        ("external_refs", document.external_refs.clone()),
        ("doc_url", Json::from(format!("{base_url}/documents/{}", document.id))),
    ])
}

/// Reason an export could not be sent.
#[derive(Debug, thiserror::Error)]
pub(super) enum ExportError {
    #[error("document {0} was not found")]
    NotFound(i64),
    #[error("no webhook URL is configured; set one with PUT /_config")]
    NoWebhook,
}

/// Marks the document exported and sends the webhook. `overrides` is merged into the payload first.
pub(super) async fn export(
    simulator: &Simulator,
    id: i64,
    overrides: Option<Json>,
) -> Result<ExportRecord, ExportError> {
    let settings = simulator.settings();
    let document = {
        let mut store = simulator.store();
        let document = store.documents.get_mut(&id).ok_or(ExportError::NotFound(id))?;
        document.status = "Export".into();
        document.clone()
    };
    let Some(url) = settings.url else {
        return Err(ExportError::NoWebhook);
    };

    let base_url = simulator.base_url.get().map_or("", String::as_str);
    let mut payload = build_payload(&document, simulator.scenarios.find(&document.filename), base_url);
    if let Some(overrides) = overrides {
        payload.merge(overrides);
    }
    let body = payload.to_compact_string();
    let body_sha256 = hex::encode(Sha256::digest(body.as_bytes()));

    let mut request = simulator
        .client
        .post(&url)
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    if !settings.token.is_empty() {
        request = request.header(AUTHORIZATION, format!("Bearer {}", settings.token));
    }
    let (status_code, error) = match request.send().await {
        Ok(response) => (Some(response.status().as_u16()), None),
        Err(error) => {
            let message = error_chain(&error);
            tracing::warn!(id, %url, error = %message, "webhook delivery failed");
            (None, Some(message))
        }
    };
    tracing::info!(id, %url, status = ?status_code, "export webhook sent");

    let record = ExportRecord {
        id,
        status_code,
        body_sha256,
        at: now_rfc3339(),
        error,
        payload,
    };
    simulator.store().exports.push(record.clone());
    Ok(record)
}

/// Joins an error and its sources, because reqwest's own message leaves out the cause (connection refused, timed out).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Exports `id` after the configured delay, unless the delay is zero or the server stops first.
pub(super) fn schedule_export(simulator: &Arc<Simulator>, id: i64) {
    let delay = simulator.settings().export_delay;
    if delay.is_zero() {
        return;
    }
    let simulator = simulator.clone();
    tokio::spawn(async move {
        let shutdown = simulator.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => {
                match export(&simulator, id, None).await {
                    Ok(_) => {}
                    Err(ExportError::NoWebhook) => tracing::info!(id, "document exported; no webhook URL is configured"),
                    Err(error) => tracing::warn!(id, %error, "automatic export failed"),
                }
            }
            () = shutdown.wait() => {}
        }
    });
}

/// `POST /_export/{id}` with an optional JSON object merged into the payload.
pub(super) async fn export_on_command(
    State(simulator): State<Arc<Simulator>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return detail(StatusCode::NOT_FOUND, "Not found");
    };
    let overrides = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match Json::parse_bytes(&body) {
            Ok(value @ Json::Object(_)) => Some(value),
            Ok(other) => {
                let message = format!("payload overrides must be a JSON object, got {}", other.type_name());
                return detail(StatusCode::BAD_REQUEST, &message);
            }
            Err(error) => {
                return detail(
                    StatusCode::BAD_REQUEST,
                    &format!("payload overrides are not valid JSON: {error}"),
                );
            }
        }
    };

    match export(&simulator, id, overrides).await {
        Ok(record) => json_response(StatusCode::OK, &record.to_json()),
        Err(error @ ExportError::NotFound(_)) => detail(StatusCode::NOT_FOUND, &error.to_string()),
        Err(error @ ExportError::NoWebhook) => detail(StatusCode::CONFLICT, &error.to_string()),
    }
}

pub(super) async fn list_exports(State(simulator): State<Arc<Simulator>>) -> Response {
    let store = simulator.store();
    let exports = store.exports.iter().map(ExportRecord::to_json).collect();
    json_response(StatusCode::OK, &Json::object([("exports", Json::Array(exports))]))
}

pub(super) async fn clear_exports(State(simulator): State<Arc<Simulator>>) -> StatusCode {
    simulator.store().exports.clear();
    StatusCode::NO_CONTENT
}
