//! `endpoints.json`: where the running local stack can be reached, for
//! people, scripts and end-to-end tests. Also the run record (`run.json`)
//! that `bridgectl dev down` uses to stop a stack left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Addresses and credentials of a running local stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub stack_name: String,
    pub region: String,
    /// The emulator: every AWS API of the stack, `http://127.0.0.1:<port>`.
    pub aws_endpoint_url: String,
    /// `POST` RecordEngine's webhook body here, with `Authorization: Bearer <webhook_token>`.
    pub webhook_url: String,
    pub webhook_token: String,
    /// Base URL of the RecordEngine simulator.
    pub recordengine_url: String,
    /// The bearer token the simulator's document API requires.
    pub recordengine_api_token: String,
    /// Base URL of each destination sink, by name.
    pub sinks: BTreeMap<String, String>,
    /// The stack's CloudFormation outputs (queue URLs, table and bucket names).
    pub outputs: BTreeMap<String, String>,
    /// Function names by logical id.
    pub functions: BTreeMap<String, String>,
}

impl Endpoints {
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("cannot encode endpoints.json")?;
        write_atomically(path, &text)
    }

    pub fn read(path: &Path) -> Result<Endpoints> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "no local stack is running: cannot read {}; start one with `bridgectl dev up`",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a valid endpoints file", path.display()))
    }
}

/// Rewrites an API Gateway URL, `https://<api-id>.execute-api.<region>.<suffix>/<path>`,
/// into the path form the emulator serves: `<endpoint>/_aws/execute-api/<api-id>/<path>`.
pub fn local_execute_api_url(url: &str, endpoint: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (api_id, _) = host.split_once(".execute-api.")?;
    if api_id.is_empty() {
        return None;
    }
    Some(format!(
        "{}/_aws/execute-api/{api_id}{path}",
        endpoint.trim_end_matches('/')
    ))
}

/// The processes of a running local stack, written when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The bridgectl process that started the stack.
    pub owner_pid: i32,
    /// MiniStack's process id, which is also its process group id.
    pub emulator_pid: i32,
    pub emulator_port: u16,
    /// Holds MiniStack's `tmp/` and `state/` directories and its log.
    pub emulator_dir: PathBuf,
    pub stack_name: String,
    /// RFC 3339.
    pub started_at: String,
}

impl RunRecord {
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("cannot encode the run record")?;
        write_atomically(path, &text)
    }

    pub fn read(path: &Path) -> Result<RunRecord> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a valid run record", path.display()))
    }
}

/// Writes through a temporary file and a rename, so readers never see half a file.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let temporary = path.with_extension("json.partial");
    std::fs::write(&temporary, text).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_api_url_becomes_path_form() {
        assert_eq!(
            local_execute_api_url(
                "https://a1b2c3.execute-api.us-east-1.amazonaws.com/webhooks/recordengine",
                "http://127.0.0.1:4566/"
            )
            .as_deref(),
            Some("http://127.0.0.1:4566/_aws/execute-api/a1b2c3/webhooks/recordengine")
        );
        assert_eq!(
            local_execute_api_url("https://example.com/x", "http://127.0.0.1:1"),
            None
        );
        assert_eq!(local_execute_api_url("not a url", "http://127.0.0.1:1"), None);
    }

    #[test]
    fn endpoints_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.json");
        let endpoints = Endpoints {
            stack_name: "s".to_owned(),
            region: "us-east-1".to_owned(),
            aws_endpoint_url: "http://127.0.0.1:1".to_owned(),
            webhook_url: "http://127.0.0.1:1/_aws/execute-api/a/webhooks/recordengine".to_owned(),
            webhook_token: "t".to_owned(),
            recordengine_url: "http://127.0.0.1:2".to_owned(),
            recordengine_api_token: "r".to_owned(),
            sinks: BTreeMap::from([("xero".to_owned(), "http://127.0.0.1:3".to_owned())]),
            outputs: BTreeMap::new(),
            functions: BTreeMap::new(),
        };

        endpoints.write(&path).unwrap();

        assert_eq!(Endpoints::read(&path).unwrap(), endpoints);
        let error = Endpoints::read(&dir.path().join("missing.json")).unwrap_err();
        assert!(format!("{error:#}").contains("bridgectl dev up"), "{error:#}");
    }
}
