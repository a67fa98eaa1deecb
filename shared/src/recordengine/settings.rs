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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recordengine::LookupStrategy;

    const NAMES: [&str; 10] = [
        "RECORDENGINE_BASE_URL",
        "RECORDENGINE_TOKEN_SECRET_ARN",
        "RECORDENGINE_CONNECT_TIMEOUT_SECONDS",
        "RECORDENGINE_REQUEST_TIMEOUT_SECONDS",
        "RECORDENGINE_UPLOAD_TIMEOUT_SECONDS",
        "RECORDENGINE_STATUS_PATH",
        "RECORDENGINE_LIST_PATH",
        "RECORDENGINE_LOOKUP",
        "RECORDENGINE_CA_BUNDLE_FILE",
        "RECORDENGINE_CA_BUNDLE_SECRET_ARN",
    ];

    fn set(pairs: &[(&str, &str)]) {
        // SAFETY: only this test reads or writes RECORDENGINE_* variables, and
        // it runs its cases one after another.
        unsafe {
            for name in NAMES {
                std::env::remove_var(name);
            }
            for (name, value) in pairs {
                std::env::set_var(name, value);
            }
        }
    }

    #[test]
    fn settings_read_from_environment() {
        set(&[]);
        assert!(
            RecordEngineSettings::from_env().unwrap().is_none(),
            "no URL: refresh and uploads are off"
        );

        set(&[("RECORDENGINE_BASE_URL", "https://re.example.com")]);
        let error = RecordEngineSettings::from_env().unwrap_err();
        assert!(error.0.contains("RECORDENGINE_TOKEN_SECRET_ARN is not set"), "{error}");

        set(&[
            ("RECORDENGINE_BASE_URL", "https://re.example.com"),
            ("RECORDENGINE_TOKEN_SECRET_ARN", "arn:token"),
            ("RECORDENGINE_REQUEST_TIMEOUT_SECONDS", "15"),
            ("RECORDENGINE_STATUS_PATH", "/api/v2/documents/{id}"),
            ("RECORDENGINE_LOOKUP", "none"),
            ("RECORDENGINE_CA_BUNDLE_SECRET_ARN", "arn:ca"),
        ]);
        let settings = RecordEngineSettings::from_env().unwrap().unwrap();
        assert_eq!(settings.config.base_url, "https://re.example.com");
        assert_eq!(settings.config.token_secret_id, "arn:token");
        assert_eq!(settings.config.request_timeout, Duration::from_secs(15));
        assert_eq!(settings.config.connect_timeout, Duration::from_secs(10));
        assert_eq!(settings.config.status_path, "/api/v2/documents/{id}");
        assert_eq!(settings.config.lookup, LookupStrategy::None);
        assert_eq!(settings.ca_bundle, Some(CaBundleSource::Secret("arn:ca".into())));

        let invalid = [
            ("RECORDENGINE_STATUS_PATH", "/api/documents", "must contain {id}"),
            ("RECORDENGINE_UPLOAD_TIMEOUT_SECONDS", "0", "above zero"),
            ("RECORDENGINE_CONNECT_TIMEOUT_SECONDS", "ten", "is invalid"),
            ("RECORDENGINE_LOOKUP", "search", "list:<query parameter>"),
            ("RECORDENGINE_CA_BUNDLE_FILE", "/etc/ca.pem", "set only one"),
        ];
        for (name, value, expected) in invalid {
            set(&[
                ("RECORDENGINE_BASE_URL", "https://re.example.com"),
                ("RECORDENGINE_TOKEN_SECRET_ARN", "arn:token"),
                ("RECORDENGINE_CA_BUNDLE_SECRET_ARN", "arn:ca"),
                (name, value),
            ]);
            let error = RecordEngineSettings::from_env().unwrap_err();
            assert!(error.0.contains(expected), "{name}={value}: {error}");
        }
        set(&[]);
    }
}
