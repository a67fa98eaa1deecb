//! Client of a self-hosted RecordEngine instance's document API.
//!
//! - `POST {base}/api/documents/upload` (`multipart/form-data`): `file`,
//!   `contact_id`, `folder_id`, optional `profile_id` and `external_refs` (a
//!   JSON object as text). Any 2xx is success; the response carries the new
//!   document's `id` (also read as `document_id`).
//! - `GET {base}/api/documents/{id}`: the status of one document. The path is
//!   configurable because RecordEngine does not document it.
//! - `GET {base}/api/documents?<filter>=<correlation key>`: a lookup used to
//!   resolve an upload whose outcome is unknown. Filter names are not
//!   documented either, so the strategy is configurable and every response is
//!   checked on our side before it counts.
//!
//! Uploads are not idempotent: a retried upload after a timeout can create a
//! second document. The client therefore reports a timeout or a broken
//! connection after the whole body was sent as [`RecordEngineError::Ambiguous`],
//! never as retryable.
//!
//! The API token is read through [`SecretSource`] and appears in no log line
//! and no error. When the loopback guard is on ([`crate::aws::loopback_only`]),
//! every URL whose host is not 127.0.0.1 or `[::1]` is rejected before a
//! connection is made.

pub mod multipart;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Mutex;

pub use multipart::{BoxError, FileBody};
pub use settings::{CaBundleSource, RecordEngineSettings};

use crate::auth::token_from_secret;
use crate::aws::is_loopback_url;
use crate::json::Node;
use crate::ports::{InfraError, SecretSource};
use crate::records::EXTERNAL_REFS_KEY;

/// File extensions RecordEngine accepts, lower case.
pub const SUPPORTED_EXTENSIONS: &[&str] = &[
    "pdf", "jpg", "jpeg", "png", "docx", "xlsx", "csv", "txt", "html", "mp3", "wav", "m4a",
];

/// Maximum length of the response-body excerpt kept in an error, in characters.
pub const ERROR_BODY_EXCERPT_CHARS: usize = 512;

/// Maximum response body read, in bytes; longer responses are truncated.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Maximum `Retry-After` honoured. SQS cannot hide a message for longer than 12 hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(12 * 3600);

/// Whether RecordEngine accepts a file with this name, judged by its extension.
pub fn is_supported_filename(filename: &str) -> bool {
    extension(filename).is_some_and(|extension| SUPPORTED_EXTENSIONS.contains(&extension.as_str()))
}

/// The lower-case extension of a file name, without the dot.
pub fn extension(filename: &str) -> Option<String> {
    let (stem, extension) = filename.rsplit_once('.')?;
    (!stem.is_empty() && !extension.is_empty()).then(|| extension.to_ascii_lowercase())
}

/// The MIME type sent for a file, from its extension.
pub fn content_type_for(filename: &str) -> String {
    mime_guess::from_path(filename).first_or_octet_stream().to_string()
}

/// Strategy for looking up an upload whose outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupStrategy {
    /// No lookup: an ambiguous upload is left for an operator.
    None,
    /// `GET {list_path}?{parameter}=<correlation key>`, for instances whose
    /// document list filters on the text of `external_refs`.
    ListFilter { parameter: String },
}

impl std::str::FromStr for LookupStrategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "none" {
            return Ok(LookupStrategy::None);
        }
        match text.strip_prefix("list:") {
            Some(parameter) if !parameter.trim().is_empty() && !parameter.contains(['&', '=', '?', '#']) => {
                Ok(LookupStrategy::ListFilter {
                    parameter: parameter.trim().to_owned(),
                })
            }
            _ => Err(format!(
                "invalid lookup strategy {text:?}: use `none` or `list:<query parameter>`, for example `list:external_refs_contains`"
            )),
        }
    }
}

