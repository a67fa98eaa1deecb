//! WeCom (企业微信) group robot sink: `POST /cgi-bin/webhook/send?key=<KEY>`.
//!
//! Like the real robot webhook, it always returns HTTP 200 and reports the
//! outcome in `{"errcode": <n>, "errmsg": "..."}`; errcode 0 means delivered.
//! Codes used here:
//! - 93000: the key is missing or not accepted.
//! - 40058: the content is longer than the byte limit of its message type
//!   (4096 UTF-8 bytes for `markdown` and `markdown_v2`, 2048 for `text`).
//! - 40008: unknown `msgtype`. 44004: empty content. 40035: the body is not a
//!   JSON object. These three are this sink's choice of code for those cases.
//! - Any injected code (45009, "api freq out of limit", and so on).
//!
//! `GET /_messages` lists every message received with its content, byte length and errcode.

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use crate::faults::Fault;
use crate::json::Json;
use crate::server::{ServerHandle, ShutdownTrigger, serve};
use crate::sinks::core::SinkCore;
use crate::util::{json_response, now_rfc3339_millis, query_param};

/// Byte limit of `markdown` and `markdown_v2` content.
pub const MARKDOWN_MAX_BYTES: usize = 4096;

/// Byte limit of `text` content.
pub const TEXT_MAX_BYTES: usize = 2048;

/// Settings of the WeCom sink.
#[derive(Debug, Clone, Default)]
pub struct WeComConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Accepted robot keys. `None` accepts any non-empty key.
    pub keys: Option<Vec<String>>,
}

/// Starts the WeCom robot sink on the current tokio runtime.
pub async fn start_wecom(config: WeComConfig) -> io::Result<ServerHandle> {
    let robot = Arc::new(Robot {
        keys: config.keys.map(|keys| keys.into_iter().collect()),
        messages: Mutex::new(Vec::new()),
    });
    let core = Arc::new(SinkCore::new("wecom", 200, render_fault));
    let api = Router::new()
        .route("/cgi-bin/webhook/send", post(send))
        .with_state(robot.clone());
    let admin = Router::new()
        .route("/_messages", get(list_messages).delete(clear_messages))
        .with_state(robot);

    let (trigger, signal) = ShutdownTrigger::new();
    serve(
        "wecom",
        config.port,
        core.into_router(api).merge(admin),
        trigger,
        signal,
    )
    .await
}

struct Robot {
    keys: Option<HashSet<String>>,
    messages: Mutex<Vec<Json>>,
}

impl Robot {
    fn messages(&self) -> MutexGuard<'_, Vec<Json>> {
        // Only pushes and clears happen under this lock, so a poisoned lock holds consistent data.
        self.messages.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Returns the `errmsg` WeCom pairs with an errcode, or a generic text for unknown codes.
pub fn errmsg_for(errcode: i64) -> &'static str {
    match errcode {
        0 => "ok",
        -1 => "system busy",
        40008 => "invalid message type",
        40035 => "invalid parameter",
        40058 => "invalid parameter: content exceeds the byte limit of its msgtype",
        44004 => "empty content",
        45009 => "api freq out of limit",
        93000 => "invalid webhook url",
        _ => "injected error",
    }
}

fn answer(errcode: i64) -> Response {
    json_response(
        StatusCode::OK,
        &Json::object([
            ("errcode", Json::from(errcode)),
            ("errmsg", Json::from(errmsg_for(errcode))),
        ]),
    )
}

fn render_fault(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::OK);
    let errcode = fault.errcode.unwrap_or(-1);
    json_response(
        status,
        &Json::object([
            ("errcode", Json::from(errcode)),
            ("errmsg", Json::from(errmsg_for(errcode))),
        ]),
    )
}

/// A message read from a request: its type and content, or the errcode that rejects it.
struct Message {
    msgtype: Option<String>,
    content: Option<String>,
    errcode: i64,
}

