//! The webhook handler against MiniStack through the real AWS SDK: S3 for the
//! archive, DynamoDB for deduplication and correlation, SQS for the routed
//! messages and Secrets Manager for the token.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bridge_shared::auth::{AuthMode, TokenVerifier};
use bridge_shared::aws::{Clients, DynamoDocumentStore, S3Archive, SecretsManagerSource, SqsQueues};
use bridge_shared::intake::{Intake, IntakeConfig};
use bridge_shared::json::Node;
use bridge_shared::message::RoutedMessage;
use bridge_shared::rules::{Approval, BUNDLED_RULES, DEFAULT_DESTINATIONS, RuleSet};
use bridge_tests::{Emulator, shared_emulator, unique_name};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use webhook::handler::App;

const TOKEN: &str = "re_a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2";
const DOCUMENTED: &str = include_str!("../../../tests/fixtures/recordengine/document-exported.json");
const DOCUMENTED_BARE: &str = include_str!("../../../tests/fixtures/recordengine/document-exported-no-envelope.json");

type TestApp = App<S3Archive, DynamoDocumentStore, SqsQueues, SecretsManagerSource>;

/// The resources one test uses, with unique names on the emulator.
struct Stack {
    emulator: &'static Emulator,
    bucket: String,
    table: String,
    queues: BTreeMap<String, String>,
    secret_name: String,
    secret_arn: String,
}

impl Stack {
    async fn create(emulator: &'static Emulator) -> Stack {
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

    fn app(&self, mode: AuthMode) -> TestApp {
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
    async fn drain(&self) -> BTreeMap<String, Vec<RoutedMessage>> {
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

    async fn archived(&self) -> Vec<String> {
        self.emulator.list_keys(&self.bucket).await
    }
}

fn destinations_with_messages(messages: &BTreeMap<String, Vec<RoutedMessage>>) -> Vec<&str> {
    messages
        .iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(destination, _)| destination.as_str())
        .collect()
}

/// Builds an API Gateway HTTP API (payload format 2.0) event.
fn http_api_event(path: &str, authorization: Option<&str>, body: &[u8], base64: bool) -> Request {
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
fn rest_api_event(method: &str, resource_path: &str, authorization: Option<&str>, body: Option<&str>) -> Request {
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
fn function_url_event(authorization: &str, body: &[u8]) -> Request {
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

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

async fn post(app: &TestApp, body: &str) -> (u16, Value) {
    let request = http_api_event("/webhooks/recordengine", Some(&bearer()), body.as_bytes(), false);
    send(app, request).await
}

async fn send(app: &TestApp, request: Request) -> (u16, Value) {
    let response: Response<Body> = app.handle(request).await.expect("handler never fails");
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, body)
}

/// The documented payload with edits applied to its JSON tree.
fn payload(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut root: Value = serde_json::from_str(DOCUMENTED).unwrap();
    edit(root.as_object_mut().unwrap());
    root.to_string()
}

fn set_field(root: &mut serde_json::Map<String, Value>, key: &str, value: Value) {
    root["extracted_fields"]
        .as_object_mut()
        .unwrap()
        .insert(key.into(), value);
}

/// A USD document from an untrusted vendor: the plain accounting route.
fn plain_usd(id: i64) -> String {
    payload(|root| {
        root.insert("id".into(), json!(id));
        set_field(root, "currency", json!("USD"));
    })
}

#[tokio::test]
async fn documented_payload_with_and_without_envelope() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let (status, body) = post(&app, DOCUMENTED).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["document_id"], 847);
    assert!(
        body["routes"].as_array().unwrap().contains(&json!("accounting")),
        "{body}"
    );
    let messages = stack.drain().await;
    assert_eq!(messages["accounting"].len(), 1);
    let message = &messages["accounting"][0];
    assert_eq!(message.document_id, 847);
    assert_eq!(message.decision.ruleset_version, "2026-12-04.1");
    assert!(message.decision.rules_fired.contains(&"approval-required".to_string()));
    assert_eq!(message.approval, Approval::Required);
    assert_eq!(
        message
            .payload
            .as_ref()
            .and_then(|p| p.get("extracted_fields"))
            .and_then(|f| f.get("total_amount")),
        Some(&Node::String("18500.0".into()))
    );

    // The bare generation has the same content, so it is the same export.
    let (status, body) = post(&app, DOCUMENTED_BARE).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "duplicate");

    // A fresh document id in the bare generation routes on its own.
    let mut bare: Value = serde_json::from_str(DOCUMENTED_BARE).unwrap();
    bare["id"] = json!(9847);
    let (status, body) = post(&app, &bare.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    assert!(body["routes"].as_array().unwrap().contains(&json!("accounting")));
}

#[tokio::test]
async fn confidence_threshold_routes() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let low = payload(|root| {
        root.insert("id".into(), json!(1));
        root.insert("confidence_score".into(), json!(59));
    });
    let (status, body) = post(&app, &low).await;
    assert_eq!(status, 200);
    assert_eq!(body["routes"], json!(["alerts"]));
    assert_eq!(destinations_with_messages(&stack.drain().await), vec!["alerts"]);

    let sixty = payload(|root| {
        root.insert("id".into(), json!(2));
        root.insert("confidence_score".into(), json!(60));
        set_field(root, "currency", json!("USD"));
    });
    let (_, body) = post(&app, &sixty).await;
    assert_eq!(body["routes"], json!(["accounting"]));
    assert_eq!(destinations_with_messages(&stack.drain().await), vec!["accounting"]);
}

#[tokio::test]
async fn currency_and_trusted_vendor_routes() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let cny = payload(|root| {
        root.insert("id".into(), json!(3));
    });
    let (_, body) = post(&app, &cny).await;
    assert!(
        body["routes"].as_array().unwrap().contains(&json!("china-accounting")),
        "{body}"
    );
    assert_eq!(stack.drain().await["china-accounting"].len(), 1);

