//! RecordEngine client settings from environment variables.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `RECORDENGINE_BASE_URL` | the instance's base URL | none: the client is off |
//! | `RECORDENGINE_TOKEN_SECRET_ARN` | secret holding the API token | required with the URL |
//! | `RECORDENGINE_CONNECT_TIMEOUT_SECONDS` | TCP and TLS connect limit | 10 |
//! | `RECORDENGINE_REQUEST_TIMEOUT_SECONDS` | status and list requests; wait for an upload's answer after its body | 60 |
//! | `RECORDENGINE_UPLOAD_TIMEOUT_SECONDS` | one whole upload | 600 |
//! | `RECORDENGINE_STATUS_PATH` | one document, `{id}` for the id | `/api/documents/{id}` |
//! | `RECORDENGINE_LIST_PATH` | the document list | `/api/documents` |
//! | `RECORDENGINE_LOOKUP` | `none` or `list:<query parameter>` | `list:external_refs_contains` |
//! | `RECORDENGINE_CA_BUNDLE_FILE` | PEM file of extra trusted roots | none |
//! | `RECORDENGINE_CA_BUNDLE_SECRET_ARN` | secret holding that PEM instead | none |

use std::path::PathBuf;
use std::time::Duration;

use super::RecordEngineConfig;
use crate::config::{ConfigError, optional, parsed_or};
use crate::ports::SecretSource;

/// Where the extra CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaBundleSource {
    File(PathBuf),
    Secret(String),
}

/// Client settings read from the environment, before the CA bundle is loaded.
#[derive(Debug, Clone)]
pub struct RecordEngineSettings {
    pub config: RecordEngineConfig,
    pub ca_bundle: Option<CaBundleSource>,
}

impl RecordEngineSettings {
    /// Reads the variables. Returns `None` when `RECORDENGINE_BASE_URL` is unset.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let Some(base_url) = optional("RECORDENGINE_BASE_URL") else {
            return Ok(None);
        };
        let token_secret = optional("RECORDENGINE_TOKEN_SECRET_ARN").ok_or_else(|| {
            ConfigError(
                "environment variable RECORDENGINE_TOKEN_SECRET_ARN is not set; it must name the secret holding the \
                 RecordEngine API token whenever RECORDENGINE_BASE_URL is set"
                    .into(),
            )
        })?;

        let mut config = RecordEngineConfig::new(base_url, token_secret);
        config.connect_timeout = seconds("RECORDENGINE_CONNECT_TIMEOUT_SECONDS", config.connect_timeout)?;
        config.request_timeout = seconds("RECORDENGINE_REQUEST_TIMEOUT_SECONDS", config.request_timeout)?;
        config.upload_timeout = seconds("RECORDENGINE_UPLOAD_TIMEOUT_SECONDS", config.upload_timeout)?;
        if let Some(path) = optional("RECORDENGINE_STATUS_PATH") {
            if !path.contains("{id}") {
                return Err(ConfigError(format!(
                    "environment variable RECORDENGINE_STATUS_PATH={path:?} is invalid: it must contain {{id}}"
                )));
            }
            config.status_path = path;
        }
        if let Some(path) = optional("RECORDENGINE_LIST_PATH") {
            config.list_path = path;
        }
        config.lookup = parsed_or("RECORDENGINE_LOOKUP", config.lookup)?;

        let ca_bundle = match (
            optional("RECORDENGINE_CA_BUNDLE_FILE"),
            optional("RECORDENGINE_CA_BUNDLE_SECRET_ARN"),
        ) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "set only one of RECORDENGINE_CA_BUNDLE_FILE and RECORDENGINE_CA_BUNDLE_SECRET_ARN".into(),
                ));
            }
            (Some(path), None) => Some(CaBundleSource::File(path.into())),
            (None, Some(secret)) => Some(CaBundleSource::Secret(secret)),
            (None, None) => None,
        };
        Ok(Some(RecordEngineSettings { config, ca_bundle }))
    }

    /// Loads the CA bundle, if any, and returns the finished client settings.
    pub async fn load<S: SecretSource>(self, secrets: &S) -> Result<RecordEngineConfig, ConfigError> {
        let mut config = self.config;
        config.ca_bundle_pem = match self.ca_bundle {
            None => None,
            Some(CaBundleSource::File(path)) => Some(std::fs::read(&path).map_err(|error| {
                ConfigError(format!(
                    "RECORDENGINE_CA_BUNDLE_FILE {} cannot be read: {error}",
                    path.display()
                ))
            })?),
            Some(CaBundleSource::Secret(secret)) => Some(
                secrets
                    .secret_string(&secret)
                    .await
                    .map_err(|error| ConfigError(format!("RECORDENGINE_CA_BUNDLE_SECRET_ARN: {error}")))?
                    .into_bytes(),
            ),
        };
        Ok(config)
    }
}

fn seconds(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    let value: u64 = parsed_or(name, default.as_secs())?;
    if value == 0 {
        return Err(ConfigError(format!(
            "environment variable {name}=0 is invalid: give a number of seconds above zero"
        )));
    }
    Ok(Duration::from_secs(value))
}
