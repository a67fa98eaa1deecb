//! RecordEngine simulator: the document REST API and the export webhook sender.
//!
//! API routes (all need `Authorization: Bearer <token>`):
//! - `POST /api/documents/upload`: multipart upload, see [`upload`].
//! - `GET /api/documents/{id}`.
//! - `GET /api/documents?status=&contact_id=&folder_id=&external_refs_contains=&skip=&limit=`.
//!
//! Admin routes (no authentication):
//! - `GET`/`DELETE /_requests`: uploads received.
//! - `GET`/`POST`/`DELETE /_faults`: faults for the upload endpoint.
//! - `POST /_export/{id}`: export now, with optional payload overrides.
//! - `GET`/`DELETE /_exports`: webhook deliveries.
//! - `GET`/`PUT /_config`: webhook URL, webhook token and export delay.

mod export;
pub mod upload;

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};

use crate::faults::{FaultQueue, fault_routes};
use crate::json::Json;
use crate::scenario::Scenarios;
use crate::server::{ServerHandle, ShutdownSignal, ShutdownTrigger, serve};
use crate::util::{bearer_token, json_response, query_pairs};

pub use export::ExportRecord;

/// Default upload size limit, in bytes.
// NOTE: RecordEngine does not document its upload limit; 1 GiB only keeps a
// runaway client from filling memory with the non-file form fields.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 1024 * 1024 * 1024;

/// Settings of the RecordEngine simulator.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The API token uploads must present. `None` accepts any bearer token.
    pub api_token: Option<String>,
    /// The id of the first uploaded document; later ones count up from it.
    pub first_document_id: i64,
    /// Export webhook URL. `None` exports (sets the status) without sending anything.
    pub webhook_url: Option<String>,
    /// Sent as `Authorization: Bearer <token>` on webhooks; empty sends no header.
    pub webhook_token: String,
    /// Time from upload to automatic export. Zero exports only on `POST /_export/{id}`.
    pub export_delay: Duration,
    /// Timeout of one webhook delivery.
    pub webhook_timeout: Duration,
    /// Extraction values by file name.
    pub scenarios: Scenarios,
    /// Largest accepted upload request, in bytes.
    pub max_upload_bytes: usize,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            port: 0,
            api_token: None,
            first_document_id: 1001,
            webhook_url: None,
            webhook_token: String::new(),
            export_delay: Duration::from_millis(2000),
            webhook_timeout: Duration::from_secs(10),
            scenarios: Scenarios::builtin(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
        }
    }
}

/// Starts the simulator on the current tokio runtime.
pub async fn start_recordengine(config: SimulatorConfig) -> io::Result<ServerHandle> {
    let (trigger, signal) = ShutdownTrigger::new();
    let client = reqwest::Client::builder()
        .timeout(config.webhook_timeout)
        .no_proxy()
        .build()
        .map_err(io::Error::other)?;

    let simulator = Arc::new(Simulator {
        api_token: config.api_token,
        scenarios: config.scenarios,
        settings: Mutex::new(WebhookSettings {
            url: config.webhook_url,
            token: config.webhook_token,
            export_delay: config.export_delay,
        }),
        store: Mutex::new(Store {
            next_id: config.first_document_id,
            documents: BTreeMap::new(),
            uploads: Vec::new(),
            exports: Vec::new(),
        }),
        faults: Arc::new(FaultQueue::new(503)),
        client,
        base_url: OnceLock::new(),
        shutdown: signal.clone(),
    });

    let router = Router::new()
        .route(
            "/api/documents/upload",
            post(upload::upload).layer(DefaultBodyLimit::max(config.max_upload_bytes)),
        )
        .route("/api/documents", get(list_documents))
        .route("/api/documents/{id}", get(read_document))
        .route("/_requests", get(list_uploads).delete(clear_uploads))
        .route("/_export/{id}", post(export::export_on_command))
        .route("/_exports", get(export::list_exports).delete(export::clear_exports))
        .route("/_config", get(read_config).put(update_config))
        .with_state(simulator.clone())
        .merge(fault_routes(simulator.faults.clone()));

    let handle = serve("recordengine", config.port, router, trigger, signal).await?;
    // Set before any client can know the port, so every request finds it set.
    let _ = simulator.base_url.set(handle.base_url().to_owned());
    Ok(handle)
}

/// Webhook settings that `PUT /_config` can change while running.
#[derive(Debug, Clone)]
struct WebhookSettings {
    url: Option<String>,
    token: String,
    export_delay: Duration,
}

/// One uploaded document.
#[derive(Debug, Clone)]
struct Document {
    id: i64,
    filename: String,
    status: String,
    contact_id: i64,
    folder_id: i64,
    profile_id: Option<i64>,
    /// The parsed `external_refs` object; empty when none was uploaded.
    external_refs: Json,
    created_at: String,
}