    let trusted = payload(|root| {
        root.insert("id".into(), json!(4));
        root.insert("contact_name".into(), json!("Amazon Web Services"));
        set_field(root, "currency", json!("USD"));
    });
    let (_, body) = post(&app, &trusted).await;
    assert_eq!(body["routes"], json!(["accounting"]));
    let messages = stack.drain().await;
    assert_eq!(messages["accounting"][0].approval, Approval::Skip);
    assert_eq!(messages["accounting"][0].decision.rules_fired, vec!["trusted-vendor"]);
}

#[tokio::test]
async fn money_and_line_item_shapes_route() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let money_cases = [json!("16500.0"), json!(16500), json!(""), Value::Null];
    let line_item_cases = [None, Some(Value::Null), Some(json!([]))];

    let mut id = 100;
    for total in money_cases {
        id += 1;
        let body = payload(|root| {
            root.insert("id".into(), json!(id));
            set_field(root, "total_amount", total.clone());
        });
        let (status, response) = post(&app, &body).await;
        assert_eq!(status, 200, "total_amount {total}: {response}");
        assert_eq!(response["status"], "accepted", "total_amount {total}");
    }
    assert_eq!(stack.drain().await["accounting"].len(), 4);

    for items in line_item_cases {
        id += 1;
        let body = payload(|root| {
            root.insert("id".into(), json!(id));
            match &items {
                None => {
                    root.remove("line_items");
                }
                Some(value) => {
                    root.insert("line_items".into(), value.clone());
                }
            }
        });
        let (status, response) = post(&app, &body).await;
        assert_eq!(status, 200, "line_items {items:?}: {response}");
        let messages = stack.drain().await;
        let accounting = &messages["accounting"];
        assert_eq!(accounting.len(), 1, "line_items {items:?}");
        assert!(
            accounting[0]
                .decision
                .annotations
                .contains(&"single_line_bill".to_string())
        );
    }
}

#[tokio::test]
async fn chinese_text_is_routed_and_archived_intact() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let body = payload(|root| {
        root.insert("id".into(), json!(5));
        root.insert("filename".into(), json!("2024年 发票.pdf"));
        root.insert("original_filename".into(), json!("2024年 发票.pdf"));
        root.insert("contact_name".into(), json!("深圳市腾飞科技有限公司"));
        root.insert(
            "custom_fields".into(),
            json!({"采购订单号": "PO-7", "PO Number": "PO-8"}),
        );
        set_field(root, "vendor", json!("深圳市腾飞科技有限公司"));
    });

    let (status, response) = post(&app, &body).await;

    assert_eq!(status, 200, "{response}");
    let keys = stack.archived().await;
    assert_eq!(keys.len(), 1);
    let archived = stack
        .emulator
        .clients()
        .s3
        .get_object()
        .bucket(&stack.bucket)
        .key(&keys[0])
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(archived.as_ref(), body.as_bytes(), "archived byte for byte");

    let messages = stack.drain().await;
    let routed = messages["accounting"][0].payload.as_ref().unwrap();
    assert_eq!(
        routed.get("contact_name").and_then(Node::as_str),
        Some("深圳市腾飞科技有限公司")
    );
    assert_eq!(routed.get("filename").and_then(Node::as_str), Some("2024年 发票.pdf"));
    assert!(routed.get("custom_fields").and_then(|f| f.get("采购订单号")).is_some());
}

