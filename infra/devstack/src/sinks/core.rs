//! What every sink shares: request recording, fault injection and concurrency statistics.
//!
//! A middleware wraps each sink's API routes. Paths starting with `/_` are
//! admin endpoints and pass through untouched. Every other request is
//! buffered, recorded, counted, and then either given the next injected
//! fault's response or handed to the sink's handler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;

use crate::faults::{Fault, FaultQueue, fault_routes};
use crate::json::Json;
use crate::sinks::oauth::OAuthStore;
use crate::util::{json_response, now_rfc3339_millis, query_pairs};

/// The largest request body a sink accepts, in bytes.
pub const SINK_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Builds a sink's default error response for a fault whose `body` is not set.
pub type FaultRenderer = fn(&Fault) -> Response;

/// One request as a sink received it.
#[derive(Debug, Clone)]
struct RecordedRequest {
    /// Sequence number, unique for the sink's lifetime, so a clear during a request cannot misdirect its update.
    seq: u64,
    method: String,
    path: String,
    raw_query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    at: String,
    response_status: Option<u16>,
    fault_status: Option<u16>,
}

impl RecordedRequest {
    fn to_json(&self) -> Json {
        let mut headers = Json::Object(Vec::new());
        for name in self.headers.keys() {
            if name == AUTHORIZATION {
                continue;
            }
            let values: Vec<String> = self
                .headers
                .get_all(name)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .collect();
            headers.insert(name.as_str(), Json::from(values.join(", ")));
        }

        let authorization = match self.headers.get(AUTHORIZATION) {
            None => Json::object([("present", Json::Bool(false)), ("scheme", Json::Null)]),
            Some(value) => {
                let text = String::from_utf8_lossy(value.as_bytes());
                let scheme = text.split_whitespace().next().unwrap_or_default().to_owned();
                Json::object([("present", Json::Bool(true)), ("scheme", Json::from(scheme))])
            }
        };

        let mut query = Json::Object(Vec::new());
        for (name, value) in query_pairs(self.raw_query.as_deref()) {
            query.insert(&name, Json::from(value));
        }

        // A JSON body is returned parsed; any other non-empty body as text.
        let (body, body_text) = if self.body.is_empty() {
            (Json::Null, Json::Null)
        } else {
            match Json::parse_bytes(&self.body) {
                Ok(parsed) => (parsed, Json::Null),
                Err(_) => (Json::Null, Json::from(String::from_utf8_lossy(&self.body).into_owned())),
            }
        };

        Json::object([
            ("method", Json::from(self.method.as_str())),
            ("path", Json::from(self.path.as_str())),
            ("query", query),
            ("raw_query", Json::from(self.raw_query.clone())),
            ("headers", headers),
            ("authorization", authorization),
            ("body", body),
            ("body_text", body_text),
            ("size", Json::from(self.body.len() as u64)),
            ("at", Json::from(self.at.as_str())),
            ("response_status", Json::from(self.response_status.map(u64::from))),
            ("fault_status", Json::from(self.fault_status.map(u64::from))),
        ])
    }
}

/// Recording, faults and counters of one sink.
#[derive(Debug)]
pub struct SinkCore {
    name: &'static str,
    faults: Arc<FaultQueue>,
    render_fault: FaultRenderer,
    /// API paths that are neither recorded nor faulted (the OAuth token endpoints).
    unrecorded_paths: Vec<&'static str>,
    oauth: Option<Arc<OAuthStore>>,
    requests: Mutex<Vec<RecordedRequest>>,
    next_seq: AtomicU64,
    in_flight: AtomicU64,
    max_concurrent: AtomicU64,
    total: AtomicU64,
}

