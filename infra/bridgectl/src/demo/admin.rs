//! The admin endpoints of the local servers (`docs/local-stack.md`): what the
//! RecordEngine simulator received and exported, every request a sink
//! received, the WeCom robot's messages, and fault injection.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bridge_shared::aws::is_loopback_url;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An upload the simulator received (`GET /_requests`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimulatorUpload {
    /// The document id; `None` for a rejected or faulted upload.
    pub id: Option<i64>,
    pub filename: String,
    pub fields: UploadFields,
    pub received_at: String,
    pub response_status: u16,
}

/// The form fields of an upload, as the raw text received.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadFields {
    pub contact_id: Option<String>,
    pub folder_id: Option<String>,
    pub external_refs: Option<String>,
}

impl SimulatorUpload {
    /// Returns `external_refs` parsed as JSON, or `Null` when it is missing or not JSON.
    pub fn external_refs(&self) -> Value {
        self.fields
            .external_refs
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null)
    }

    /// Returns the S3 key the bridge recorded in `external_refs.recordengine_bridge.key`.
    pub fn s3_key(&self) -> Option<String> {
        self.external_refs()
            .pointer("/recordengine_bridge/key")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// A webhook delivery of the simulator (`GET /_exports`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimulatorExport {
    pub id: i64,
    /// The webhook's HTTP status; `None` when no response arrived.
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub at: String,
    pub payload: Value,
}

/// A request a sink received (`GET /_requests`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Header names in lower case, without `Authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The JSON body; `Null` when there was none or it was not JSON.
    #[serde(default)]
    pub body: Value,
    pub at: String,
    /// `None` while the sink is still handling the request.
    pub response_status: Option<u16>,
    /// The status of the injected fault that replaced the response, if any.
    pub fault_status: Option<u16>,
}

impl SinkRequest {
    pub fn succeeded(&self) -> bool {
        self.response_status.is_some_and(|status| (200..300).contains(&status))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// A message the WeCom robot sink accepted or rejected (`GET /_messages`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeComMessage {
    pub msgtype: String,
    pub content: String,
    /// 0 when the message was delivered.
    pub errcode: i64,
}

/// A fault for `POST /_faults`, as `docs/local-stack.md` describes it.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub status: u16,
    /// `Retry-After` header value, sent as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// How many requests take this fault.
    pub times: u64,
}

/// An HTTP client for the admin endpoints, limited to 127.0.0.1.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Uploads {
    uploads: Vec<SimulatorUpload>,
}

#[derive(Deserialize)]
struct Exports {
    exports: Vec<SimulatorExport>,
}

#[derive(Deserialize)]
struct Requests {
    requests: Vec<SinkRequest>,
}

#[derive(Deserialize)]
struct Messages {
    messages: Vec<WeComMessage>,
}

impl AdminClient {
    pub fn new() -> Result<AdminClient> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(AdminClient { http })
    }

    /// Returns every upload the simulator at `base_url` received, in order.
    pub async fn uploads(&self, base_url: &str) -> Result<Vec<SimulatorUpload>> {
        Ok(self.get::<Uploads>(base_url, "/_requests").await?.uploads)
    }

    /// Returns every webhook delivery of the simulator at `base_url`, in order.
    pub async fn exports(&self, base_url: &str) -> Result<Vec<SimulatorExport>> {
        Ok(self.get::<Exports>(base_url, "/_exports").await?.exports)
    }

    /// Returns every request the sink at `base_url` received, in order.
    pub async fn requests(&self, base_url: &str) -> Result<Vec<SinkRequest>> {
        Ok(self.get::<Requests>(base_url, "/_requests").await?.requests)
    }

    /// Returns every message the WeCom sink at `base_url` received, in order.
    pub async fn wecom_messages(&self, base_url: &str) -> Result<Vec<WeComMessage>> {
        Ok(self.get::<Messages>(base_url, "/_messages").await?.messages)
    }

    /// Appends a fault to the queue of the server at `base_url`.
    pub async fn add_fault(&self, base_url: &str, fault: &Fault) -> Result<()> {
        let url = admin_url(base_url, "/_faults")?;
        let response = self
            .http
            .post(&url)
            .json(fault)
            .send()
            .await
            .with_context(|| format!("POST {url} failed"))?;
        expect_success(response, "POST", &url).await
    }

    /// Removes every pending fault of the server at `base_url`.
    pub async fn clear_faults(&self, base_url: &str) -> Result<()> {
        let url = admin_url(base_url, "/_faults")?;
        let response = self
            .http
            .delete(&url)
            .send()
            .await
            .with_context(|| format!("DELETE {url} failed"))?;
        expect_success(response, "DELETE", &url).await
    }

    /// Returns a document of the simulator's document API (`GET /api/documents/{id}`).
    pub async fn recordengine_document(&self, base_url: &str, token: &str, id: i64) -> Result<Value> {
        let url = admin_url(base_url, &format!("/api/documents/{id}"))?;
        let response = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {url} failed"))?;
        read_json(response, &url).await
    }

    async fn get<T: DeserializeOwned>(&self, base_url: &str, path: &str) -> Result<T> {
        let url = admin_url(base_url, path)?;
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url} failed"))?;
        read_json(response, &url).await
    }
}

fn admin_url(base_url: &str, path: &str) -> Result<String> {
    if !is_loopback_url(base_url) {
        bail!("refusing to call {base_url}: the local servers listen on 127.0.0.1 only");
    }
    Ok(format!("{}{path}", base_url.trim_end_matches('/')))
}

async fn expect_success(response: reqwest::Response, method: &str, url: &str) -> Result<()> {
    let status = response.status();
    if !status.is_success() {
        bail!(
            "{method} {url} returned {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn read_json<T: DeserializeOwned>(response: reqwest::Response, url: &str) -> Result<T> {
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("cannot read the response of GET {url}"))?;
    if !status.is_success() {
        bail!("GET {url} returned {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("GET {url} returned an unexpected body: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_its_s3_key() {
        let upload: SimulatorUpload = serde_json::from_value(serde_json::json!({
            "id": 1001,
            "filename": "oyo.pdf",
            "size": 10,
            "sha256": "ab",
            "content_type": "application/pdf",
            "fields": {
                "contact_id": "8",
                "folder_id": "20",
                "profile_id": null,
                "external_refs": "{\"recordengine_bridge\": {\"key\": \"inbox/8/20/oyo.pdf\"}}"
            },
            "received_at": "2026-12-04T08:00:00Z",
            "response_status": 200
        }))
        .unwrap();

        assert_eq!(upload.s3_key().as_deref(), Some("inbox/8/20/oyo.pdf"));
    }

    #[test]
    fn unreadable_refs_name_no_key() {
        let upload = SimulatorUpload {
            id: None,
            filename: "a.pdf".into(),
            fields: UploadFields {
                external_refs: Some("not json".into()),
                ..UploadFields::default()
            },
            received_at: String::new(),
            response_status: 422,
        };

        assert_eq!(upload.s3_key(), None);
    }

    #[test]
    fn admin_calls_stay_on_loopback() {
        assert!(admin_url("http://127.0.0.1:4000", "/_faults").is_ok());
        assert!(admin_url("http://localhost:4000", "/_faults").is_err());
        assert!(admin_url("https://quickbooks.api.intuit.com", "/_requests").is_err());
    }
}