#[tokio::test]
async fn unknown_event_is_ignored() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let body =
        r#"{"schema_version": "2.0", "event": "audit.log", "timestamp": "2026-03-22T08:30:00Z", "action": "login"}"#;

    let (status, response) = post(&app, body).await;

    assert_eq!(status, 200);
    assert_eq!(response, json!({"status": "ignored", "event": "audit.log"}));
    assert_eq!(stack.archived().await.len(), 1, "ignored events are archived");
    assert!(destinations_with_messages(&stack.drain().await).is_empty());
}

#[tokio::test]
async fn bad_credentials_store_nothing() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let cases = [
        Some("Bearer re_wrong".to_owned()),
        None,
        Some("Basic dXNlcjpwYXNzd29yZA==".to_owned()),
        Some(format!("Token {TOKEN}")),
        Some("Bearer".to_owned()),
    ];

    for authorization in cases {
        let request = http_api_event(
            "/webhooks/recordengine",
            authorization.as_deref(),
            DOCUMENTED.as_bytes(),
            false,
        );
        let (status, response) = send(&app, request).await;
        assert_eq!(status, 401, "{authorization:?}");
        assert_eq!(response["status"], "unauthorized");
    }
    let path_form = http_api_event(
        &format!("/webhooks/recordengine/{TOKEN}"),
        None,
        DOCUMENTED.as_bytes(),
        false,
    );
    assert_eq!(
        send(&app, path_form).await.0,
        401,
        "path secrets are off in bearer mode"
    );

    assert!(stack.archived().await.is_empty(), "nothing archived");
    assert!(
        destinations_with_messages(&stack.drain().await).is_empty(),
        "nothing queued"
    );
}

#[tokio::test]
async fn lowercase_scheme_and_whitespace_are_accepted() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let request = http_api_event(
        "/webhooks/recordengine",
        Some(&format!("bearer   {TOKEN} ")),
        plain_usd(6).as_bytes(),
        false,
    );
    let (status, response) = send(&app, request).await;

    assert_eq!(status, 200, "{response}");
    assert_eq!(response["status"], "accepted");
}

#[tokio::test]
async fn base64_body_matches_plain_body() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let plain = send(
        &app,
        http_api_event(
            "/webhooks/recordengine",
            Some(&bearer()),
            plain_usd(7).as_bytes(),
            false,
        ),
    )
    .await;
    let encoded = send(
        &app,
        http_api_event("/webhooks/recordengine", Some(&bearer()), plain_usd(8).as_bytes(), true),
    )
    .await;

    assert_eq!(plain.0, 200);
    assert_eq!(encoded.0, 200);
    assert_eq!(plain.1["routes"], encoded.1["routes"]);
    assert_eq!(encoded.1["document_id"], 8);

    // The same bytes base64-encoded are the same export.
    let again = send(
        &app,
        http_api_event("/webhooks/recordengine", Some(&bearer()), plain_usd(7).as_bytes(), true),
    )
    .await;
    assert_eq!(again.1["status"], "duplicate");
}

#[tokio::test]
async fn rest_api_and_function_url_events() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let rest = rest_api_event("POST", "/webhooks/recordengine", Some(&bearer()), Some(&plain_usd(9)));
    let (status, response) = send(&app, rest).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["status"], "accepted");

    let url = function_url_event(&bearer(), plain_usd(10).as_bytes());
    let (status, response) = send(&app, url).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["document_id"], 10);

    let staged = http_api_event(
        "/prod/webhooks/recordengine",
        Some(&bearer()),
        plain_usd(11).as_bytes(),
        false,
    );
    assert_eq!(send(&app, staged).await.0, 200);
}

