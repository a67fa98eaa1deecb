//! The loopback check: before anything starts, every URL the local stack
//! would hand to a function must point at 127.0.0.1.
//!
//! Functions also carry the runtime guard (`BRIDGE_LOOPBACK_ONLY=1`), which
//! rejects requests to other hosts. This check runs earlier, so that a
//! misconfigured run fails before it deploys anything, with the value named.

use std::fmt;

use bridge_shared::aws::is_loopback_url;

/// One value that ends up in the local stack, with where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedValue {
    /// For example `parameter QuickBooksBaseUrl` or `WebhookFunction environment variable API_URL`.
    pub origin: String,
    pub value: String,
}

impl CheckedValue {
    pub fn new(origin: impl Into<String>, value: impl Into<String>) -> CheckedValue {
        CheckedValue {
            origin: origin.into(),
            value: value.into(),
        }
    }
}

/// The values that would leave 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackRefusal {
    /// `(origin, value shown without credentials or query, host)` per value.
    pub refused: Vec<(String, String, String)>,
}

impl fmt::Display for LoopbackRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "refusing to start the local stack: {} would send requests to a host other than 127.0.0.1:",
            if self.refused.len() == 1 {
                "this value"
            } else {
                "these values"
            }
        )?;
        for (origin, value, host) in &self.refused {
            writeln!(f, "  - {origin} = {value} (host {host})")?;
        }
        write!(
            f,
            "The local stack runs everything on 127.0.0.1 so that no request reaches AWS, RecordEngine \
             or a finance system. Point each value at 127.0.0.1, or remove the --parameter override \
             that sets it."
        )
    }
}

impl std::error::Error for LoopbackRefusal {}

/// Checks that every value is a 127.0.0.1 URL (or host) and names each one that is not.
pub fn check_loopback(values: &[CheckedValue]) -> Result<(), LoopbackRefusal> {
    let refused: Vec<_> = values
        .iter()
        .filter(|checked| !is_loopback_value(&checked.value))
        .map(|checked| {
            (
                checked.origin.clone(),
                redact(&checked.value),
                host_of(&checked.value).to_owned(),
            )
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(LoopbackRefusal { refused })
    }
}

/// Returns whether a value names a host that requests would go to.
/// `s3://bucket/key` does not, because the S3 client sends it to the AWS
/// endpoint, which is checked on its own.
pub fn names_a_host(value: &str) -> bool {
    match value.trim().split_once("://") {
        Some((scheme, _)) => !scheme.eq_ignore_ascii_case("s3"),
        None => false,
    }
}

/// Returns whether a URL, or a bare `host[:port][/path]`, names the loopback address.
pub fn is_loopback_value(value: &str) -> bool {
    let value = value.trim();
    if value.contains("://") {
        return is_loopback_url(value);
    }
    is_loopback_url(&format!("http://{value}"))
}

/// Returns the host part of a URL or bare host, for messages.
pub fn host_of(value: &str) -> &str {
    let rest = value.trim().split_once("://").map_or(value.trim(), |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    if host_port.starts_with('[') {
        return host_port
            .split(']')
            .next()
            .map_or(host_port, |host| &host_port[..host.len() + 1]);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

/// Drops credentials and the query string, which may carry keys, from a value shown in a message.
fn redact(value: &str) -> String {
    let value = value.trim();
    let without_query = value.split(['?', '#']).next().unwrap_or(value);
    let Some((scheme, rest)) = without_query.split_once("://") else {
        return without_query.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://…@{host}{path}"),
        None => without_query.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_values_pass() {
        let values = [
            CheckedValue::new("parameter A", "http://127.0.0.1:4566"),
            CheckedValue::new("parameter B", "https://[::1]:8443/x"),
            CheckedValue::new("parameter C", "127.0.0.1:9000"),
        ];

        assert_eq!(check_loopback(&values), Ok(()));
    }

    #[test]
    fn refusal_names_each_value() {
        let values = [
            CheckedValue::new("parameter RecordEngineBaseUrl", "http://127.0.0.1:8000"),
            CheckedValue::new(
                "parameter QuickBooksBaseUrl",
                "https://quickbooks.api.intuit.com/v3?key=secret",
            ),
            CheckedValue::new("parameter XeroHost", "api.xero.com"),
            CheckedValue::new("parameter Local", "http://localhost:4566"),
        ];

        let refusal = check_loopback(&values).unwrap_err();
        let message = refusal.to_string();

        assert_eq!(refusal.refused.len(), 3);
        assert!(message.contains("parameter QuickBooksBaseUrl"), "{message}");
        assert!(message.contains("host quickbooks.api.intuit.com"), "{message}");
        assert!(message.contains("parameter XeroHost = api.xero.com"), "{message}");
        assert!(message.contains("host localhost"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(!message.contains("RecordEngineBaseUrl"), "{message}");
    }

    #[test]
    fn lookalike_hosts_are_refused() {
        for value in [
            "http://127.0.0.1.example.com/",
            "http://user@evil.example@127.0.0.2/",
            "http://127.0.0.2:80",
            "",
        ] {
            assert!(!is_loopback_value(value), "{value}");
        }
    }

    #[test]
    fn s3_locations_name_no_host() {
        assert!(!names_a_host("s3://rules-bucket/routing.yaml"));
        assert!(!names_a_host("ssm:/bridge/rules"));
        assert!(names_a_host("https://example.com"));
        assert!(names_a_host("ftp://example.com"));
    }

    #[test]
    fn credentials_are_not_shown() {
        assert_eq!(redact("https://user:pw@example.com/a?b=c"), "https://…@example.com/a");
        assert_eq!(host_of("https://user:pw@example.com:8443/a"), "example.com");
        assert_eq!(host_of("[::1]:80"), "[::1]");
    }
}
