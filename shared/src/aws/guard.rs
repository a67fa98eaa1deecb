//! Keeps local runs from reaching real AWS endpoints.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Set to `1` to make every AWS client and HTTP client of this bundle refuse
/// requests to any host but 127.0.0.1.
pub const LOOPBACK_ONLY_VAR: &str = "BRIDGE_LOOPBACK_ONLY";

/// Whether the loopback guard is switched on in this process.
pub fn loopback_only() -> bool {
    std::env::var(LOOPBACK_ONLY_VAR).is_ok_and(|value| value == "1" || value.eq_ignore_ascii_case("true"))
}

/// Whether a URL's host is the IPv4 or IPv6 loopback address.
///
/// Names such as `localhost` are rejected on purpose: resolving one can leave
/// the machine.
pub fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    host_port == "127.0.0.1"
        || host_port.starts_with("127.0.0.1:")
        || host_port == "[::1]"
        || host_port.starts_with("[::1]:")
}

/// An SDK interceptor that fails any request not addressed to 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct LoopbackGuard;

impl Intercept for LoopbackGuard {
    fn name(&self) -> &'static str {
        "LoopbackGuard"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let uri = context.request().uri();
        if is_loopback_url(uri) {
            return Ok(());
        }
        let host = uri
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or(uri);
        Err(format!(
            "refused to send an AWS request to {host}: {LOOPBACK_ONLY_VAR}=1 allows only 127.0.0.1; \
             set AWS_ENDPOINT_URL to the local emulator"
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        assert!(is_loopback_url("http://127.0.0.1:4566/"));
        assert!(is_loopback_url("http://127.0.0.1"));
        assert!(is_loopback_url("https://[::1]:8443/x"));
        assert!(!is_loopback_url("https://sqs.us-east-1.amazonaws.com/"));
        assert!(!is_loopback_url("http://localhost:4566/"));
        assert!(!is_loopback_url("http://127.0.0.1.example.com/"));
        assert!(!is_loopback_url("http://user@evil.com@127.0.0.2/"));
        assert!(!is_loopback_url("127.0.0.1:80"));
    }
}
