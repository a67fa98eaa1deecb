//! SDK adapters for the ports, and the one place AWS clients are built.

mod dynamo;
mod guard;
mod rules_source;
mod s3;
mod secrets;
mod sqs;

pub use dynamo::{DynamoDocumentStore, from_item, to_item};
pub use guard::{LOOPBACK_ONLY_VAR, LoopbackGuard, is_loopback_url, loopback_only};
pub use rules_source::load_rule_set;
pub use s3::S3Archive;
pub use secrets::SecretsManagerSource;
pub use sqs::SqsQueues;

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the standard AWS configuration: region, credentials and
/// `AWS_ENDPOINT_URL` from the environment, as every AWS tool does.
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// The AWS clients a function may need, built once at start-up.
#[derive(Clone, Debug)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub ses: aws_sdk_sesv2::Client,
}

impl Clients {
    /// Builds every client from one configuration. When `BRIDGE_LOOPBACK_ONLY`
    /// is set (the local stack and the tests set it), each client refuses to
    /// send a request to any host but 127.0.0.1.
    pub fn new(config: &SdkConfig) -> Self {
        Self::build(config, loopback_only())
    }

    /// Builds every client with the loopback guard on, whatever the environment says.
    pub fn new_guarded(config: &SdkConfig) -> Self {
        Self::build(config, true)
    }

    fn build(config: &SdkConfig, guard: bool) -> Self {
        macro_rules! client {
            ($krate:ident) => {{
                let mut builder = $krate::config::Builder::from(config);
                if guard {
                    builder = builder.interceptor(LoopbackGuard);
                }
                $krate::Client::from_conf(builder.build())
            }};
        }

        Clients {
            s3: client!(aws_sdk_s3),
            sqs: client!(aws_sdk_sqs),
            dynamodb: client!(aws_sdk_dynamodb),
            secrets: client!(aws_sdk_secretsmanager),
            ssm: client!(aws_sdk_ssm),
            ses: client!(aws_sdk_sesv2),
        }
    }
}

/// Renders an SDK error with its service code and message rather than the
/// bare "service error" that `Display` gives.
pub fn sdk_error_text<E, R>(error: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error,
    R: std::fmt::Debug,
{
    use aws_smithy_runtime_api::client::result::SdkError;

    match error {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            match (inner.code(), inner.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => inner.to_string(),
            }
        }
        SdkError::DispatchFailure(failure) => format!("request not sent or no response: {failure:?}"),
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        other => other.to_string(),
    }
}
