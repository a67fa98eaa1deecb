//! `GET /documents/{id}?refresh=true`: the stored record plus RecordEngine's
//! own status, read from the simulator on 127.0.0.1.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bridge_devstack::{ServerHandle, SimulatorConfig, start_recordengine};
use bridge_shared::auth::AuthMode;
use bridge_shared::aws::SecretsManagerSource;
use bridge_shared::recordengine::{DocumentApi, FileBody, RecordEngineClient, RecordEngineConfig, UploadRequest};
use bridge_tests::{shared_emulator, unique_name};
use lambda_http::Request;
use serde_json::{Value, json};
use support::*;

const RECORDENGINE_TOKEN: &str = "re_fedcba9876543210fedcba9876543210fedcba98";

/// A REST API (v1) `GET /documents/{id}` event with a query string.
fn document_request(id: &str, query: Option<(&str, &str)>) -> Request {
    let path = format!("/documents/{id}");
    let (single, multi) = match query {
        Some((name, value)) => (json!({ name: value }), json!({ name: [value] })),
        None => (Value::Null, Value::Null),
    };
    let event = json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "GET",
        "headers": {"Authorization": bearer()},
        "multiValueHeaders": {},
        "queryStringParameters": single,
        "multiValueQueryStringParameters": multi,
        "pathParameters": {"proxy": path.trim_start_matches('/')},
        "stageVariables": null,
        "requestContext": {
            "accountId": "000000000000",
            "resourceId": "r",
            "stage": "prod",
            "requestId": "req",
            "identity": {"sourceIp": "127.0.0.1"},
            "resourcePath": "/{proxy+}",
            "httpMethod": "GET",
            "apiId": "api",
            "path": format!("/prod{path}")
        },
        "body": null,
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("REST API event parses")
}

/// The documented export with another document id, routed to accounting.
fn export_of(document_id: i64) -> String {
    let mut root: Value = serde_json::from_str(DOCUMENTED).unwrap();
    root["id"] = json!(document_id);
    root["extracted_fields"]["currency"] = json!("USD");
    root.to_string()
}

async fn simulator() -> ServerHandle {
    start_recordengine(SimulatorConfig {
        api_token: Some(RECORDENGINE_TOKEN.into()),
        export_delay: Duration::ZERO,
        ..SimulatorConfig::default()
    })
    .await
    .expect("start the RecordEngine simulator")
}

async fn recordengine_client(simulator: &ServerHandle) -> Arc<RecordEngineClient<SecretsManagerSource>> {
    let emulator = shared_emulator();
    let secret_arn = emulator
        .create_secret(&unique_name("recordengine-token"), RECORDENGINE_TOKEN)
        .await;
    let secrets = Arc::new(SecretsManagerSource::new(emulator.clients().secrets));
    let config = RecordEngineConfig::new(simulator.base_url(), secret_arn);
    Arc::new(RecordEngineClient::new_guarded(config, secrets).expect("client for the simulator"))
}

#[tokio::test]
async fn refresh_adds_recordengine_status() {
    let stack = Stack::create(shared_emulator()).await;
    let simulator = simulator().await;
    let client = recordengine_client(&simulator).await;
    let uploaded = client
        .upload(
            UploadRequest {
                filename: "2024年 发票.pdf".into(),
                content_type: "application/pdf".into(),
                contact_id: 5,
                folder_id: 12,
                profile_id: None,
                external_refs: r#"{"recordengine_bridge":{"record_id":"s3-refresh","record_type":"s3_object"}}"#.into(),
                file: FileBody::from_bytes(&b"%PDF refresh"[..]),
            },
            None,
        )
        .await
        .expect("upload to the simulator");
    let app = stack.app(AuthMode::Bearer).with_recordengine(client);
    let (status, _) = post(&app, &export_of(uploaded.id)).await;
    assert_eq!(status, 200);

    let (status, body) = send(
        &app,
        document_request(&uploaded.id.to_string(), Some(("refresh", "true"))),
    )
    .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["document"]["document_id"], uploaded.id);
    assert_eq!(body["timeline"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(body["recordengine"]["id"], uploaded.id);
    assert_eq!(body["recordengine"]["filename"], "2024年 发票.pdf");
    assert_eq!(body["recordengine"]["contact_id"], 5);
    assert!(body["recordengine"]["status"].is_string(), "{body}");
    assert!(body.get("recordengine_error").is_none(), "{body}");

    let (status, plain) = send(&app, document_request(&uploaded.id.to_string(), None)).await;
    assert_eq!(status, 200);
    assert!(
        plain.get("recordengine").is_none(),
        "no refresh, no RecordEngine call: {plain}"
    );
    let (_, other_value) = send(
        &app,
        document_request(&uploaded.id.to_string(), Some(("refresh", "no"))),
    )
    .await;
    assert!(other_value.get("recordengine").is_none(), "{other_value}");
}

#[tokio::test]
async fn refresh_failure_still_returns_record() {
    let stack = Stack::create(shared_emulator()).await;
    let simulator = simulator().await;
    let client = recordengine_client(&simulator).await;
    let app = stack.app(AuthMode::Bearer).with_recordengine(client);
    // Known here, unknown to RecordEngine (a document deleted there, say).
    post(&app, &export_of(990_001)).await;

    let (status, body) = send(&app, document_request("990001", Some(("refresh", "true")))).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["document"]["document_id"], 990_001);
    assert!(body.get("recordengine").is_none(), "{body}");
    let error = body["recordengine_error"].as_str().unwrap();
    assert!(error.contains("HTTP 404"), "{error}");
    assert!(!error.contains(RECORDENGINE_TOKEN));

    let (status, missing) = send(&app, document_request("990002", Some(("refresh", "true")))).await;
    assert_eq!(status, 404, "an id with no record is still 404: {missing}");
}

#[tokio::test]
async fn refresh_without_configuration_explains() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    post(&app, &export_of(990_003)).await;

    let (status, body) = send(&app, document_request("990003", Some(("refresh", "true")))).await;

    assert_eq!(status, 200);
    assert!(
        body["recordengine_error"]
            .as_str()
            .unwrap()
            .contains("RECORDENGINE_BASE_URL is not set"),
        "{body}"
    );
}
