//! Test and benchmark support: a webhook app wired to fresh resources on
//! the emulator, and API Gateway event builders.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bridge_shared::auth::{AuthMode, TokenVerifier};
use bridge_shared::aws::{Clients, DynamoDocumentStore, S3Archive, SecretsManagerSource, SqsQueues};
use bridge_shared::intake::{Intake, IntakeConfig};
use bridge_shared::message::RoutedMessage;
use bridge_shared::rules::{BUNDLED_RULES, DEFAULT_DESTINATIONS, RuleSet};
use bridge_tests::{Emulator, unique_name};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use webhook::handler::App;

pub const TOKEN: &str = "re_a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2";
pub const DOCUMENTED: &str = include_str!("../../../../tests/fixtures/recordengine/document-exported.json");
pub const DOCUMENTED_BARE: &str =
    include_str!("../../../../tests/fixtures/recordengine/document-exported-no-envelope.json");

pub type TestApp = App<S3Archive, DynamoDocumentStore, SqsQueues, SecretsManagerSource>;

/// The resources one test uses, with unique names on the emulator.
pub struct Stack {
    pub emulator: &'static Emulator,
    pub bucket: String,
    pub table: String,
    pub queues: BTreeMap<String, String>,
    pub secret_name: String,
    pub secret_arn: String,
}

impl Stack {
    pub async fn create(emulator: &'static Emulator) -> Stack {
        let bucket = unique_name("archive");
        let table = unique_name("documents");
        let secret_name = unique_name("webhook-token");
        emulator.create_bucket(&bucket).await;
        emulator.create_table(&table, true).await;
        let mut queues = BTreeMap::new();
        for destination in DEFAULT_DESTINATIONS {
            let url = emulator.create_queue(&unique_name(destination)).await;
            queues.insert(destination.to_owned(), url);
        }
        let secret_arn = emulator.create_secret(&secret_name, TOKEN).await;
        Stack {
            emulator,
            bucket,
            table,
            queues,
            secret_name,
            secret_arn,
        }
    }

    pub fn app(&self, mode: AuthMode) -> TestApp {
        let clients: Clients = self.emulator.clients();
        let destinations = self.queues.keys().cloned().collect();
        let rules = RuleSet::from_yaml(BUNDLED_RULES, "bundled", &destinations).expect("bundled rules");
        let intake = Intake {
            archive: Arc::new(S3Archive::new(clients.s3.clone(), &self.bucket)),
            store: Arc::new(DynamoDocumentStore::new(clients.dynamodb.clone(), &self.table)),
            queues: Arc::new(SqsQueues::new(clients.sqs.clone(), self.queues.clone())),
            rules: Arc::new(rules),
            config: IntakeConfig {
                max_body_bytes: 64 * 1024,
                ..IntakeConfig::default()
            },
        };
        let verifier = TokenVerifier::new(Arc::new(SecretsManagerSource::new(clients.secrets)), &self.secret_arn);
        App::new(intake, verifier, mode)
    }

    /// Drains every destination queue; returns the routed messages by destination.
    pub async fn drain(&self) -> BTreeMap<String, Vec<RoutedMessage>> {
        let mut all = BTreeMap::new();
        for (destination, url) in &self.queues {
            let messages: Vec<RoutedMessage> = self
                .emulator
                .drain_queue(url)
                .await
                .iter()
                .map(|body| serde_json::from_str(body).expect("routed message parses"))
                .collect();
            all.insert(destination.clone(), messages);
        }
        all
    }

    pub async fn archived(&self) -> Vec<String> {
        self.emulator.list_keys(&self.bucket).await
    }
}

pub fn destinations_with_messages(messages: &BTreeMap<String, Vec<RoutedMessage>>) -> Vec<&str> {
    messages
        .iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(destination, _)| destination.as_str())
        .collect()
}

/// Builds an API Gateway HTTP API (payload format 2.0) event.
pub fn http_api_event(path: &str, authorization: Option<&str>, body: &[u8], base64: bool) -> Request {
    let mut headers = serde_json::Map::new();
    headers.insert("content-type".into(), json!("application/json"));
    if let Some(value) = authorization {
        headers.insert("authorization".into(), json!(value));
    }
    let body_text = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8(body.to_vec()).expect("test bodies are UTF-8 unless base64")
    };
    let event = json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/recordengine",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "api",
            "domainName": "127.0.0.1",
            "domainPrefix": "api",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "RecordEngine"},
            "requestId": "req",
            "routeKey": "POST /webhooks/recordengine",
            "stage": "$default",
            "time": "04/Dec/2026:08:00:00 +0000",
            "timeEpoch": 1_796_371_200_000_i64
        },
        "body": body_text,
        "isBase64Encoded": base64
    });
    lambda_http::request::from_str(&event.to_string()).expect("HTTP API event parses")
}

/// Builds a REST API (v1) event with a stage name.
pub fn rest_api_event(method: &str, resource_path: &str, authorization: Option<&str>, body: Option<&str>) -> Request {
    let mut headers = serde_json::Map::new();
    if let Some(value) = authorization {
        headers.insert("Authorization".into(), json!(value));
    }
    let event = json!({
        "resource": "/{proxy+}",
        "path": resource_path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {},
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": {"proxy": resource_path.trim_start_matches('/')},
        "stageVariables": null,
        "requestContext": {
            "accountId": "000000000000",
            "resourceId": "r",
            "stage": "prod",
            "requestId": "req",
            "identity": {"sourceIp": "127.0.0.1"},
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "apiId": "api",
            "path": format!("/prod{resource_path}")
        },
        "body": body,
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("REST API event parses")
}

/// Builds a Lambda function URL event without a Content-Type header and with a base64 body.
pub fn function_url_event(authorization: &str, body: &[u8]) -> Request {
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/webhooks/recordengine",
        "rawQueryString": "",
        "headers": {"authorization": authorization, "host": "abc.lambda-url.us-east-1.on.aws"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc",
            "http": {"method": "POST", "path": "/webhooks/recordengine", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "RecordEngine"},
            "requestId": "req",
            "routeKey": "$default",
            "stage": "$default",
            "time": "04/Dec/2026:08:00:00 +0000",
            "timeEpoch": 1_796_371_200_000_i64
        },
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "isBase64Encoded": true
    });
    lambda_http::request::from_str(&event.to_string()).expect("function URL event parses")
}

pub fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

pub async fn post(app: &TestApp, body: &str) -> (u16, Value) {
    let request = http_api_event("/webhooks/recordengine", Some(&bearer()), body.as_bytes(), false);
    send(app, request).await
}

pub async fn send(app: &TestApp, request: Request) -> (u16, Value) {
    let response: Response<Body> = app.handle(request).await.expect("handler never fails");
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, body)
}