#[tokio::test]
async fn malformed_bodies_get_400_and_are_archived() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let (status, response) = post(&app, "{").await;
    assert_eq!(status, 400);
    assert_eq!(response["status"], "rejected");
    assert!(
        response["error"].as_str().unwrap().contains("not valid JSON"),
        "{response}"
    );

    let bad_total = payload(|root| set_field(root, "total_amount", json!("abc")));
    let (status, response) = post(&app, &bad_total).await;
    assert_eq!(status, 400);
    assert_eq!(
        response["error"],
        r#"extracted_fields.total_amount: expected a decimal, got "abc""#
    );

    let (status, _) = post(&app, "").await;
    assert_eq!(status, 400, "an empty body is rejected, not a 5xx");

    assert_eq!(stack.archived().await.len(), 3, "rejected bodies are kept for replay");
    assert!(destinations_with_messages(&stack.drain().await).is_empty());
}

#[tokio::test]
async fn oversized_body_gets_413_and_is_archived() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let large = payload(|root| {
        root.insert("ai_summary".into(), json!("x".repeat(70 * 1024)));
    });

    let (status, response) = post(&app, &large).await;

    assert_eq!(status, 413, "{response}");
    assert!(response["error"].as_str().unwrap().contains("MAX_BODY_BYTES"));
    assert_eq!(stack.archived().await.len(), 1);
    assert!(destinations_with_messages(&stack.drain().await).is_empty());
}

#[tokio::test]
async fn duplicate_exports_queue_once() {
    let stack = Stack::create(shared_emulator()).await;
    let app = Arc::new(stack.app(AuthMode::Bearer));
    let body = plain_usd(12);

    let first = post(&app, &body).await;
    let second = post(&app, &body).await;
    assert_eq!(first.1["status"], "accepted");
    assert_eq!(second.1["status"], "duplicate");
    assert_eq!(stack.drain().await["accounting"].len(), 1);

    // Two deliveries at the same moment: one wins the claim.
    let concurrent = plain_usd(13);
    let results = futures::future::join_all((0..2).map(|_| {
        let app = Arc::clone(&app);
        let body = concurrent.clone();
        async move { post(&app, &body).await }
    }))
    .await;
    let statuses: Vec<&str> = results
        .iter()
        .map(|(_, body)| body["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"accepted"), "{statuses:?}");
    assert!(statuses.contains(&"duplicate"), "{statuses:?}");
    assert_eq!(stack.drain().await["accounting"].len(), 1);
}

#[tokio::test]
async fn re_export_with_changed_total_routes_again() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let original = plain_usd(14);
    let changed = payload(|root| {
        root.insert("id".into(), json!(14));
        set_field(root, "currency", json!("USD"));
        set_field(root, "total_amount", json!("18600.0"));
    });

    post(&app, &original).await;
    let first = stack.drain().await["accounting"].clone();
    let (_, response) = post(&app, &changed).await;
    let second = stack.drain().await["accounting"].clone();

    assert_eq!(response["status"], "accepted");
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 1);
    assert_eq!(first[0].document_id, second[0].document_id);
    assert_ne!(first[0].fingerprint, second[0].fingerprint);
    assert_ne!(first[0].idempotency_key, second[0].idempotency_key);
}

#[tokio::test]
async fn correlates_with_the_upload_record() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let store = DynamoDocumentStore::new(stack.emulator.clients().dynamodb, &stack.table);
    let upload = bridge_shared::records::UploadRecord {
        pk: bridge_shared::records::reference_pk("s3-corr-1"),
        sk: bridge_shared::records::DOCUMENT_SK.into(),
        origin: bridge_shared::records::Origin {
            correlation_key: "s3-corr-1".into(),
            bucket: Some("inbox".into()),
            key: Some("inbox/5/12/acme.pdf".into()),
            ..Default::default()
        },
        status: "ambiguous".into(),
        document_id: None,
        lease_until: None,
        last_error: Some("timed out after sending".into()),
        external_refs_sent: None,
        contact_id: Some(5),
        folder_id: Some(12),
        profile_id: None,
        filename: Some("acme.pdf".into()),
        updated_at: "2026-12-04T08:00:00.000Z".into(),
    };
    let item = bridge_shared::aws::to_item(&upload, "PutItem").unwrap();
    stack
        .emulator
        .clients()
        .dynamodb
        .put_item()
        .table_name(&stack.table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    let body = payload(|root| {
        root.insert("id".into(), json!(15));
        set_field(root, "currency", json!("USD"));
        root.insert(
            "external_refs".into(),
            json!({"recordengine_bridge": {"record_id": "s3-corr-1", "record_type": "s3_object"}, "salesforce": {"record_id": "x"}}),
        );
    });

    post(&app, &body).await;

    let messages = stack.drain().await;
    let origin = messages["accounting"][0]
        .origin
        .as_ref()
        .expect("origin found by correlation key");
    assert_eq!(origin.key.as_deref(), Some("inbox/5/12/acme.pdf"));
    let view = bridge_shared::ports::DocumentStore::document_view(&store, 15)
        .await
        .unwrap();
    assert_eq!(view.document.unwrap().origin.unwrap().correlation_key, "s3-corr-1");
    let kinds: Vec<&str> = view.timeline.iter().map(|entry| entry.kind.as_str()).collect();
    assert_eq!(kinds, vec!["exported", "routed"]);
}