/// Settings of the RecordEngine client.
#[derive(Debug, Clone)]
pub struct RecordEngineConfig {
    /// The instance's base URL, for example `https://recordengine.example.com`.
    pub base_url: String,
    /// The secret (ARN or name) holding the API token, plain or as `{"token": "…"}`.
    pub token_secret_id: String,
    pub connect_timeout: Duration,
    /// Whole-request limit of status and list requests; for uploads, how long
    /// to wait for the response once the whole body has been sent.
    pub request_timeout: Duration,
    /// Whole-request limit of an upload, body included.
    pub upload_timeout: Duration,
    pub upload_path: String,
    /// Path of one document, with `{id}` standing for the document id.
    pub status_path: String,
    pub list_path: String,
    pub lookup: LookupStrategy,
    /// Extra trusted root certificates (PEM), for instances behind a private CA.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// How long a cached token is used before it is read again.
    pub token_max_age: Duration,
    /// After a 401, how long calls fail at once before the secret is read
    /// again to see whether an operator stored a new token.
    pub rejected_token_recheck: Duration,
}

impl RecordEngineConfig {
    /// Settings with the documented paths and default timeouts.
    pub fn new(base_url: impl Into<String>, token_secret_id: impl Into<String>) -> Self {
        RecordEngineConfig {
            base_url: base_url.into(),
            token_secret_id: token_secret_id.into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(600),
            upload_path: "/api/documents/upload".into(),
            status_path: "/api/documents/{id}".into(),
            list_path: "/api/documents".into(),
            lookup: LookupStrategy::ListFilter {
                parameter: "external_refs_contains".into(),
            },
            ca_bundle_pem: None,
            token_max_age: Duration::from_secs(300),
            rejected_token_recheck: Duration::from_secs(30),
        }
    }
}

/// One upload.
#[derive(Debug)]
pub struct UploadRequest {
    /// The original file name, sent raw as UTF-8.
    pub filename: String,
    pub content_type: String,
    pub contact_id: i64,
    pub folder_id: i64,
    pub profile_id: Option<i64>,
    /// The `external_refs` JSON object, as text.
    pub external_refs: String,
    pub file: FileBody,
}

/// RecordEngine's response to an upload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct UploadedDocument {
    #[serde(alias = "document_id")]
    pub id: i64,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub contact_id: Option<i64>,
    #[serde(default)]
    pub folder_id: Option<i64>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// The result of looking a document up by correlation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// RecordEngine has a document carrying the key.
    Found { document_id: i64 },
    /// The filter was applied and matched nothing.
    NotFound,
    /// The instance cannot settle the question reliably; the reason explains why.
    Inconclusive(String),
}

