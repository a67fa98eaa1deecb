//! Generic HTTP JSON sink, standing in for any destination that takes a JSON body.
//!
//! `POST`, `PUT` or `PATCH` to any path outside `/_*` creates an object and
//! returns `201 {"id": "<n>"}`. A repeated `Idempotency-Key` header gets the
//! first response again and creates nothing. `GET <path>` lists the objects
//! created at that path as `{"items": [{"id", "body"}]}`.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

use crate::faults::Fault;
use crate::json::Json;
use crate::server::{ServerHandle, ShutdownTrigger, serve};
use crate::sinks::core::SinkCore;
use crate::util::json_response;

/// Settings of the generic sink.
#[derive(Debug, Clone, Default)]
pub struct GenericConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
}

/// Starts the generic JSON sink on the current tokio runtime.
pub async fn start_generic(config: GenericConfig) -> io::Result<ServerHandle> {
    let store = Arc::new(ObjectStore::default());
    let core = Arc::new(SinkCore::new("generic", 500, render_fault));
    let api = Router::new().fallback(handle).with_state(store);

    let (trigger, signal) = ShutdownTrigger::new();
    serve("generic", config.port, core.into_router(api), trigger, signal).await
}

#[derive(Default)]
struct ObjectStore {
    objects: Mutex<Objects>,
}

#[derive(Default)]
struct Objects {
    last_id: u64,
    /// `(path, id, body)` in creation order.
    created: Vec<(String, String, Json)>,
    /// The first response to each `Idempotency-Key`.
    responses: HashMap<String, (StatusCode, Json)>,
}

impl ObjectStore {
    fn lock(&self) -> MutexGuard<'_, Objects> {
        // Each handler updates the store in one critical section, so a poisoned lock holds consistent data.
        self.objects.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &Json::object([
            ("error", Json::from(message)),
            ("status", Json::from(u64::from(status.as_u16()))),
        ]),
    )
}

fn render_fault(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = Json::object([
        ("error", Json::from("injected by the devstack sink")),
        ("status", Json::from(u64::from(status.as_u16()))),
    ]);
    if let Some(code) = fault.errcode {
        body.insert("code", Json::from(code));
    }
    json_response(status, &body)
}

async fn handle(
    State(store): State<Arc<ObjectStore>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    match method {
        Method::GET => list(&store, &path),
        Method::POST | Method::PUT | Method::PATCH => create(&store, path, &headers, &body),
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("method {method} is not supported; use GET, POST, PUT or PATCH"),
        ),
    }
}

fn list(store: &ObjectStore, path: &str) -> Response {
    let objects = store.lock();
    let items = objects
        .created
        .iter()
        .filter(|(created_path, _, _)| created_path == path)
        .map(|(_, id, body)| Json::object([("id", Json::from(id.as_str())), ("body", body.clone())]))
        .collect();
    json_response(StatusCode::OK, &Json::object([("items", Json::Array(items))]))
}

fn create(store: &ObjectStore, path: String, headers: &HeaderMap, body: &[u8]) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
        .map(str::to_owned);

    let mut objects = store.lock();
    if let Some(key) = &key
        && let Some((status, body)) = objects.responses.get(key)
    {
        tracing::info!(idempotency_key = %key, "replaying the first response to a repeated Idempotency-Key");
        return json_response(*status, body);
    }

    let (status, response_body) = match Json::parse_bytes(body) {
        Ok(parsed) => {
            objects.last_id += 1;
            let id = objects.last_id.to_string();
            objects.created.push((path, id.clone(), parsed));
            (StatusCode::CREATED, Json::object([("id", Json::from(id))]))
        }
        Err(parse_error) => (
            StatusCode::BAD_REQUEST,
            Json::object([
                (
                    "error",
                    Json::from(format!("request body is not valid JSON: {parse_error}")),
                ),
                ("status", Json::from(400_u64)),
            ]),
        ),
    };
    if let Some(key) = key {
        objects.responses.insert(key, (status, response_body.clone()));
    }
    json_response(status, &response_body)
}