impl Document {
    fn to_json(&self) -> Json {
        Json::object([
            ("id", Json::from(self.id)),
            ("filename", Json::from(self.filename.as_str())),
            ("status", Json::from(self.status.as_str())),
            ("contact_id", Json::from(self.contact_id)),
            ("folder_id", Json::from(self.folder_id)),
            ("profile_id", Json::from(self.profile_id)),
            ("external_refs", self.external_refs.clone()),
            ("created_at", Json::from(self.created_at.as_str())),
        ])
    }
}

struct Store {
    next_id: i64,
    documents: BTreeMap<i64, Document>,
    uploads: Vec<upload::UploadRecord>,
    exports: Vec<ExportRecord>,
}

struct Simulator {
    api_token: Option<String>,
    scenarios: Scenarios,
    settings: Mutex<WebhookSettings>,
    store: Mutex<Store>,
    faults: Arc<FaultQueue>,
    client: reqwest::Client,
    base_url: OnceLock<String>,
    shutdown: ShutdownSignal,
}

impl Simulator {
    fn store(&self) -> MutexGuard<'_, Store> {
        // Every update is one push or insert under the lock, so a poisoned lock holds consistent data.
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn settings(&self) -> WebhookSettings {
        self.settings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Checks `Authorization: Bearer <token>` as RecordEngine's API does.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let Some(token) = bearer_token(headers) else {
            return Err(Box::new(detail(StatusCode::UNAUTHORIZED, "Not authenticated")));
        };
        match &self.api_token {
            Some(expected) if expected != token => Err(Box::new(detail(StatusCode::UNAUTHORIZED, "Invalid API token"))),
            _ => Ok(()),
        }
    }
}

/// RecordEngine's error body, `{"detail": "<message>"}`.
fn detail(status: StatusCode, message: &str) -> Response {
    json_response(status, &Json::object([("detail", Json::from(message))]))
}

/// Builds one validation error of a `{"detail": [{"type", "loc", "msg", "input"}]}` body.
fn field_error(kind: &str, location: &[&str], message: &str, input: Json) -> Json {
    Json::object([
        ("type", Json::from(kind)),
        (
            "loc",
            Json::Array(location.iter().map(|part| Json::from(*part)).collect()),
        ),
        ("msg", Json::from(message)),
        ("input", input),
    ])
}

fn unprocessable(errors: Vec<Json>) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &Json::object([("detail", Json::Array(errors))]),
    )
}

