//! Small helpers shared by the simulator and the sinks.

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};

use crate::json::Json;

/// Builds a JSON response with the given status.
pub fn json_response(status: StatusCode, body: &Json) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_compact_string(),
    )
        .into_response()
}

/// Returns the credentials of an `Authorization: Bearer <token>` header, or
/// `None` when the header is missing, uses another scheme or has an empty token.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Formats the current time as RFC 3339 with a `Z` suffix and whole seconds, as RecordEngine writes it.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Formats the current time as RFC 3339 with milliseconds, for the sinks' records.
pub fn now_rfc3339_millis() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a query string into `(name, value)` pairs, percent-decoding both and
/// turning `+` into a space as HTML forms do.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_form_component(name), decode_form_component(value))
        })
        .collect()
}

/// Returns the first value of query parameter `name`.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query_pairs(query)
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

fn decode_form_component(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_cases() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);

        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer_token(&headers), Some("abc"));

        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer  abc "));
        assert_eq!(bearer_token(&headers), Some("abc"));

        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);

        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn query_pairs_decode() {
        let pairs = query_pairs(Some("query=select+*+from+Bill+where+DocNumber+%3D+%27A%26B%27&x"));

        assert_eq!(
            pairs,
            vec![
                (
                    "query".to_owned(),
                    "select * from Bill where DocNumber = 'A&B'".to_owned()
                ),
                ("x".to_owned(), String::new()),
            ]
        );
        assert_eq!(query_pairs(None), Vec::new());
    }
}