fn read_message(body: &[u8]) -> Message {
    let rejected = |msgtype: Option<String>, content: Option<String>, errcode| Message {
        msgtype,
        content,
        errcode,
    };
    let Ok(parsed @ Json::Object(_)) = Json::parse_bytes(body) else {
        return rejected(None, None, 40035);
    };
    let Some(msgtype) = parsed.get("msgtype").and_then(Json::as_str).map(str::to_owned) else {
        return rejected(None, None, 40008);
    };

    let limit = match msgtype.as_str() {
        "text" => Some(TEXT_MAX_BYTES),
        "markdown" | "markdown_v2" => Some(MARKDOWN_MAX_BYTES),
        // Accepted without a content check.
        "image" | "news" | "file" | "voice" | "template_card" => None,
        _ => return rejected(Some(msgtype), None, 40008),
    };
    let Some(limit) = limit else {
        return rejected(Some(msgtype), None, 0);
    };

    let content = parsed
        .get(&msgtype)
        .and_then(|section| section.get("content"))
        .and_then(Json::as_str)
        .map(str::to_owned);
    let errcode = match &content {
        None => 44004,
        Some(text) if text.is_empty() => 44004,
        Some(text) if text.len() > limit => 40058,
        Some(_) => 0,
    };
    rejected(Some(msgtype), content, errcode)
}

async fn send(State(robot): State<Arc<Robot>>, RawQuery(raw_query): RawQuery, body: Bytes) -> Response {
    let key = query_param(raw_query.as_deref(), "key").filter(|key| !key.is_empty());
    let key_ok = match (&key, &robot.keys) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(key), Some(keys)) => keys.contains(key),
    };

    let message = if key_ok {
        read_message(&body)
    } else {
        Message {
            msgtype: None,
            content: None,
            errcode: 93000,
        }
    };
    if message.errcode != 0 {
        tracing::info!(errcode = message.errcode, msgtype = ?message.msgtype, "robot message rejected");
    }

    let bytes = message.content.as_ref().map(|content| content.len() as u64);
    robot.messages().push(Json::object([
        ("key", Json::from(key)),
        ("msgtype", Json::from(message.msgtype)),
        ("content", Json::from(message.content)),
        ("bytes", Json::from(bytes)),
        ("errcode", Json::from(message.errcode)),
        ("at", Json::from(now_rfc3339_millis())),
    ]));
    answer(message.errcode)
}

async fn list_messages(State(robot): State<Arc<Robot>>) -> Response {
    let messages = robot.messages().clone();
    json_response(StatusCode::OK, &Json::object([("messages", Json::Array(messages))]))
}

async fn clear_messages(State(robot): State<Arc<Robot>>) -> StatusCode {
    robot.messages().clear();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_utf8_bytes() {
        // 1366 three-byte characters are 4098 bytes, over the markdown limit.
        let long = "发".repeat(1366);
        let body = format!(r#"{{"msgtype": "markdown", "markdown": {{"content": "{long}"}}}}"#);
        assert_eq!(read_message(body.as_bytes()).errcode, 40058);

        let fits = "发".repeat(1365);
        let body = format!(r#"{{"msgtype": "markdown", "markdown": {{"content": "{fits}"}}}}"#);
        assert_eq!(read_message(body.as_bytes()).errcode, 0);

        let text = "a".repeat(TEXT_MAX_BYTES + 1);
        let body = format!(r#"{{"msgtype": "text", "text": {{"content": "{text}"}}}}"#);
        assert_eq!(read_message(body.as_bytes()).errcode, 40058);
    }

    #[test]
    fn malformed_messages() {
        assert_eq!(read_message(b"nope").errcode, 40035);
        assert_eq!(read_message(b"[]").errcode, 40035);
        assert_eq!(read_message(br#"{"text": {"content": "x"}}"#).errcode, 40008);
        assert_eq!(read_message(br#"{"msgtype": "video"}"#).errcode, 40008);
        assert_eq!(
            read_message(br#"{"msgtype": "text", "text": {"content": ""}}"#).errcode,
            44004
        );
        assert_eq!(read_message(br#"{"msgtype": "markdown"}"#).errcode, 44004);
    }
}