/// A failed RecordEngine call. No variant ever contains the API token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordEngineError {
    /// HTTP 401: the token is missing, wrong, or was regenerated in RecordEngine.
    #[error(
        "RecordEngine rejected the API token (HTTP 401) on {operation}; the token was probably regenerated: \
         store the new token in the RecordEngine token secret"
    )]
    Unauthorized { operation: &'static str },
    /// Another 4xx: the request itself is wrong and a retry cannot succeed.
    #[error("RecordEngine rejected {operation} with HTTP {status}: {body}")]
    Rejected {
        operation: &'static str,
        status: u16,
        body: String,
    },
    /// 408, 429, 5xx, a refused or broken connection, or a timeout before the
    /// whole body was sent: a retry may succeed.
    #[error("RecordEngine {operation} failed and may be retried: {detail}")]
    Unavailable {
        operation: &'static str,
        status: Option<u16>,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// The whole upload was sent but no response arrived: RecordEngine may or
    /// may not have created the document.
    #[error("RecordEngine upload outcome is unknown: {detail}")]
    Ambiguous { detail: String },
    /// A 2xx response that could not be read.
    #[error("RecordEngine responded to {operation} with HTTP {status}, but the body is unreadable: {detail}")]
    InvalidResponse {
        operation: &'static str,
        status: u16,
        detail: String,
    },
    /// The client is misconfigured (bad URL, refused host, bad CA bundle).
    #[error("RecordEngine client configuration is invalid: {0}")]
    Config(String),
    /// The token could not be read.
    #[error("could not read the RecordEngine API token: {0}")]
    Secret(InfraError),
}

impl RecordEngineError {
    /// The failure class, one of [`crate::failures::error_class`].
    pub fn error_class(&self) -> &'static str {
        use crate::failures::error_class;
        match self {
            RecordEngineError::Unavailable { status: Some(429), .. } => error_class::THROTTLED,
            RecordEngineError::Unavailable { .. } | RecordEngineError::Secret(_) => error_class::RETRYABLE,
            RecordEngineError::Ambiguous { .. } => error_class::AMBIGUOUS,
            RecordEngineError::Unauthorized { .. }
            | RecordEngineError::Rejected { .. }
            | RecordEngineError::InvalidResponse { .. }
            | RecordEngineError::Config(_) => error_class::PERMANENT,
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RecordEngineError::Unavailable { .. } | RecordEngineError::Secret(_)
        )
    }

    /// The wait RecordEngine asked for with `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RecordEngineError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date. A date in the
/// past gives zero; values are capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Cuts a response body for an error message and blanks any occurrence of the token.
fn excerpt(body: &[u8], token: Option<&str>) -> String {
    let mut text = String::from_utf8_lossy(body).trim().to_owned();
    if let Some(token) = token.filter(|token| !token.is_empty()) {
        text = text.replace(token, "[redacted]");
    }
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    if text.chars().count() <= ERROR_BODY_EXCERPT_CHARS {
        return text;
    }
    let cut: String = text.chars().take(ERROR_BODY_EXCERPT_CHARS).collect();
    format!("{cut}…")
}

/// The calls the inbound path makes to RecordEngine; [`RecordEngineClient`]
/// is the real one and tests plug in fakes.
#[async_trait]
pub trait DocumentApi: Send + Sync {
    /// Uploads one file. `deadline` bounds the whole request, body included;
    /// the configured upload timeout applies as well.
    async fn upload(
        &self,
        request: UploadRequest,
        deadline: Option<Instant>,
    ) -> Result<UploadedDocument, RecordEngineError>;

    /// Reads one document's status as RecordEngine returns it.
    async fn document_status(&self, document_id: i64) -> Result<Node, RecordEngineError>;

    /// Looks for a document carrying `correlation_key` in its `external_refs`.
    async fn find_by_correlation_key(&self, correlation_key: &str) -> Result<Lookup, RecordEngineError>;
}

struct TokenState {
    value: String,
    fetched_at: Instant,
    /// Set when RecordEngine responded 401 to this token value.
    rejected: bool,
}

/// The RecordEngine client over HTTPS (rustls) or plain HTTP.
pub struct RecordEngineClient<S> {
    http: reqwest::Client,
    config: RecordEngineConfig,
    base_url: String,
    secrets: Arc<S>,
    token: Mutex<Option<TokenState>>,
    guard: bool,
}

impl<S: SecretSource> RecordEngineClient<S> {
    /// Builds a client; the loopback guard follows `BRIDGE_LOOPBACK_ONLY`.
    pub fn new(config: RecordEngineConfig, secrets: Arc<S>) -> Result<Self, RecordEngineError> {
        Self::build(config, secrets, crate::aws::loopback_only())
    }

    /// Builds a client that rejects every host but 127.0.0.1, whatever the environment says.
    pub fn new_guarded(config: RecordEngineConfig, secrets: Arc<S>) -> Result<Self, RecordEngineError> {
        Self::build(config, secrets, true)
    }

    fn build(config: RecordEngineConfig, secrets: Arc<S>, guard: bool) -> Result<Self, RecordEngineError> {
        let base_url = config.base_url.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url)
            .map_err(|error| RecordEngineError::Config(format!("base URL {base_url:?} is not a URL: {error}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(RecordEngineError::Config(format!(
                "base URL {base_url:?} must start with https:// (or http:// for a local instance)"
            )));
        }
        check_host(&base_url, guard)?;

        // Redirects are not followed: an upload body cannot be replayed, and a
        // redirect could lead past the loopback guard.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("recordengine-bridge/", env!("CARGO_PKG_VERSION")));
        if guard {
            // A proxy from the environment would carry loopback requests elsewhere.
            builder = builder.no_proxy();
        }
        if let Some(pem) = &config.ca_bundle_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|error| RecordEngineError::Config(format!("the CA bundle is not valid PEM: {error}")))?;
            if certificates.is_empty() {
                return Err(RecordEngineError::Config(
                    "the CA bundle holds no certificate; give a PEM file with BEGIN CERTIFICATE blocks".into(),
                ));
            }
            builder = builder.tls_certs_merge(certificates);
        }
        let http = builder
            .build()
            .map_err(|error| RecordEngineError::Config(format!("could not build the HTTP client: {error}")))?;

        Ok(RecordEngineClient {
            http,
            config,
            base_url,
            secrets,
            token: Mutex::new(None),
            guard,
        })
    }

    pub fn config(&self) -> &RecordEngineConfig {
        &self.config
    }

    fn url(&self, path: &str) -> Result<String, RecordEngineError> {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let url = format!("{}{path}", self.base_url);
        check_host(&url, self.guard)?;
        Ok(url)
    }

    /// The current token. Fails at once while RecordEngine has rejected the
    /// stored value and the secret has not changed since.
    async fn token(&self, operation: &'static str) -> Result<String, RecordEngineError> {
        let mut state = self.token.lock().await;
        let refresh = match state.as_ref() {
            None => true,
            Some(current) if current.rejected => current.fetched_at.elapsed() >= self.config.rejected_token_recheck,
            Some(current) => current.fetched_at.elapsed() >= self.config.token_max_age,
        };
        if refresh {
            let value = self
                .secrets
                .secret_string(&self.config.token_secret_id)
                .await
                .map_err(RecordEngineError::Secret)?;
            let value = token_from_secret(&value);
            let still_rejected = state
                .as_ref()
                .is_some_and(|current| current.rejected && current.value == value);
            *state = Some(TokenState {
                value,
                fetched_at: Instant::now(),
                rejected: still_rejected,
            });
        }
        let current = state.as_ref().expect("token state was just filled");
        if current.rejected {
            return Err(RecordEngineError::Unauthorized { operation });
        }
        if current.value.is_empty() {
            return Err(RecordEngineError::Config(
                "the RecordEngine token secret is empty; store the API token in it".into(),
            ));
        }
        Ok(current.value.clone())
    }

    /// Remembers that RecordEngine rejected `token`, so that further calls
    /// fail fast until the secret holds another value.
    async fn mark_rejected(&self, token: &str) {
        let mut state = self.token.lock().await;
        if let Some(current) = state.as_mut()
            && current.value == token
        {
            current.rejected = true;
            current.fetched_at = Instant::now();
        }
    }

    /// Classifies a non-2xx response.
    async fn error_for(&self, operation: &'static str, response: reqwest::Response, token: &str) -> RecordEngineError {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let body = read_limited(response, self.config.request_timeout)
            .await
            .unwrap_or_default();
        let body = excerpt(&body, Some(token));

        match status {
            401 => {
                self.mark_rejected(token).await;
                RecordEngineError::Unauthorized { operation }
            }
            408 | 429 | 500..=599 => RecordEngineError::Unavailable {
                operation,
                status: Some(status),
                retry_after,
                detail: format!("HTTP {status}: {body}"),
            },
            _ => RecordEngineError::Rejected {
                operation,
                status,
                body,
            },
        }
    }

    async fn get(&self, operation: &'static str, url: &str) -> Result<(u16, Bytes), RecordEngineError> {
        let token = self.token(operation).await?;
        let request = self
            .http
            .get(url)
            .bearer_auth(&token)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.config.request_timeout);
        let response = request.send().await.map_err(|error| RecordEngineError::Unavailable {
            operation,
            status: None,
            retry_after: None,
            detail: transport_error_text(&error),
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.error_for(operation, response, &token).await);
        }
        let body = read_limited(response, self.config.request_timeout)
            .await
            .map_err(|detail| RecordEngineError::Unavailable {
                operation,
                status: Some(status.as_u16()),
                retry_after: None,
                detail,
            })?;
        Ok((status.as_u16(), body))
    }
}

