//! OAuth 2.0 refresh-token grant with rotation, for the Xero and QuickBooks sinks.
//!
//! Each refresh token works once: a successful refresh returns a new refresh
//! token and invalidates the one presented, and presenting it again gives
//! `400 {"error":"invalid_grant"}`. That is how Xero's token endpoint behaves,
//! and Intuit's may also return a new refresh token on any refresh, so a
//! client must store the new token every time.
//!
//! Until `POST /_oauth/seed` stores a first refresh token, the store runs in
//! open mode: any unused refresh token is accepted and any bearer token passes
//! the API routes. After seeding, only refresh tokens issued from the seed
//! chain are valid, and only unexpired access tokens issued here pass.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;

use crate::json::Json;
use crate::util::{json_response, query_pairs};

/// Provider whose token response to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFlavor {
    /// `POST /connect/token`: access tokens last 30 minutes.
    Xero,
    /// `POST /oauth2/v1/tokens/bearer`: access tokens last one hour, refresh tokens 100 days.
    Intuit,
}

impl TokenFlavor {
    fn access_lifetime(self) -> Duration {
        match self {
            TokenFlavor::Xero => Duration::from_secs(1800),
            TokenFlavor::Intuit => Duration::from_secs(3600),
        }
    }
}

/// The result of checking a request's bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessCheck {
    Accepted,
    Missing,
    /// Not issued by this store (only possible after seeding).
    Unknown,
    Expired,
}

#[derive(Debug, Default)]
struct Tokens {
    seeded: bool,
    valid_refresh: HashSet<String>,
    used_refresh: HashSet<String>,
    access_expiry: HashMap<String, Instant>,
    refreshes: u64,
    rejected_refreshes: u64,
}

/// Refresh and access tokens of one sink.
#[derive(Debug)]
pub struct OAuthStore {
    flavor: TokenFlavor,
    tokens: Mutex<Tokens>,
}

impl OAuthStore {
    pub fn new(flavor: TokenFlavor) -> OAuthStore {
        OAuthStore {
            flavor,
            tokens: Mutex::new(Tokens::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tokens> {
        // Every update leaves the sets consistent, so a poisoned lock is still usable.
        self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets every token, stores `refresh_token` as the only valid one and
    /// starts rejecting access tokens this store did not issue.
    pub fn seed(&self, refresh_token: &str) {
        let mut tokens = self.lock();
        let (refreshes, rejected) = (tokens.refreshes, tokens.rejected_refreshes);
        *tokens = Tokens {
            seeded: true,
            refreshes,
            rejected_refreshes: rejected,
            ..Tokens::default()
        };
        tokens.valid_refresh.insert(refresh_token.to_owned());
    }

    /// Makes every issued access token expire now.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for expiry in self.lock().access_expiry.values_mut() {
            *expiry = now;
        }
    }

    /// Checks a bearer token against the issued access tokens.
    pub fn check_access(&self, bearer: Option<&str>) -> AccessCheck {
        let Some(token) = bearer else {
            return AccessCheck::Missing;
        };
        let tokens = self.lock();
        if !tokens.seeded {
            return AccessCheck::Accepted;
        }
        match tokens.access_expiry.get(token) {
            None => AccessCheck::Unknown,
            Some(expiry) if *expiry <= Instant::now() => AccessCheck::Expired,
            Some(_) => AccessCheck::Accepted,
        }
    }

    /// Exchanges a refresh token for `(access_token, refresh_token)`, or `None` when it is not valid.
    fn refresh(&self, presented: &str) -> Option<(String, String)> {
        let mut tokens = self.lock();
        let valid = if tokens.seeded {
            tokens.valid_refresh.contains(presented)
        } else {
            !tokens.used_refresh.contains(presented)
        };
        if !valid {
            tokens.rejected_refreshes += 1;
            return None;
        }

        tokens.valid_refresh.remove(presented);
        tokens.used_refresh.insert(presented.to_owned());
        let access = format!("devstack-access-{}", uuid::Uuid::new_v4().simple());
        let refresh = format!("devstack-refresh-{}", uuid::Uuid::new_v4().simple());
        tokens.valid_refresh.insert(refresh.clone());
        let expiry = Instant::now() + self.flavor.access_lifetime();
        tokens.access_expiry.insert(access.clone(), expiry);
        tokens.refreshes += 1;
        Some((access, refresh))
    }

    /// Counters for `GET /_stats`.
    pub fn stats_json(&self) -> Json {
        let tokens = self.lock();
        Json::object([
            ("seeded", Json::Bool(tokens.seeded)),
            ("refreshes", Json::from(tokens.refreshes)),
            ("rejected_refreshes", Json::from(tokens.rejected_refreshes)),
        ])
    }

    /// Builds the token endpoint route at `path`.
    pub fn token_route(self: Arc<OAuthStore>, path: &str) -> Router {
        Router::new().route(path, post(token_endpoint)).with_state(self)
    }

    /// `POST /_oauth/seed` and `POST /_oauth/expire`.
    pub fn admin_routes(self: Arc<OAuthStore>) -> Router {
        Router::new()
            .route("/_oauth/seed", post(seed))
            .route("/_oauth/expire", post(expire))
            .with_state(self)
    }

    fn token_response(&self, access: String, refresh: String) -> Json {
        let expires_in = Json::from(self.flavor.access_lifetime().as_secs());
        match self.flavor {
            TokenFlavor::Xero => Json::object([
                ("access_token", Json::from(access)),
                ("expires_in", expires_in),
                ("token_type", Json::from("Bearer")),
                ("refresh_token", Json::from(refresh)),
                ("scope", Json::from("accounting.transactions offline_access")),
            ]),
            TokenFlavor::Intuit => Json::object([
                ("token_type", Json::from("bearer")),
                ("access_token", Json::from(access)),
                ("refresh_token", Json::from(refresh)),
                ("expires_in", expires_in),
                ("x_refresh_token_expires_in", Json::from(8_726_400_u64)),
            ]),
        }
    }
}

fn oauth_error(code: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &Json::object([
            ("error", Json::from(code)),
            ("error_description", Json::from(description)),
        ]),
    )
}

async fn token_endpoint(State(store): State<Arc<OAuthStore>>, body: Bytes) -> Response {
    let form = String::from_utf8_lossy(&body);
    let fields = query_pairs(Some(&form));
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };

