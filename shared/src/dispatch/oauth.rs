//! OAuth 2.0 access tokens for QuickBooks and Xero, kept in Secrets Manager.
//!
//! The secret is a JSON object:
//! `{"client_id", "client_secret", "refresh_token", "access_token", "access_token_expires_at", …}`
//! plus the account id (`realm_id` for QuickBooks, `tenant_id` for Xero).
//! Access tokens are refreshed when they expire within a margin. Xero's
//! refresh token rotates on every use and Intuit's may, so every refresh
//! stores the whole new credential set with `PutSecretValue`. Two concurrent
//! refreshes would leave one of them with a used refresh token
//! (`invalid_grant`), so refreshes are serialised by a lock in the document
//! table: the invocation that does not get the lock waits, then reads the
//! secret again and uses the token the other one stored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::error::DispatchError;
use super::http::HttpClient;
use super::lock::{try_lock, unlock};
use super::ports::SecretStore;
use super::store::VersionedStore;

/// The credentials stored in one secret.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires_at: Option<i64>,
    /// Other members (`realm_id`, `tenant_id`), kept as stored.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for OAuthCredentials {
    /// Shows no token or client secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthCredentials")
            .field("client_id", &self.client_id)
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl OAuthCredentials {
    /// Returns a string member such as `realm_id`.
    pub fn field(&self, name: &str) -> Option<String> {
        match self.extra.get(name)? {
            serde_json::Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
            serde_json::Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    }

    fn usable_token(&self, margin: Duration, rejected: Option<&str>) -> Option<String> {
        let token = self.access_token.as_deref()?;
        let expires_at = self.access_token_expires_at?;
        let fresh = expires_at > Utc::now().timestamp() + margin.as_secs() as i64;
        (fresh && Some(token) != rejected).then(|| token.to_owned())
    }
}

/// Settings of one OAuth client.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// `quickbooks` or `xero`, for messages and the lock name.
    pub provider: &'static str,
    pub token_url: String,
    pub secret_id: String,
    /// Tokens expiring within this margin are refreshed first.
    pub refresh_margin: Duration,
    /// How long an invocation waits for another one's refresh.
    pub lock_wait: Duration,
    /// How long the refresh lock holds if its owner dies.
    pub lock_lease: Duration,
}