impl SinkCore {
    pub fn new(name: &'static str, default_fault_status: u16, render_fault: FaultRenderer) -> SinkCore {
        SinkCore {
            name,
            faults: Arc::new(FaultQueue::new(default_fault_status)),
            render_fault,
            unrecorded_paths: Vec::new(),
            oauth: None,
            requests: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_concurrent: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    /// Adds an OAuth token endpoint at `path`: its requests are counted in
    /// `/_stats` under `oauth` but not recorded or faulted.
    pub fn with_oauth(mut self, path: &'static str, oauth: Arc<OAuthStore>) -> SinkCore {
        self.unrecorded_paths.push(path);
        self.oauth = Some(oauth);
        self
    }

    /// Wraps `api` in the recording middleware and adds the admin endpoints
    /// `/_requests`, `/_faults` and `/_stats`.
    pub fn into_router(self: Arc<SinkCore>, api: Router) -> Router {
        let admin = Router::new()
            .route("/_requests", get(list_requests).delete(clear_requests))
            .route("/_stats", get(stats).delete(reset_stats))
            .with_state(self.clone());

        let mut router = api
            .layer(axum::middleware::from_fn_with_state(self.clone(), record_and_inject))
            .merge(admin)
            .merge(fault_routes(self.faults.clone()));
        if let Some(oauth) = &self.oauth {
            router = router.merge(oauth.clone().admin_routes());
        }
        router
    }

    fn lock_requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        // Each update is a single push or field write, so a poisoned lock holds consistent data.
        self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stats_json(&self) -> Json {
        let mut stats = Json::object([
            ("requests", Json::from(self.total.load(Ordering::SeqCst))),
            ("in_flight", Json::from(self.in_flight.load(Ordering::SeqCst))),
            ("max_concurrent", Json::from(self.max_concurrent.load(Ordering::SeqCst))),
        ]);
        if let Some(oauth) = &self.oauth {
            stats.insert("oauth", oauth.stats_json());
        }
        stats
    }
}

/// Decrements the in-flight counter when a request ends, including when the client goes away.
struct InFlightGuard<'a> {
    core: &'a SinkCore,
}

impl<'a> InFlightGuard<'a> {
    fn enter(core: &'a SinkCore) -> InFlightGuard<'a> {
        let now = core.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        core.max_concurrent.fetch_max(now, Ordering::SeqCst);
        InFlightGuard { core }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.core.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn record_and_inject(State(core): State<Arc<SinkCore>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with("/_") || core.unrecorded_paths.contains(&path.as_str()) {
        return next.run(request).await;
    }

    core.total.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlightGuard::enter(&core);

    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, SINK_BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(sink = core.name, %path, %error, "failed to read request body");
            let message = format!("request body could not be read or exceeds {SINK_BODY_LIMIT} bytes: {error}");
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &Json::object([("error", Json::from(message))]),
            );
        }
    };

    let seq = core.next_seq.fetch_add(1, Ordering::SeqCst);
    core.lock_requests().push(RecordedRequest {
        seq,
        method: parts.method.to_string(),
        path: path.clone(),
        raw_query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: body.clone(),
        at: now_rfc3339_millis(),
        response_status: None,
        fault_status: None,
    });

    let fault = core.faults.take();
    let response = match &fault {
        Some(fault) if fault.status != 0 => {
            tracing::info!(sink = core.name, %path, status = fault.status, "responding with injected fault");
            tokio::time::sleep(fault.delay()).await;
            let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = fault
                .body_override(status)
                .unwrap_or_else(|| (core.render_fault)(fault));
            fault.apply_retry_after(&mut response);
            response
        }
        _ => {
            let response = next.run(Request::from_parts(parts, Body::from(body))).await;
            if let Some(fault) = &fault {
                tracing::info!(sink = core.name, %path, delay_ms = fault.delay_ms, "delaying response as injected");
                tokio::time::sleep(fault.delay()).await;
            }
            response
        }
    };

    // DELETE /_requests may have removed the entry meanwhile.
    if let Some(entry) = core.lock_requests().iter_mut().rev().find(|entry| entry.seq == seq) {
        entry.response_status = Some(response.status().as_u16());
        entry.fault_status = fault.as_ref().map(|fault| fault.status).filter(|status| *status != 0);
    }
    response
}

async fn list_requests(State(core): State<Arc<SinkCore>>) -> Response {
    let requests = core.lock_requests();
    let list = Json::Array(requests.iter().map(RecordedRequest::to_json).collect());
    json_response(StatusCode::OK, &Json::object([("requests", list)]))
}

async fn clear_requests(State(core): State<Arc<SinkCore>>) -> StatusCode {
    core.lock_requests().clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(core): State<Arc<SinkCore>>) -> Response {
    json_response(StatusCode::OK, &core.stats_json())
}

async fn reset_stats(State(core): State<Arc<SinkCore>>) -> StatusCode {
    core.total.store(0, Ordering::SeqCst);
    core.max_concurrent
        .store(core.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    StatusCode::NO_CONTENT
}