#[async_trait]
impl<S: SecretSource> DocumentApi for RecordEngineClient<S> {
    async fn upload(
        &self,
        request: UploadRequest,
        deadline: Option<Instant>,
    ) -> Result<UploadedDocument, RecordEngineError> {
        const OPERATION: &str = "upload";
        let url = self.url(&self.config.upload_path)?;
        let token = self.token(OPERATION).await?;

        let mut fields = vec![
            ("contact_id", request.contact_id.to_string()),
            ("folder_id", request.folder_id.to_string()),
        ];
        if let Some(profile_id) = request.profile_id {
            fields.push(("profile_id", profile_id.to_string()));
        }
        fields.push(("external_refs", request.external_refs.clone()));
        let body = multipart::build(
            &multipart::new_boundary(),
            &fields,
            &request.filename,
            &request.content_type,
            request.file,
        );
        let progress = Arc::clone(&body.progress);

        let started = Instant::now();
        let mut overall = started + self.config.upload_timeout;
        if let Some(deadline) = deadline {
            overall = overall.min(deadline);
        }

        let send = self
            .http
            .post(&url)
            .bearer_auth(&token)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, &body.content_type)
            .header(reqwest::header::CONTENT_LENGTH, body.length)
            .body(reqwest::Body::wrap_stream(body.stream))
            .send();
        tokio::pin!(send);

