//! HTTP handling of the webhook function.
//!
//! Accepts API Gateway HTTP API (payload format 2.0), REST API (v1) and
//! Lambda function URL events; `lambda_http` decodes base64 bodies. Paths are
//! matched by their ending, so a stage name in front (`/prod/webhooks/…`) is fine.

use std::sync::Arc;

use bridge_shared::auth::{AuthMode, TokenVerifier, bearer_token};
use bridge_shared::intake::{Intake, Outcome};
use bridge_shared::json::Node;
use bridge_shared::ports::{DocumentStore, InfraError, MessageQueue, RawArchive, SecretSource};
use bridge_shared::recordengine::DocumentApi;
use bridge_shared::records::{DocumentRecord, ExportRecord, TimelineEntry};
use bridge_shared::telemetry::{Metric, emit_metrics};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;

/// The route a request addresses.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    /// `POST …/webhooks/recordengine`, with the secret segment in path-secret mode.
    Webhook {
        path_secret: Option<&'a str>,
    },
    /// `GET …/documents/{id}`.
    Document {
        id: &'a str,
    },
    NotFound,
}

fn route(path: &str) -> Route<'_> {
    let segments: Vec<&str> = path.split('/').filter(|segment| !segment.is_empty()).collect();
    match segments.as_slice() {
        [.., "webhooks", "recordengine"] => Route::Webhook { path_secret: None },
        [.., "webhooks", "recordengine", secret] => Route::Webhook {
            path_secret: Some(secret),
        },
        [.., "documents", id] => Route::Document { id },
        _ => Route::NotFound,
    }
}

/// The webhook function's state, shared by all invocations of one execution environment.
pub struct App<A, S, Q, T> {
    intake: Intake<A, S, Q>,
    verifier: TokenVerifier<T>,
    auth_mode: AuthMode,
    /// RecordEngine's status endpoint for `GET /documents/{id}?refresh=true`; `None` turns refreshes off.
    recordengine: Option<Arc<dyn DocumentApi>>,
}

impl<A, S, Q, T> App<A, S, Q, T>
where
    A: RawArchive,
    S: DocumentStore,
    Q: MessageQueue,
    T: SecretSource,
{
    pub fn new(intake: Intake<A, S, Q>, verifier: TokenVerifier<T>, auth_mode: AuthMode) -> Self {
        App {
            intake,
            verifier,
            auth_mode,
            recordengine: None,
        }
    }

    /// Lets `GET /documents/{id}?refresh=true` ask RecordEngine for the document's status.
    pub fn with_recordengine(mut self, recordengine: Arc<dyn DocumentApi>) -> Self {
        self.recordengine = Some(recordengine);
        self
    }

    /// Handles one request. Every failure becomes a status code with a JSON
    /// body; this never returns an error to the runtime.
    pub async fn handle(&self, request: Request) -> Result<Response<Body>, std::convert::Infallible> {
        let path = request.uri().path().to_owned();
        let response = match (request.method(), route(&path)) {
            (&Method::POST, Route::Webhook { path_secret }) => self.webhook(&request, path_secret).await,
            (&Method::GET, Route::Document { id }) => self.document(&request, id).await,
            (_, Route::Webhook { .. } | Route::Document { .. }) => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"status": "error", "error": format!("{} is not allowed on {path}", request.method())}),
            ),
            (_, Route::NotFound) => reply(
                StatusCode::NOT_FOUND,
                json!({"status": "error", "error": format!("no route for {path}; POST /webhooks/recordengine or GET /documents/{{id}}")}),
            ),
        };
        Ok(response)
    }

    async fn webhook(&self, request: &Request, path_secret: Option<&str>) -> Response<Body> {
        let started = std::time::Instant::now();

        let presented = match (self.auth_mode, path_secret) {
            (AuthMode::Bearer, None) => authorization_token(request),
            (AuthMode::PathSecret, Some(secret)) => Some(secret),
            // The wrong form for the configured mode counts as unauthenticated.
            _ => None,
        };
        match self.authenticate(presented).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(http_status = 401, mode = ?self.auth_mode, "webhook rejected: missing or wrong credentials");
                record_request("unauthorized", started);
                return reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"status": "unauthorized", "error": self.auth_hint()}),
                );
            }
            Err(error) => return self.unavailable(&error, started),
        }

        let body: &[u8] = request.body().as_ref();
        let now = chrono::Utc::now();
        let (outcome, archive_key) = match self.intake.receive(body, now).await {
            Ok(result) => result,
            Err(error) => return self.unavailable(&error, started),
        };

        let (status, label) = match &outcome {
            Outcome::Accepted { .. } => (StatusCode::OK, "accepted"),
            Outcome::Duplicate { .. } => (StatusCode::OK, "duplicate"),
            Outcome::Ignored { .. } => (StatusCode::OK, "ignored"),
            Outcome::Rejected { .. } => (StatusCode::BAD_REQUEST, "rejected"),
            Outcome::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        };
        log_outcome(&outcome, status, &archive_key, body.len());
        record_request(label, started);

        let body = match &outcome {
            Outcome::TooLarge { size, limit } => json!({
                "status": "too_large",
                "error": format!("body of {size} bytes exceeds the limit of {limit} bytes (MAX_BODY_BYTES); it was archived as {archive_key}"),
            }),
            other => serde_json::to_value(other).unwrap_or_else(|_| json!({"status": label})),
        };
        reply(status, body)
    }

    async fn document(&self, request: &Request, id_text: &str) -> Response<Body> {
        match self.authenticate(authorization_token(request)).await {
            Ok(true) => {}
            Ok(false) => {
                return reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"status": "unauthorized", "error": "send Authorization: Bearer <webhook token>"}),
                );
            }
            Err(error) => return self.unavailable(&error, std::time::Instant::now()),
        }

        let Ok(document_id) = id_text.parse::<i64>() else {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"status": "error", "error": format!("document id {id_text:?} is not an integer RecordEngine id")}),
            );
        };

        let view = match self.intake.store.document_view(document_id).await {
            Ok(view) => view,
            Err(error) => return self.unavailable(&error, std::time::Instant::now()),
        };
        if view.document.is_none() && view.exports.is_empty() && view.timeline.is_empty() {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"status": "not_found", "error": format!("no record of RecordEngine document {document_id}")}),
            );
        }

        let refresh = request
            .query_string_parameters_ref()
            .and_then(|query| query.first("refresh").map(|value| value == "true"))
            .unwrap_or(false);
        let (recordengine, recordengine_error) = if refresh {
            self.recordengine_status(document_id).await
        } else {
            (None, None)
        };

        // Written with to_string rather than through serde_json::Value, so
        // that numbers in RecordEngine's response keep their exact text.
        let answer = DocumentAnswer {
            document_id,
            document: &view.document,
            exports: &view.exports,
            timeline: &view.timeline,
            recordengine: recordengine.as_ref(),
            recordengine_error,
        };
        match serde_json::to_string(&answer) {
            Ok(text) => reply_text(StatusCode::OK, text),
            Err(error) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"status": "error", "error": format!("could not serialise the document: {error}")}),
            ),
        }
    }

    /// RecordEngine's view of a document, or why it could not be read. A
    /// failure never fails the request: the stored record is still returned.
    async fn recordengine_status(&self, document_id: i64) -> (Option<Node>, Option<String>) {
        let Some(recordengine) = &self.recordengine else {
            return (
                None,
                Some("refresh is unavailable: RECORDENGINE_BASE_URL is not set on the webhook function".into()),
            );
        };
        match recordengine.document_status(document_id).await {
            Ok(status) => (Some(status), None),
            Err(error) => {
                tracing::warn!(document_id, error = %error, "RecordEngine status refresh failed");
                (None, Some(error.to_string()))
            }
        }
    }

    async fn authenticate(&self, presented: Option<&str>) -> Result<bool, InfraError> {
        match presented {
            None => Ok(false),
            Some(token) => self.verifier.verify(token).await,
        }
    }

    fn auth_hint(&self) -> &'static str {
        match self.auth_mode {
            AuthMode::Bearer => {
                "missing or invalid credentials: send Authorization: Bearer <webhook token> (the token stored in the webhook secret)"
            }
            AuthMode::PathSecret => {
                "missing or invalid credentials: POST to /webhooks/recordengine/<secret> with the secret stored in the webhook secret"
            }
        }
    }

    fn unavailable(&self, error: &InfraError, started: std::time::Instant) -> Response<Body> {
        tracing::error!(http_status = 503, error = %error, "webhook could not complete; the sender may retry");
        record_request("unavailable", started);
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "error": format!("{error}; retry later")}),
        )
    }
}