    match field("grant_type") {
        Some("refresh_token") => {}
        Some(_) => return oauth_error("unsupported_grant_type", "only grant_type=refresh_token is supported"),
        None => return oauth_error("invalid_request", "grant_type is missing"),
    }
    let Some(presented) = field("refresh_token").filter(|token| !token.is_empty()) else {
        return oauth_error("invalid_request", "refresh_token is missing");
    };

    match store.refresh(presented) {
        Some((access, refresh)) => {
            tracing::info!(flavor = ?store.flavor, "refresh token rotated");
            json_response(StatusCode::OK, &store.token_response(access, refresh))
        }
        None => {
            tracing::info!(flavor = ?store.flavor, "refresh token rejected: unknown or already used");
            oauth_error("invalid_grant", "the refresh token is unknown or has already been used")
        }
    }
}

async fn seed(State(store): State<Arc<OAuthStore>>, body: Bytes) -> Response {
    let token = Json::parse_bytes(&body)
        .ok()
        .and_then(|value| value.get("refresh_token").and_then(Json::as_str).map(str::to_owned))
        .filter(|token| !token.is_empty());
    match token {
        Some(token) => {
            store.seed(&token);
            json_response(StatusCode::OK, &store.stats_json())
        }
        None => json_response(
            StatusCode::BAD_REQUEST,
            &Json::object([(
                "error",
                Json::from(r#"expected a JSON body {"refresh_token": "<non-empty string>"}"#),
            )]),
        ),
    }
}

async fn expire(State(store): State<Arc<OAuthStore>>) -> StatusCode {
    store.expire_access_tokens();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_mode_accepts_each_token_once() {
        let store = OAuthStore::new(TokenFlavor::Xero);

        assert_eq!(store.check_access(Some("anything")), AccessCheck::Accepted);
        assert_eq!(store.check_access(None), AccessCheck::Missing);
        assert!(store.refresh("first").is_some());
        assert!(store.refresh("first").is_none());
    }

    #[test]
    fn seeded_chain_rotates() {
        let store = OAuthStore::new(TokenFlavor::Intuit);
        store.seed("seed");

        assert_eq!(store.check_access(Some("anything")), AccessCheck::Unknown);
        assert!(store.refresh("other").is_none());

        let (access, next) = store.refresh("seed").unwrap();
        assert_eq!(store.check_access(Some(&access)), AccessCheck::Accepted);
        assert!(store.refresh("seed").is_none());
        assert!(store.refresh(&next).is_some());

        store.expire_access_tokens();
        assert_eq!(store.check_access(Some(&access)), AccessCheck::Expired);
    }
}