async fn read_document(
    State(simulator): State<Arc<Simulator>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = simulator.authorize(&headers) {
        return *response;
    }
    let Ok(id) = id.parse::<i64>() else {
        return unprocessable(vec![field_error(
            "int_parsing",
            &["path", "document_id"],
            "Document id must be an integer",
            Json::from(id),
        )]);
    };
    match simulator.store().documents.get(&id) {
        Some(document) => json_response(StatusCode::OK, &document.to_json()),
        None => detail(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// Default and maximum page size of `GET /api/documents`.
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;

/// Filters of `GET /api/documents`.
#[derive(Default)]
struct DocumentFilter {
    status: Option<String>,
    contact_id: Option<i64>,
    folder_id: Option<i64>,
    /// Simulator extension, not part of RecordEngine's documented API: a
    /// substring that the document's serialised `external_refs` must contain,
    /// so a client whose upload response was lost can find the document by
    /// the reference it sent.
    external_refs_contains: Option<String>,
    skip: usize,
    limit: usize,
}

impl DocumentFilter {
    fn from_query(raw_query: Option<&str>) -> Result<DocumentFilter, Vec<Json>> {
        let mut filter = DocumentFilter {
            limit: DEFAULT_PAGE_SIZE,
            ..DocumentFilter::default()
        };
        let mut errors = Vec::new();
        for (name, value) in query_pairs(raw_query) {
            let integer = |errors: &mut Vec<Json>| -> Option<i64> {
                let parsed = value.trim().parse::<i64>().ok();
                if parsed.is_none() {
                    errors.push(field_error(
                        "int_parsing",
                        &["query", &name],
                        "Input must be an integer",
                        Json::from(value.as_str()),
                    ));
                }
                parsed
            };
            match name.as_str() {
                "status" => filter.status = Some(value.clone()),
                "contact_id" => filter.contact_id = integer(&mut errors),
                "folder_id" => filter.folder_id = integer(&mut errors),
                "external_refs_contains" => filter.external_refs_contains = Some(value.clone()),
                "skip" => filter.skip = integer(&mut errors).map_or(0, |skip| skip.max(0) as usize),
                "limit" => match integer(&mut errors) {
                    Some(limit) if (1..=MAX_PAGE_SIZE as i64).contains(&limit) => filter.limit = limit as usize,
                    Some(_) => errors.push(field_error(
                        "less_than_equal",
                        &["query", "limit"],
                        &format!("limit must be from 1 to {MAX_PAGE_SIZE}"),
                        Json::from(value.as_str()),
                    )),
                    None => {}
                },
                // Unknown parameters are ignored, as RecordEngine's API framework does.
                _ => {}
            }
        }
        if errors.is_empty() { Ok(filter) } else { Err(errors) }
    }

    fn matches(&self, document: &Document) -> bool {
        let status_ok = self
            .status
            .as_deref()
            .is_none_or(|status| document.status.eq_ignore_ascii_case(status));
        let refs_ok = self
            .external_refs_contains
            .as_deref()
            .is_none_or(|needle| document.external_refs.to_compact_string().contains(needle));
        status_ok
            && self.contact_id.is_none_or(|id| document.contact_id == id)
            && self.folder_id.is_none_or(|id| document.folder_id == id)
            && refs_ok
    }
}

async fn list_documents(
    State(simulator): State<Arc<Simulator>>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = simulator.authorize(&headers) {
        return *response;
    }
    let filter = match DocumentFilter::from_query(raw_query.as_deref()) {
        Ok(filter) => filter,
        Err(errors) => return unprocessable(errors),
    };

    let store = simulator.store();
    let matching: Vec<&Document> = store
        .documents
        .values()
        .filter(|document| filter.matches(document))
        .collect();
    let items = matching
        .iter()
        .skip(filter.skip)
        .take(filter.limit)
        .map(|document| document.to_json())
        .collect();
    json_response(
        StatusCode::OK,
        &Json::object([
            ("items", Json::Array(items)),
            ("total", Json::from(matching.len() as u64)),
        ]),
    )
}

async fn list_uploads(State(simulator): State<Arc<Simulator>>) -> Response {
    let store = simulator.store();
    let uploads = store.uploads.iter().map(upload::UploadRecord::to_json).collect();
    json_response(StatusCode::OK, &Json::object([("uploads", Json::Array(uploads))]))
}

async fn clear_uploads(State(simulator): State<Arc<Simulator>>) -> StatusCode {
    simulator.store().uploads.clear();
    StatusCode::NO_CONTENT
}

fn settings_json(settings: &WebhookSettings) -> Json {
    Json::object([
        ("webhook_url", Json::from(settings.url.clone())),
        ("webhook_token_set", Json::Bool(!settings.token.is_empty())),
        ("export_delay_ms", Json::from(settings.export_delay.as_millis() as u64)),
    ])
}

async fn read_config(State(simulator): State<Arc<Simulator>>) -> Response {
    json_response(StatusCode::OK, &settings_json(&simulator.settings()))
}

/// `PUT /_config {"webhook_url": "http://127.0.0.1:…" | null, "webhook_token": "…", "export_delay_ms": n}`;
/// absent fields keep their value.
async fn update_config(State(simulator): State<Arc<Simulator>>, body: Bytes) -> Response {
    let bad_request = |message: String| {
        json_response(
            StatusCode::BAD_REQUEST,
            &Json::object([("detail", Json::from(message))]),
        )
    };
    let parsed = match Json::parse_bytes(&body) {
        Ok(parsed @ Json::Object(_)) => parsed,
        Ok(other) => return bad_request(format!("expected a JSON object, got {}", other.type_name())),
        Err(error) => return bad_request(format!("request body is not valid JSON: {error}")),
    };

    let mut updated = simulator.settings();
    for (key, value) in parsed.as_object().unwrap_or_default() {
        match (key.as_str(), value) {
            ("webhook_url", Json::Null) => updated.url = None,
            ("webhook_url", Json::String(url)) if url.starts_with("http://") || url.starts_with("https://") => {
                updated.url = Some(url.clone());
            }
            ("webhook_token", Json::String(token)) => updated.token = token.clone(),
            ("export_delay_ms", Json::Number(text)) if text.parse::<u64>().is_ok() => {
                updated.export_delay = Duration::from_millis(text.parse().unwrap_or_default());
            }
            ("webhook_url" | "webhook_token" | "export_delay_ms", other) => {
                return bad_request(format!(
                    "invalid {key}: {other}; expected an http(s) URL or null, a string, and a whole number of milliseconds"
                ));
            }
            (other, _) => {
                return bad_request(format!(
                    "unknown field '{other}'; expected webhook_url, webhook_token or export_delay_ms"
                ));
            }
        }
    }

    let mut settings = simulator
        .settings
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *settings = updated;
    tracing::info!(webhook_url = ?settings.url, export_delay_ms = settings.export_delay.as_millis() as u64, "simulator settings changed");
    json_response(StatusCode::OK, &settings_json(&settings))
}