fn authorization_token(request: &Request) -> Option<&str> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    bearer_token(value)
}

fn log_outcome(outcome: &Outcome, status: StatusCode, archive_key: &str, body_bytes: usize) {
    let http_status = status.as_u16();
    match outcome {
        Outcome::Accepted {
            document_id, routes, ..
        } => {
            tracing::info!(document_id, http_status, status = "accepted", routes = ?routes, archive_key, "webhook handled")
        }
        Outcome::Duplicate { document_id, .. } => {
            tracing::info!(
                document_id,
                http_status,
                status = "duplicate",
                archive_key,
                "webhook handled"
            )
        }
        Outcome::Ignored { event } => {
            tracing::info!(http_status, status = "ignored", event = ?event, archive_key, "webhook handled")
        }
        Outcome::Rejected { message, .. } => {
            tracing::warn!(http_status, status = "rejected", error = %message, archive_key, "webhook handled")
        }
        Outcome::TooLarge { size, limit } => {
            tracing::warn!(
                http_status,
                status = "too_large",
                size,
                limit,
                body_bytes,
                archive_key,
                "webhook handled"
            )
        }
    }
}

fn record_request(status: &str, started: std::time::Instant) {
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    emit_metrics(
        &[("Function", "webhook"), ("Status", status)],
        &[
            Metric {
                name: "WebhookRequests",
                value: 1.0,
                unit: "Count",
            },
            Metric {
                name: "WebhookLatency",
                value: elapsed_ms,
                unit: "Milliseconds",
            },
        ],
    );
}

/// Response body of `GET /documents/{id}`.
#[derive(serde::Serialize)]
struct DocumentAnswer<'a> {
    document_id: i64,
    document: &'a Option<DocumentRecord>,
    exports: &'a [ExportRecord],
    timeline: &'a [TimelineEntry],
    /// RecordEngine's response to the status request, with `refresh=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    recordengine: Option<&'a Node>,
    /// Error of the status request, with `refresh=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    recordengine_error: Option<String>,
}

fn reply_text(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_path_ending() {
        assert_eq!(route("/webhooks/recordengine"), Route::Webhook { path_secret: None });
        assert_eq!(
            route("/prod/webhooks/recordengine/"),
            Route::Webhook { path_secret: None }
        );
        assert_eq!(
            route("/webhooks/recordengine/s3cr3t"),
            Route::Webhook {
                path_secret: Some("s3cr3t")
            }
        );
        assert_eq!(route("/prod/documents/847"), Route::Document { id: "847" });
        assert_eq!(route("/"), Route::NotFound);
        assert_eq!(route("/webhooks"), Route::NotFound);
        assert_eq!(route("/webhooks/recordengine/a/b"), Route::NotFound);
    }
}
