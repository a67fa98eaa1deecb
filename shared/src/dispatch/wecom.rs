//! WeCom (企业微信) group robot: `POST {base}/cgi-bin/webhook/send?key=<KEY>`.
//!
//! The key is the credential, so it is read from Secrets Manager and the URL
//! never appears in a log line or error. Markdown content is limited to
//! 4,096 bytes of UTF-8 and cut on a character boundary. HTTP 200 alone does
//! not mean success: the body's `errcode` must be 0. 45009 (sending too fast)
//! waits at least 60 seconds; 93000 (invalid key) and 40058 (content too
//! long) are permanent. A robot takes at most 20 messages a minute.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use sha2::Digest;

use super::alert_text::truncate_utf8;
use super::body::{object, text};
use super::budget::{BudgetScope, RateLimit};
use super::error::DispatchError;
use super::http::{HttpClient, classify_status, join_url, with_query};
use super::ports::SecretStore;

/// Byte limit of `markdown` content.
pub const MARKDOWN_MAX_BYTES: usize = 4096;

/// Byte limit of `text` content.
pub const TEXT_MAX_BYTES: usize = 2048;

/// The shortest wait after errcode 45009.
pub const TOO_FAST_WAIT: Duration = Duration::from_secs(60);

/// The production base URL.
pub const WECOM_BASE_URL: &str = "https://qyapi.weixin.qq.com";

#[derive(Debug, Deserialize)]
struct RobotReply {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// One group robot.
pub struct WeComRobot {
    base_url: String,
    http: HttpClient,
    secrets: Arc<dyn SecretStore>,
    secret_id: String,
    rate_limit: RateLimit,
    key: tokio::sync::OnceCell<String>,
}

impl WeComRobot {
    pub fn new(base_url: &str, http: HttpClient, secrets: Arc<dyn SecretStore>, secret_id: &str) -> Self {
        WeComRobot {
            base_url: base_url.to_owned(),
            http,
            secrets,
            secret_id: secret_id.to_owned(),
            rate_limit: RateLimit::WECOM,
            key: tokio::sync::OnceCell::new(),
        }
    }

    pub fn with_rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    async fn key(&self) -> Result<String, DispatchError> {
        let key = self
            .key
            .get_or_try_init(|| async {
                let value = self.secrets.read(&self.secret_id).await?;
                robot_key(&value).ok_or_else(|| {
                    DispatchError::permanent(format!(
                        "secret {} holds no WeCom robot key; store the key alone or as {{\"key\": \"…\"}}",
                        self.secret_id
                    ))
                })
            })
            .await?;
        Ok(key.clone())
    }

    /// Returns the robot's rate budget, keyed by a hash of its key.
    pub async fn budget_scope(&self) -> Result<BudgetScope, DispatchError> {
        let key = self.key().await?;
        let account = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8]);
        Ok(BudgetScope::new("wecom", &account, self.rate_limit))
    }

    /// Sends markdown, cut to 4,096 bytes on a character boundary.
    pub async fn send_markdown(&self, content: &str) -> Result<(), DispatchError> {
        let content = truncate_utf8(content, MARKDOWN_MAX_BYTES);
        self.send(object([
            ("msgtype", text("markdown")),
            ("markdown", object([("content", text(content))])),
        ]))
        .await
    }

    /// Sends plain text, cut to 2,048 bytes on a character boundary.
    pub async fn send_text(&self, content: &str) -> Result<(), DispatchError> {
        let content = truncate_utf8(content, TEXT_MAX_BYTES);
        self.send(object([
            ("msgtype", text("text")),
            ("text", object([("content", text(content))])),
        ]))
        .await
    }

    async fn send(&self, body: crate::json::Node) -> Result<(), DispatchError> {
        let display = "the WeCom robot webhook";
        let key = self.key().await?;
        let url = with_query(&join_url(&self.base_url, "cgi-bin/webhook/send"), &[("key", &key)]);
        let request = self
            .http
            .request(Method::POST, &url, display)?
            .header("Content-Type", "application/json")
            .body(body.to_canonical_string());
        let reply = self.http.send(request, display).await?;
        if !reply.is_success() {
            return Err(classify_status(&reply, display));
        }
        let answer: RobotReply = serde_json::from_str(&reply.body).map_err(|_| {
            DispatchError::ambiguous(format!(
                "{display} returned HTTP {} without an errcode: {}",
                reply.status,
                reply.excerpt()
            ))
        })?;
        classify_errcode(answer.errcode, &answer.errmsg)
    }
}

/// Reads the key from a secret value: the plain string, or `key` or `token` of a JSON object.
fn robot_key(secret_value: &str) -> Option<String> {
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(secret_value) {
        let key = object
            .get("key")
            .or(object.get("token"))
            .and_then(|value| value.as_str())?;
        return Some(key.trim().to_owned()).filter(|key| !key.is_empty());
    }
    Some(secret_value.trim().to_owned()).filter(|key| !key.is_empty())
}

/// Maps the robot's `errcode` to an outcome.
fn classify_errcode(errcode: i64, errmsg: &str) -> Result<(), DispatchError> {
    let reason = format!("WeCom robot errcode {errcode}: {errmsg}");
    match errcode {
        0 => Ok(()),
        45009 => Err(DispatchError::throttled(reason, TOO_FAST_WAIT)),
        93000 => Err(DispatchError::permanent(format!(
            "{reason}; the robot key is invalid: store the current key in the secret"
        ))),
        40058 | 40008 | 44004 | 40035 => Err(DispatchError::permanent(reason)),
        // -1 is "system busy"; unknown codes get the benefit of the doubt, bounded by the redrive policy.
        _ => Err(DispatchError::retryable(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_classify() {
        assert_eq!(classify_errcode(0, "ok"), Ok(()));
        let Err(DispatchError::Throttled { retry_after, .. }) = classify_errcode(45009, "api freq out of limit") else {
            panic!("45009 is throttling");
        };
        assert!(retry_after >= Duration::from_secs(60));
        assert!(matches!(
            classify_errcode(93000, "invalid webhook url"),
            Err(DispatchError::Permanent { .. })
        ));
        assert!(matches!(
            classify_errcode(40058, "too long"),
            Err(DispatchError::Permanent { .. })
        ));
        assert!(matches!(
            classify_errcode(-1, "system busy"),
            Err(DispatchError::Retryable { .. })
        ));
    }

    #[test]
    fn key_forms() {
        assert_eq!(robot_key(" abc ").as_deref(), Some("abc"));
        assert_eq!(robot_key(r#"{"key": "abc"}"#).as_deref(), Some("abc"));
        assert_eq!(robot_key(r#"{"other": "abc"}"#), None);
        assert_eq!(robot_key("  "), None);
    }
}