impl OAuthConfig {
    pub fn new(provider: &'static str, token_url: &str, secret_id: &str) -> Self {
        OAuthConfig {
            provider,
            token_url: token_url.to_owned(),
            secret_id: secret_id.to_owned(),
            refresh_margin: Duration::from_secs(300),
            lock_wait: Duration::from_secs(20),
            lock_lease: Duration::from_secs(30),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// Access tokens of one account, shared by all deliveries of an execution environment.
pub struct OAuthClient {
    config: OAuthConfig,
    http: HttpClient,
    secrets: Arc<dyn SecretStore>,
    locks: Arc<dyn VersionedStore>,
    cache: tokio::sync::Mutex<Option<OAuthCredentials>>,
    refreshes: AtomicUsize,
}

impl OAuthClient {
    pub fn new(
        config: OAuthConfig,
        http: HttpClient,
        secrets: Arc<dyn SecretStore>,
        locks: Arc<dyn VersionedStore>,
    ) -> Self {
        OAuthClient {
            config,
            http,
            secrets,
            locks,
            cache: tokio::sync::Mutex::new(None),
            refreshes: AtomicUsize::new(0),
        }
    }

    /// Refreshes this client made itself.
    pub fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }

    /// Returns the stored credentials (cached after the first read), for account ids.
    pub async fn credentials(&self) -> Result<OAuthCredentials, DispatchError> {
        let mut cache = self.cache.lock().await;
        if let Some(credentials) = cache.as_ref() {
            return Ok(credentials.clone());
        }
        let credentials = self.read_secret().await?;
        *cache = Some(credentials.clone());
        Ok(credentials)
    }

    /// Returns an access token valid for at least the refresh margin.
    pub async fn access_token(&self) -> Result<String, DispatchError> {
        self.fresh_token(None).await
    }

    /// Returns a token other than `rejected`, after the destination returned 401 for it.
    pub async fn token_after_rejection(&self, rejected: &str) -> Result<String, DispatchError> {
        self.fresh_token(Some(rejected)).await
    }

    async fn fresh_token(&self, rejected: Option<&str>) -> Result<String, DispatchError> {
        let margin = self.config.refresh_margin;
        // One refresh at a time within this execution environment.
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.as_ref().and_then(|cached| cached.usable_token(margin, rejected)) {
            return Ok(token);
        }

        let lock_name = format!("oauth#{}#{}", self.config.provider, self.config.secret_id);
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let give_up_at = Instant::now() + self.config.lock_wait;
        // Bounded by `lock_wait`: each round sleeps at least 200 ms.
        loop {
            let stored = self.read_secret().await?;
            if let Some(token) = stored.usable_token(margin, rejected) {
                *cache = Some(stored);
                return Ok(token);
            }

            if try_lock(self.locks.as_ref(), &lock_name, &owner, self.config.lock_lease).await? {
                let result = self.refresh_holding_lock(margin, rejected).await;
                if let Err(error) = unlock(self.locks.as_ref(), &lock_name, &owner).await {
                    tracing::warn!(provider = self.config.provider, error = %error, "could not release the refresh lock; it expires on its own");
                }
                let credentials = result?;
                let token = credentials.access_token.clone().unwrap_or_default();
                *cache = Some(credentials);
                return Ok(token);
            }

            if Instant::now() >= give_up_at {
                return Err(DispatchError::retryable(format!(
                    "timed out after {} s waiting for another invocation to refresh the {} access token",
                    self.config.lock_wait.as_secs(),
                    self.config.provider
                )));
            }
            let pause = Duration::from_millis(rand::random_range(200..450));
            tokio::time::sleep(pause).await;
        }
    }

    async fn refresh_holding_lock(
        &self,
        margin: Duration,
        rejected: Option<&str>,
    ) -> Result<OAuthCredentials, DispatchError> {
        // Another holder may have refreshed between our read and our lock.
        let stored = self.read_secret().await?;
        if stored.usable_token(margin, rejected).is_some() {
            return Ok(stored);
        }

        let refreshed = self.call_token_endpoint(&stored).await?;
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let text = serde_json::to_string(&refreshed)
            .map_err(|error| DispatchError::permanent(format!("credentials do not serialise: {error}")))?;

        let mut last_error = None;
        for _ in 0..3 {
            match self.secrets.write(&self.config.secret_id, &text).await {
                Ok(()) => {
                    tracing::info!(provider = self.config.provider, secret = %self.config.secret_id, "access token refreshed and stored");
                    return Ok(refreshed);
                }
                Err(error) => last_error = Some(error),
            }
        }
        // NOTE: the stored refresh token may already be invalid, so other
        // invocations fail with invalid_grant until a later refresh is stored.
        // This execution environment keeps working from its cache meanwhile.
        tracing::error!(
            provider = self.config.provider,
            secret = %self.config.secret_id,
            error = ?last_error.map(|error| error.to_string()),
            "refreshed the access token but could not store the new refresh token"
        );
        Ok(refreshed)
    }

    async fn call_token_endpoint(&self, stored: &OAuthCredentials) -> Result<OAuthCredentials, DispatchError> {
        let display = format!("the {} token endpoint", self.config.provider);
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", stored.client_id, stored.client_secret));
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", &stored.refresh_token)
            .finish();
        let request = self
            .http
            .request(Method::POST, &self.config.token_url, &display)?
            .header("Authorization", format!("Basic {basic}"))
            .header("Accept", "application/json")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form);

        // A refresh whose response was lost may have rotated the refresh token.
        // The next attempt then gets invalid_grant and reports it.
        let reply = self.http.send(request, &display).await.map_err(|error| match error {
            DispatchError::Ambiguous { reason } => DispatchError::retryable(reason),
            other => other,
        })?;

        if !reply.is_success() {
            let code = reply
                .json()
                .and_then(|body| body.get("error").and_then(|code| code.as_str()).map(str::to_owned))
                .unwrap_or_default();
            let reason = format!("{display} returned HTTP {} {code}", reply.status);
            return Err(match (reply.status, code.as_str()) {
                (_, "invalid_grant") => DispatchError::permanent(format!(
                    "{reason}: the refresh token was rejected; authorise the app again and store the new \
                     refresh token in secret {}",
                    self.config.secret_id
                )),
                (_, "invalid_client" | "unauthorized_client") => DispatchError::permanent(format!(
                    "{reason}: check client_id and client_secret in secret {}",
                    self.config.secret_id
                )),
                (429, _) => DispatchError::throttled(reason, reply.retry_after().unwrap_or(Duration::from_secs(60))),
                (408 | 500..=599, _) => DispatchError::Retryable {
                    reason,
                    retry_after: reply.retry_after(),
                },
                _ => DispatchError::permanent(reason),
            });
        }

        let token: TokenResponse = serde_json::from_str(&reply.body).map_err(|error| {
            DispatchError::retryable(format!("{display} returned an unreadable token response: {error}"))
        })?;
        let mut refreshed = stored.clone();
        refreshed.access_token = Some(token.access_token);
        refreshed.access_token_expires_at = Some(Utc::now().timestamp() + token.expires_in.unwrap_or(1800));
        if let Some(rotated) = token.refresh_token.filter(|token| !token.is_empty()) {
            refreshed.refresh_token = rotated;
        }
        Ok(refreshed)
    }

    async fn read_secret(&self) -> Result<OAuthCredentials, DispatchError> {
        let text = self.secrets.read(&self.config.secret_id).await?;
        serde_json::from_str(&text).map_err(|error| {
            // serde_json quotes offending values in some messages, and a value here may be a token.
            let detail = if error.to_string().starts_with("missing field") {
                error.to_string()
            } else {
                format!(
                    "{:?} error at line {} column {}",
                    error.classify(),
                    error.line(),
                    error.column()
                )
            };
            DispatchError::permanent(format!(
                "secret {} is not the {} credential JSON (client_id, client_secret, refresh_token): {detail}",
                self.config.secret_id, self.config.provider
            ))
        })
    }
}