        // Two clocks: the whole upload must finish by `overall`, and once the
        // body is complete the response must come within the request timeout.
        let mut response_by: Option<tokio::time::Instant> = None;
        let response = loop {
            let limit = match response_by {
                Some(response_by) => response_by.min(overall.into()),
                None => overall.into(),
            };
            tokio::select! {
                result = &mut send => break result,
                _ = progress.completed(), if response_by.is_none() => {
                    response_by = Some(tokio::time::Instant::now() + self.config.request_timeout);
                }
                _ = tokio::time::sleep_until(limit) => {
                    let elapsed = started.elapsed().as_secs();
                    return Err(if progress.is_complete() {
                        RecordEngineError::Ambiguous {
                            detail: format!(
                                "no response within {} s after the whole file was sent ({elapsed} s in all)",
                                self.config.request_timeout.as_secs()
                            ),
                        }
                    } else {
                        RecordEngineError::Unavailable {
                            operation: OPERATION,
                            status: None,
                            retry_after: None,
                            detail: format!(
                                "timed out after {elapsed} s with {} of the file's bytes sent",
                                progress.file_bytes()
                            ),
                        }
                    });
                }
            }
        };

        let response = match response {
            Ok(response) => response,
            Err(error) if progress.is_complete() => {
                return Err(RecordEngineError::Ambiguous {
                    detail: format!(
                        "the connection failed after the whole file was sent: {}",
                        transport_error_text(&error)
                    ),
                });
            }
            Err(error) => {
                return Err(RecordEngineError::Unavailable {
                    operation: OPERATION,
                    status: None,
                    retry_after: None,
                    detail: transport_error_text(&error),
                });
            }
        };

        let status = response.status();
        if !status.is_success() {
            return Err(self.error_for(OPERATION, response, &token).await);
        }
        // The document exists from here on: a body we cannot read leaves its id unknown.
        let body = read_limited(response, self.config.request_timeout)
            .await
            .map_err(|detail| RecordEngineError::Ambiguous {
                detail: format!("HTTP {status} arrived but its body could not be read: {detail}"),
            })?;
        serde_json::from_slice::<UploadedDocument>(&body).map_err(|error| RecordEngineError::Ambiguous {
            detail: format!(
                "HTTP {status} arrived but carries no document id ({error}): {}",
                excerpt(&body, Some(&token))
            ),
        })
    }

    async fn document_status(&self, document_id: i64) -> Result<Node, RecordEngineError> {
        const OPERATION: &str = "document status";
        let path = self.config.status_path.replace("{id}", &document_id.to_string());
        let url = self.url(&path)?;
        let (status, body) = self.get(OPERATION, &url).await?;
        let text = std::str::from_utf8(&body).map_err(|error| RecordEngineError::InvalidResponse {
            operation: OPERATION,
            status,
            detail: error.to_string(),
        })?;
        Node::parse(text).map_err(|error| RecordEngineError::InvalidResponse {
            operation: OPERATION,
            status,
            detail: error.to_string(),
        })
    }

    async fn find_by_correlation_key(&self, correlation_key: &str) -> Result<Lookup, RecordEngineError> {
        const OPERATION: &str = "document lookup";
        let LookupStrategy::ListFilter { parameter } = &self.config.lookup else {
            return Ok(Lookup::Inconclusive(
                "no lookup strategy is configured (RECORDENGINE_LOOKUP=none)".into(),
            ));
        };
        let mut url = reqwest::Url::parse(&self.url(&self.config.list_path)?)
            .map_err(|error| RecordEngineError::Config(format!("list URL is invalid: {error}")))?;
        url.query_pairs_mut().append_pair(parameter, correlation_key);

        let (status, body) = match self.get(OPERATION, url.as_str()).await {
            Ok(response) => response,
            // The instance does not know the filter, or not the list endpoint.
            Err(RecordEngineError::Rejected { status, body, .. }) => {
                return Ok(Lookup::Inconclusive(format!(
                    "the document list returned HTTP {status} for the `{parameter}` filter: {body}"
                )));
            }
            Err(other) => return Err(other),
        };
        let text = String::from_utf8_lossy(&body);
        let node = Node::parse(&text).map_err(|error| RecordEngineError::InvalidResponse {
            operation: OPERATION,
            status,
            detail: error.to_string(),
        })?;
        Ok(match_lookup(&node, correlation_key, parameter))
    }
}

