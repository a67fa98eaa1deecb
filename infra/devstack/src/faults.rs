//! Injected faults: responses that replace the normal response of the next requests.
//!
//! `POST /_faults` appends a fault to a queue. Each matching request takes the
//! fault at the head of the queue and decrements its `times`. The fault leaves
//! the queue when `times` reaches zero, and the next one applies after it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::json::Json;
use crate::util::json_response;

/// Maximum `delay_ms` of a fault, so a mistyped value cannot hang a test run.
pub const MAX_FAULT_DELAY_MS: u64 = 600_000;

/// Maximum `times` of a fault.
pub const MAX_FAULT_TIMES: u64 = 1_000_000;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// HTTP status of the response. 0 means: handle the request normally, then
    /// wait `delay_ms` before responding, like a server that did the work but
    /// responds after the client's timeout.
    pub status: u16,
    /// Application error code for sinks whose error bodies carry one (WeCom `errcode`,
    /// a QuickBooks `code`).
    pub errcode: Option<i64>,
    /// Wait before responding, in milliseconds.
    pub delay_ms: u64,
    /// The `Retry-After` header value, sent as given.
    pub retry_after: Option<String>,
    /// How many requests receive this fault.
    pub times: u64,
    /// A body that replaces the sink's default error body. A JSON string is sent as its text.
    pub body: Option<Json>,
}

