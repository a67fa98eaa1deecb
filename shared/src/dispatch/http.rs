//! The HTTP client every destination adapter uses: the loopback guard,
//! timeouts, and error classes for transport failures and status codes.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};

use super::backoff::parse_retry_after;
use super::error::DispatchError;
use crate::aws::{LOOPBACK_ONLY_VAR, is_loopback_url, loopback_only};

/// A response read in full.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl HttpReply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Returns the `Retry-After` header as a duration.
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
        parse_retry_after(value, SystemTime::now())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// Parses the body as JSON; `None` when it is not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// Returns the first 300 characters of the body, for error messages.
    pub fn excerpt(&self) -> String {
        let text = self.body.trim();
        let cut: String = text.chars().take(300).collect();
        if cut.len() < text.len() {
            format!("{cut}…")
        } else {
            cut
        }
    }
}

/// An HTTP client for one destination.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    loopback_only: bool,
}

impl HttpClient {
    /// Builds a client with a per-request timeout; the loopback guard follows
    /// `BRIDGE_LOOPBACK_ONLY`.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        Self::with_guard(timeout, loopback_only())
    }

    pub fn with_guard(timeout: Duration, loopback_only: bool) -> Result<Self, String> {
        let inner = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("recordengine-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("HTTP client could not be built: {error}"))?;
        Ok(HttpClient { inner, loopback_only })
    }

    /// Starts a request. `display` names the endpoint in errors and logs and
    /// must not contain a credential (the WeCom key travels in the URL).
    pub fn request(&self, method: Method, url: &str, display: &str) -> Result<RequestBuilder, DispatchError> {
        if self.loopback_only && !is_loopback_url(url) {
            return Err(DispatchError::permanent(format!(
                "rejected a request to {display}: {LOOPBACK_ONLY_VAR}=1 allows only 127.0.0.1; \
                 point the destination's base URL at a local sink"
            )));
        }
        Ok(self.inner.request(method, url))
    }

    /// Sends a request and reads the whole response.
    ///
    /// A connection that could not be made is retryable, because nothing was
    /// sent. A timeout or a broken response after sending is ambiguous,
    /// because the destination may have acted on the request.
    pub async fn send(&self, request: RequestBuilder, display: &str) -> Result<HttpReply, DispatchError> {
        let response = request.send().await.map_err(|error| {
            let error = error.without_url();
            if error.is_connect() {
                DispatchError::retryable(format!("could not connect to {display}: {error}"))
            } else if error.is_timeout() {
                DispatchError::ambiguous(format!("{display} timed out after the request was sent"))
            } else if error.is_builder() {
                DispatchError::permanent(format!("invalid request to {display}: {error}"))
            } else {
                DispatchError::ambiguous(format!("request to {display} failed after sending: {error}"))
            }
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.map_err(|error| {
            DispatchError::ambiguous(format!(
                "{display} returned HTTP {status} but the body could not be read: {}",
                error.without_url()
            ))
        })?;
        Ok(HttpReply { status, headers, body })
    }
}

/// Classifies a non-success reply by status alone: 408, 429 and 5xx are
/// retryable (429 as throttled), any other 4xx is permanent.
pub fn classify_status(reply: &HttpReply, display: &str) -> DispatchError {
    let reason = format!("{display} returned HTTP {}: {}", reply.status, reply.excerpt());
    match reply.status {
        429 => DispatchError::throttled(reason, reply.retry_after().unwrap_or(Duration::from_secs(60))),
        408 | 500..=599 => DispatchError::Retryable {
            reason,
            retry_after: reply.retry_after(),
        },
        _ => DispatchError::permanent(reason),
    }
}

/// Appends percent-encoded query parameters to a URL.
pub fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{}", serializer.finish())
}

/// Joins a base URL and a path without doubling the slash.
pub fn join_url(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_rejects_other_hosts() {
        let client = HttpClient::with_guard(Duration::from_secs(1), true).unwrap();

        assert!(client.request(Method::POST, "http://127.0.0.1:9/x", "sink").is_ok());
        let error = client
            .request(Method::POST, "https://quickbooks.api.intuit.com/v3", "QuickBooks")
            .unwrap_err();
        assert!(matches!(error, DispatchError::Permanent { .. }));
        assert!(error.reason().contains("BRIDGE_LOOPBACK_ONLY=1"), "{error}");
        assert!(client.request(Method::GET, "http://localhost:9/", "sink").is_err());
    }

    #[tokio::test]
    async fn refused_connection_is_retryable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = HttpClient::with_guard(Duration::from_secs(2), true).unwrap();
        let url = format!("http://127.0.0.1:{port}/secret-key-in-path");

        let request = client.request(Method::GET, &url, "the sink").unwrap();
        let error = client.send(request, "the sink").await.unwrap_err();

        assert!(matches!(error, DispatchError::Retryable { .. }), "{error:?}");
        assert!(!error.reason().contains("secret-key-in-path"), "{error}");
    }

    #[test]
    fn query_and_join() {
        assert_eq!(
            with_query(
                "http://h/v3/company/1/query",
                &[("query", "select * from Bill where DocNumber = 'A&B'")]
            ),
            "http://h/v3/company/1/query?query=select+*+from+Bill+where+DocNumber+%3D+%27A%26B%27"
        );
        assert_eq!(with_query("http://h/x?a=1", &[("b", "2")]), "http://h/x?a=1&b=2");
        assert_eq!(join_url("http://h/", "/v3"), "http://h/v3");
    }
}