#[tokio::test]
async fn document_endpoint_returns_record_and_timeline() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    post(&app, &plain_usd(16)).await;

    let found = send(&app, rest_api_event("GET", "/documents/16", Some(&bearer()), None)).await;
    assert_eq!(found.0, 200, "{}", found.1);
    assert_eq!(found.1["document"]["document_id"], 16);
    assert_eq!(found.1["timeline"].as_array().unwrap().len(), 2);
    assert_eq!(found.1["exports"][0]["status"], "routed");

    let missing = send(&app, rest_api_event("GET", "/documents/999999", Some(&bearer()), None)).await;
    assert_eq!(missing.0, 404);
    let invalid = send(&app, rest_api_event("GET", "/documents/abc", Some(&bearer()), None)).await;
    assert_eq!(invalid.0, 400);
    let unauthenticated = send(&app, rest_api_event("GET", "/documents/16", None, None)).await;
    assert_eq!(unauthenticated.0, 401);
}

#[tokio::test]
async fn path_secret_mode() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::PathSecret);

    let good = http_api_event(
        &format!("/webhooks/recordengine/{TOKEN}"),
        None,
        plain_usd(17).as_bytes(),
        false,
    );
    let (status, response) = send(&app, good).await;
    assert_eq!(status, 200, "{response}");

    let wrong = http_api_event("/webhooks/recordengine/guess", None, plain_usd(18).as_bytes(), false);
    assert_eq!(send(&app, wrong).await.0, 401);
    let bearer_only = http_api_event(
        "/webhooks/recordengine",
        Some(&bearer()),
        plain_usd(18).as_bytes(),
        false,
    );
    assert_eq!(
        send(&app, bearer_only).await.0,
        401,
        "bearer tokens are off in path-secret mode"
    );
}

#[tokio::test]
async fn rotated_token_works_without_redeploy() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    assert_eq!(post(&app, &plain_usd(19)).await.0, 200);

    stack
        .emulator
        .clients()
        .secrets
        .put_secret_value()
        .secret_id(&stack.secret_name)
        .secret_string("re_rotated")
        .send()
        .await
        .unwrap();
    // The verifier re-reads at most once every five seconds after a mismatch.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;

    let request = http_api_event(
        "/webhooks/recordengine",
        Some("Bearer re_rotated"),
        plain_usd(20).as_bytes(),
        false,
    );
    assert_eq!(send(&app, request).await.0, 200);
}

#[tokio::test]
async fn emulator_outage_gives_503_then_recovers() {
    // Its own emulator: this test stops it.
    let emulator: &'static Emulator = Box::leak(Box::new(Emulator::start()));
    let stack = Stack::create(emulator).await;
    let app = stack.app(AuthMode::Bearer);
    assert_eq!(post(&app, &plain_usd(21)).await.0, 200, "warm: the token is cached");

    emulator.stop();
    let (status, response) = post(&app, &plain_usd(22)).await;
    assert_eq!(status, 503, "{response}");
    assert_eq!(response["status"], "unavailable");

    // MiniStack keeps state in memory, so its restart comes back empty:
    // recreate the same resources, as a redeploy would.
    emulator.restart();
    emulator.create_bucket(&stack.bucket).await;
    emulator.create_table(&stack.table, true).await;
    for url in stack.queues.values() {
        let name = url.rsplit('/').next().unwrap();
        emulator.create_queue(name).await;
    }

    let (status, response) = post(&app, &plain_usd(22)).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["status"], "accepted");
    emulator.stop();
}