impl Fault {
    /// Reads a fault from the JSON body of `POST /_faults`. `default_status`
    /// applies when the body has no `status`.
    pub fn from_json(body: &[u8], default_status: u16) -> Result<Fault, String> {
        let value = Json::parse_bytes(body).map_err(|error| format!("fault body is not valid JSON: {error}"))?;
        let Json::Object(members) = value else {
            return Err(format!("fault body must be a JSON object, got {}", value.type_name()));
        };

        let mut fault = Fault {
            status: default_status,
            errcode: None,
            delay_ms: 0,
            retry_after: None,
            times: 1,
            body: None,
        };
        for (key, value) in members {
            match key.as_str() {
                "status" => {
                    let status = integer_field(&key, &value, 0, 599)?;
                    if status != 0 && status < 100 {
                        return Err(format!(
                            "status must be 0 or an HTTP status from 100 to 599, got {status}"
                        ));
                    }
                    fault.status = status as u16;
                }
                "errcode" => {
                    fault.errcode = Some(
                        value
                            .as_i64()
                            .ok_or_else(|| format!("errcode must be an integer, got {value}"))?,
                    );
                }
                "delay_ms" => fault.delay_ms = integer_field(&key, &value, 0, MAX_FAULT_DELAY_MS)?,
                "retry_after" => {
                    fault.retry_after = match &value {
                        Json::Null => None,
                        Json::String(_) | Json::Number(_) => value.scalar_text(),
                        other => return Err(format!("retry_after must be a string or a number, got {other}")),
                    };
                }
                "times" => fault.times = integer_field(&key, &value, 1, MAX_FAULT_TIMES)?,
                "body" => fault.body = (!value.is_null()).then_some(value),
                other => {
                    return Err(format!(
                        "unknown fault field '{other}'; expected status, errcode, delay_ms, retry_after, times or body"
                    ));
                }
            }
        }
        Ok(fault)
    }

    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }

    /// Builds the response for the fault's `body`, with `Retry-After` when set; `None` without a body.
    pub fn body_override(&self, status: StatusCode) -> Option<Response> {
        let body = self.body.as_ref()?;
        let mut response = match body {
            Json::String(text) => {
                let content_type = if Json::parse(text).is_ok() {
                    "application/json"
                } else {
                    "text/plain; charset=utf-8"
                };
                (
                    status,
                    [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
                    text.clone(),
                )
                    .into_response()
            }
            other => json_response(status, other),
        };
        self.apply_retry_after(&mut response);
        Some(response)
    }

    /// Adds the `Retry-After` header when the fault sets one.
    pub fn apply_retry_after(&self, response: &mut Response) {
        if let Some(value) = self
            .retry_after
            .as_deref()
            .and_then(|text| HeaderValue::from_str(text).ok())
        {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
    }

    fn to_json(&self, remaining: u64) -> Json {
        Json::object([
            ("status", Json::from(u64::from(self.status))),
            ("errcode", Json::from(self.errcode)),
            ("delay_ms", Json::from(self.delay_ms)),
            ("retry_after", Json::from(self.retry_after.clone())),
            ("times", Json::from(self.times)),
            ("remaining", Json::from(remaining)),
            ("body", self.body.clone().unwrap_or_default()),
        ])
    }
}

fn integer_field(key: &str, value: &Json, min: u64, max: u64) -> Result<u64, String> {
    let number = match value {
        Json::Number(text) => text.parse::<u64>().ok(),
        _ => None,
    };
    match number {
        Some(number) if (min..=max).contains(&number) => Ok(number),
        _ => Err(format!("{key} must be an integer from {min} to {max}, got {value}")),
    }
}

#[derive(Debug)]
struct PendingFault {
    fault: Fault,
    remaining: u64,
}

/// The queue of pending faults of one server.
#[derive(Debug)]
pub struct FaultQueue {
    default_status: u16,
    pending: Mutex<VecDeque<PendingFault>>,
}

impl FaultQueue {
    /// Creates an empty queue; `default_status` applies to faults posted without a status.
    pub fn new(default_status: u16) -> FaultQueue {
        FaultQueue {
            default_status,
            pending: Mutex::new(VecDeque::new()),
        }
    }

    pub fn push(&self, fault: Fault) {
        let remaining = fault.times;
        self.lock().push_back(PendingFault { fault, remaining });
    }

    /// Takes one use of the fault at the head of the queue.
    pub fn take(&self) -> Option<Fault> {
        let mut pending = self.lock();
        let head = pending.front_mut()?;
        head.remaining -= 1;
        let fault = head.fault.clone();
        if head.remaining == 0 {
            pending.pop_front();
        }
        Some(fault)
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Lists the pending faults with their remaining uses, head first.
    pub fn to_json(&self) -> Json {
        let pending = self.lock();
        Json::Array(
            pending
                .iter()
                .map(|entry| entry.fault.to_json(entry.remaining))
                .collect(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<PendingFault>> {
        // A panic while holding this lock cannot leave the queue half-updated.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `GET`, `POST` and `DELETE /_faults` for one queue.
pub fn fault_routes(queue: Arc<FaultQueue>) -> Router {
    Router::new()
        .route("/_faults", get(list_faults).post(add_fault).delete(clear_faults))
        .with_state(queue)
}

async fn list_faults(State(queue): State<Arc<FaultQueue>>) -> Response {
    json_response(StatusCode::OK, &Json::object([("faults", queue.to_json())]))
}

async fn add_fault(State(queue): State<Arc<FaultQueue>>, body: Bytes) -> Response {
    match Fault::from_json(&body, queue.default_status) {
        Ok(fault) => {
            tracing::info!(?fault, "fault queued");
            queue.push(fault);
            json_response(StatusCode::OK, &Json::object([("faults", queue.to_json())]))
        }
        Err(message) => json_response(StatusCode::BAD_REQUEST, &Json::object([("error", Json::from(message))])),
    }
}

async fn clear_faults(State(queue): State<Arc<FaultQueue>>) -> StatusCode {
    queue.clear();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_full_fault() {
        let fault = Fault::from_json(
            br#"{"status": 429, "errcode": 45009, "delay_ms": 10, "retry_after": "37", "times": 2, "body": {"a": 1}}"#,
            500,
        )
        .unwrap();

        assert_eq!(fault.status, 429);
        assert_eq!(fault.errcode, Some(45009));
        assert_eq!(fault.delay_ms, 10);
        assert_eq!(fault.retry_after.as_deref(), Some("37"));
        assert_eq!(fault.times, 2);
        assert_eq!(fault.body, Some(Json::parse(r#"{"a":1}"#).unwrap()));
    }

    #[test]
    fn defaults_apply() {
        let fault = Fault::from_json(b"{}", 200).unwrap();

        assert_eq!(fault.status, 200);
        assert_eq!(fault.times, 1);
        assert_eq!(fault.delay_ms, 0);
        assert_eq!(
            Fault::from_json(br#"{"retry_after": 5}"#, 500)
                .unwrap()
                .retry_after
                .as_deref(),
            Some("5")
        );
    }

    #[test]
    fn invalid_faults_are_rejected() {
        let cases: [&[u8]; 9] = [
            b"not json",
            b"[]",
            br#"{"status": 42}"#,
            br#"{"status": 600}"#,
            br#"{"status": "503"}"#,
            br#"{"times": 0}"#,
            br#"{"delay_ms": 600001}"#,
            br#"{"retry_after": {}}"#,
            br#"{"stauts": 503}"#,
        ];
        for case in cases {
            assert!(
                Fault::from_json(case, 500).is_err(),
                "accepted {}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn queue_counts_uses() {
        let queue = FaultQueue::new(500);
        queue.push(Fault::from_json(br#"{"status": 503, "times": 2}"#, 500).unwrap());
        queue.push(Fault::from_json(br#"{"status": 429}"#, 500).unwrap());

        let statuses: Vec<Option<u16>> = (0..4).map(|_| queue.take().map(|fault| fault.status)).collect();

        assert_eq!(statuses, vec![Some(503), Some(503), Some(429), None]);
    }
}
