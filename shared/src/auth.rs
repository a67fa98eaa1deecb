//! Webhook authentication: a bearer token, or a secret path segment for
//! RecordEngine instances whose Webhook Auth is left blank.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use crate::ports::{InfraError, SecretSource};

/// How the webhook authenticates RecordEngine. Exactly one mode is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `Authorization: Bearer <token>` on every request.
    Bearer,
    /// `POST /webhooks/recordengine/<secret>`: for instances that send no token.
    PathSecret,
}

impl std::str::FromStr for AuthMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "bearer" => Ok(AuthMode::Bearer),
            "path-secret" => Ok(AuthMode::PathSecret),
            other => Err(format!(
                "invalid WEBHOOK_AUTH_MODE {other:?}: use `bearer` or `path-secret`"
            )),
        }
    }
}

/// Extracts the token from an `Authorization` header value. The scheme is
/// case-insensitive and surrounding whitespace is ignored; any scheme other
/// than Bearer (Basic, for example) gives `None`.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let trimmed = header_value.trim();
    let (scheme, rest) = trimmed.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// Compares two secrets in time that depends on neither their content nor
/// their lengths: both sides are hashed first, then the digests are compared
/// in constant time.
pub fn secrets_match(presented: &str, expected: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    presented.ct_eq(&expected).into()
}

/// Reads a token from a secret value: the plain string, or the `token`
/// member of a JSON object (`{"token": "…"}`).
pub fn token_from_secret(secret_value: &str) -> String {
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(secret_value)
        && let Some(serde_json::Value::String(token)) = object.get("token")
    {
        return token.trim().to_owned();
    }
    secret_value.trim().to_owned()
}

struct CachedToken {
    value: String,
    fetched_at: Instant,
}

/// Checks presented tokens against a secret in Secrets Manager.
///
/// The secret is cached for `max_age`. On a mismatch it is read again, at most
/// once per `min_refetch_interval`, so that a rotated token works without a
/// redeploy while a flood of wrong tokens cannot turn into a flood of
/// Secrets Manager calls.
pub struct TokenVerifier<S> {
    source: Arc<S>,
    secret_id: String,
    max_age: Duration,
    min_refetch_interval: Duration,
    cache: Mutex<Option<CachedToken>>,
}

impl<S: SecretSource> TokenVerifier<S> {
    pub fn new(source: Arc<S>, secret_id: impl Into<String>) -> Self {
        TokenVerifier {
            source,
            secret_id: secret_id.into(),
            max_age: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(5),
            cache: Mutex::new(None),
        }
    }

    /// Overrides the cache lifetime and the minimum time between re-reads after a mismatch.
    pub fn with_timing(mut self, max_age: Duration, min_refetch_interval: Duration) -> Self {
        self.max_age = max_age;
        self.min_refetch_interval = min_refetch_interval;
        self
    }

    /// Returns whether `presented` matches the current secret.
    pub async fn verify(&self, presented: &str) -> Result<bool, InfraError> {
        let mut cache = self.cache.lock().await;

        let stale = cache
            .as_ref()
            .is_none_or(|cached| cached.fetched_at.elapsed() >= self.max_age);
        if stale {
            *cache = Some(self.fetch().await?);
        }
        if let Some(cached) = cache.as_ref()
            && secrets_match(presented, &cached.value)
        {
            return Ok(true);
        }

        // A mismatch may mean the token was rotated since it was cached.
        let may_refetch = cache
            .as_ref()
            .is_none_or(|cached| cached.fetched_at.elapsed() >= self.min_refetch_interval);
        if !may_refetch {
            return Ok(false);
        }
        let fresh = self.fetch().await?;
        let matches = secrets_match(presented, &fresh.value);
        *cache = Some(fresh);
        Ok(matches)
    }

    async fn fetch(&self) -> Result<CachedToken, InfraError> {
        let secret_value = self.source.secret_string(&self.secret_id).await?;
        let value = token_from_secret(&secret_value);
        if value.is_empty() {
            return Err(InfraError::new(
                "Secrets Manager",
                "GetSecretValue",
                format!("secret {} is empty; store the webhook token in it", self.secret_id),
            ));
        }
        Ok(CachedToken {
            value,
            fetched_at: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::FakeSecrets;

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc  "), Some("abc"));
        assert_eq!(bearer_token("  Bearer\tabc"), Some("abc"));
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
        assert_eq!(bearer_token(""), None);
    }

    #[test]
    fn secrets_compare() {
        assert!(secrets_match("re_abc", "re_abc"));
        assert!(!secrets_match("re_abc", "re_abd"));
        assert!(!secrets_match("re_ab", "re_abc"));
        assert!(!secrets_match("", "re_abc"));
    }

    #[test]
    fn secret_value_forms() {
        assert_eq!(token_from_secret("re_abc\n"), "re_abc");
        assert_eq!(token_from_secret(r#"{"token": "re_abc"}"#), "re_abc");
        assert_eq!(token_from_secret(r#"{"other": 1}"#), r#"{"other": 1}"#);
    }

    #[tokio::test]
    async fn rotation_is_picked_up_on_mismatch() {
        let secrets = Arc::new(FakeSecrets::default());
        secrets.set("webhook", "old-token");
        let verifier =
            TokenVerifier::new(secrets.clone(), "webhook").with_timing(Duration::from_secs(300), Duration::ZERO);

        assert!(verifier.verify("old-token").await.unwrap());
        secrets.set("webhook", "new-token");

        assert!(verifier.verify("new-token").await.unwrap());
        assert!(!verifier.verify("old-token").await.unwrap());
    }

    #[tokio::test]
    async fn wrong_tokens_do_not_refetch_every_time() {
        let secrets = Arc::new(FakeSecrets::default());
        secrets.set("webhook", "token");
        let verifier = TokenVerifier::new(secrets.clone(), "webhook");

        for _ in 0..20 {
            assert!(!verifier.verify("wrong").await.unwrap());
        }

        assert_eq!(secrets.reads(), 1);
    }

    #[tokio::test]
    async fn empty_secret_is_an_error() {
        let secrets = Arc::new(FakeSecrets::default());
        secrets.set("webhook", "  ");
        let verifier = TokenVerifier::new(secrets, "webhook");

        let error = verifier.verify("x").await.unwrap_err();

        assert!(error.to_string().contains("secret webhook is empty"), "{error}");
    }
}