/// Decides a lookup from a document list. The list counts only if every
/// document in it carries our correlation key: a list holding other documents
/// means the instance ignored the filter, and then an absent match proves nothing.
pub fn match_lookup(list: &Node, correlation_key: &str, parameter: &str) -> Lookup {
    let documents = match list {
        Node::Array(items) => items,
        Node::Object(object) => {
            let found = ["items", "documents", "results", "data"]
                .iter()
                .find_map(|name| match object.get(*name) {
                    Some(Node::Array(items)) => Some(items),
                    _ => None,
                });
            match found {
                Some(items) => items,
                None => {
                    return Lookup::Inconclusive(
                        "the document list has no items, documents, results or data array".into(),
                    );
                }
            }
        }
        other => {
            return Lookup::Inconclusive(format!(
                "the document list is {}, not an array or object",
                other.type_name()
            ));
        }
    };
    if documents.is_empty() {
        return Lookup::NotFound;
    }

    let mut matches = Vec::new();
    for document in documents {
        let Some(refs) = external_refs_of(document) else {
            return Lookup::Inconclusive(
                "the document list does not include external_refs, so a match cannot be confirmed".into(),
            );
        };
        let carries_key = refs
            .get(EXTERNAL_REFS_KEY)
            .and_then(|ours| ours.get("record_id"))
            .and_then(Node::as_str)
            .is_some_and(|key| key == correlation_key);
        if !carries_key {
            return Lookup::Inconclusive(format!(
                "the document list returned documents without our correlation key; the instance seems to ignore the `{parameter}` filter"
            ));
        }
        match document.get("id").or_else(|| document.get("document_id")) {
            Some(Node::Number(id)) => match id.parse::<i64>() {
                Ok(id) => matches.push(id),
                Err(_) => return Lookup::Inconclusive(format!("document id {id} is not an integer")),
            },
            _ => return Lookup::Inconclusive("a listed document has no integer id".into()),
        }
    }
    // Several matches mean a duplicate upload happened earlier; the oldest is the original.
    let document_id = matches.into_iter().min().expect("documents is not empty");
    Lookup::Found { document_id }
}

/// `external_refs` of a listed document: an object, or an object serialised to a string.
fn external_refs_of(document: &Node) -> Option<Node> {
    match document.get("external_refs")? {
        object @ Node::Object(_) => Some(object.clone()),
        Node::String(text) => Node::parse(text).ok().filter(|node| node.as_object().is_some()),
        Node::Null => Some(Node::Object(BTreeMap::new())),
        _ => None,
    }
}

/// Rejects a URL that the loopback guard does not allow.
fn check_host(url: &str, guard: bool) -> Result<(), RecordEngineError> {
    if guard && !is_loopback_url(url) {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or(url);
        return Err(RecordEngineError::Config(format!(
            "refused to send a RecordEngine request to {host}: {}=1 allows only 127.0.0.1; point RECORDENGINE_BASE_URL at a local simulator",
            crate::aws::LOOPBACK_ONLY_VAR
        )));
    }
    Ok(())
}

/// Reads a response body up to [`MAX_RESPONSE_BYTES`] within `timeout`.
async fn read_limited(response: reqwest::Response, timeout: Duration) -> Result<Bytes, String> {
    let read = async {
        let mut stream = response.bytes_stream();
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| transport_error_text(&error))?;
            let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_RESPONSE_BYTES {
                break;
            }
        }
        Ok(Bytes::from(body))
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| format!("reading the response timed out after {} s", timeout.as_secs()))?
}

/// Describes a transport error with its causes. reqwest's errors name the URL
/// but never the headers, so no token leaks through here.
fn transport_error_text(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
