//! The sweep function against MiniStack, after a real webhook invocation
//! that archived its payload and then failed to route it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge_shared::alerts::OperationalAlert;
use bridge_shared::auth::{AuthMode, TokenVerifier};
use bridge_shared::aws::{Clients, DynamoDocumentStore, S3Archive, SecretsManagerSource, SqsQueues};
use bridge_shared::dispatch::aws::DynamoVersionedStore;
use bridge_shared::intake::{Intake, IntakeConfig};
use bridge_shared::message::RoutedMessage;
use bridge_shared::rules::{BUNDLED_RULES, DEFAULT_DESTINATIONS, RuleSet};
use bridge_shared::sweep::SweepOptions;
use bridge_tests::{Emulator, shared_emulator, unique_name};
use serde_json::json;
use sweep::handler::App;
use webhook::handler::App as Webhook;

const DOCUMENTED: &str = include_str!("../../../tests/fixtures/recordengine/document-exported.json");
const TOKEN: &str = "re_0f1e2d3c4b5a69780f1e2d3c4b5a69780f1e2d3c";

struct Stack {
    emulator: &'static Emulator,
    clients: Clients,
    bucket: String,
    table: String,
    queues: BTreeMap<String, String>,
    secret_arn: String,
}

impl Stack {
    async fn create() -> Stack {
        let emulator = shared_emulator();
        let bucket = unique_name("archive");
        let table = unique_name("documents");
        emulator.create_bucket(&bucket).await;
        emulator.create_table(&table, true).await;
        let mut queues = BTreeMap::new();
        for destination in DEFAULT_DESTINATIONS {
            queues.insert(
                destination.to_owned(),
                emulator.create_queue(&unique_name(destination)).await,
            );
        }
        let secret_arn = emulator.create_secret(&unique_name("webhook-token"), TOKEN).await;
        Stack {
            emulator,
            clients: emulator.clients(),
            bucket,
            table,
            queues,
            secret_arn,
        }
    }

    fn intake(&self, queues: BTreeMap<String, String>) -> Intake<S3Archive, DynamoDocumentStore, SqsQueues> {
        let destinations = self.queues.keys().cloned().collect();
        Intake {
            archive: Arc::new(S3Archive::new(self.clients.s3.clone(), &self.bucket)),
            store: Arc::new(DynamoDocumentStore::new(self.clients.dynamodb.clone(), &self.table)),
            queues: Arc::new(SqsQueues::new(self.clients.sqs.clone(), queues)),
            rules: Arc::new(RuleSet::from_yaml(BUNDLED_RULES, "bundled", &destinations).unwrap()),
            config: IntakeConfig::default(),
        }
    }

    /// Builds a webhook whose accounting queue URL names a queue the emulator does not have.
    fn broken_webhook(&self) -> Webhook<S3Archive, DynamoDocumentStore, SqsQueues, SecretsManagerSource> {
        let mut queues = self.queues.clone();
        let missing = format!("{}/000000000000/{}", self.emulator.url(), unique_name("missing"));
        queues.insert("accounting".into(), missing);
        let verifier = TokenVerifier::new(
            Arc::new(SecretsManagerSource::new(self.clients.secrets.clone())),
            &self.secret_arn,
        );
        Webhook::new(self.intake(queues), verifier, AuthMode::Bearer)
    }

    fn sweep(&self) -> App<S3Archive, DynamoDocumentStore, SqsQueues> {
        let archive = Arc::new(S3Archive::new(self.clients.s3.clone(), &self.bucket));
        let store = Arc::new(DynamoDocumentStore::new(self.clients.dynamodb.clone(), &self.table));
        App {
            intake: self.intake(self.queues.clone()),
            listing: archive,
            table: store,
            markers: Arc::new(DynamoVersionedStore::new(self.clients.dynamodb.clone(), &self.table)),
            alerts: Arc::new(SqsQueues::new(
                self.clients.sqs.clone(),
                BTreeMap::from([("alerts".to_owned(), self.queues["alerts"].clone())]),
            )),
            options: SweepOptions {
                since: chrono::Duration::hours(48),
                fix: true,
                delivery_grace: chrono::Duration::minutes(30),
            },
        }
    }

    async fn drain(&self, destination: &str) -> Vec<String> {
        self.emulator.drain_queue(&self.queues[destination]).await
    }
}

/// Builds an API Gateway HTTP API (payload format 2.0) event for `POST /webhooks/recordengine`.
fn webhook_request(body: &str) -> lambda_http::Request {
    let event = json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/recordengine",
        "rawPath": "/webhooks/recordengine",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "authorization": format!("Bearer {TOKEN}")},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "api",
            "domainName": "127.0.0.1",
            "domainPrefix": "api",
            "http": {"method": "POST", "path": "/webhooks/recordengine", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "RecordEngine"},
            "requestId": "sweep-test",
            "routeKey": "POST /webhooks/recordengine",
            "stage": "$default",
            "time": "04/Dec/2026:08:00:00 +0000",
            "timeEpoch": 1_796_371_200_000_i64
        },
        "body": body,
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("HTTP API event parses")
}

#[tokio::test]
async fn webhook_503_is_routed_once() {
    let stack = Stack::create().await;
    let webhook = stack.broken_webhook();
    let mut payload: serde_json::Value = serde_json::from_str(DOCUMENTED).unwrap();
    payload["id"] = json!(6101);
    payload["extracted_fields"]["currency"] = json!("USD");

    let response = webhook.handle(webhook_request(&payload.to_string())).await.unwrap();

    assert_eq!(response.status(), 503, "SQS failed mid-request");
    let archived = stack.emulator.list_keys(&stack.bucket).await;
    assert_eq!(archived.len(), 1, "the payload was archived before routing");
    assert!(stack.drain("accounting").await.is_empty());

    let app = stack.sweep();
    let first = app.run(chrono::Utc::now()).await.unwrap();
    let routed = stack.drain("accounting").await;
    let second = app.run(chrono::Utc::now()).await.unwrap();

    assert_eq!(first.report.unrouted.len(), 1, "{:?}", first.report);
    assert_eq!(first.report.unrouted[0].state, "unrouted");
    assert_eq!(first.report.still_unrouted(), 0);
    assert_eq!(routed.len(), 1, "the sweep routed the export once");
    let message: RoutedMessage = serde_json::from_str(&routed[0]).unwrap();
    assert_eq!(message.document_id, 6101);
    assert_eq!(message.archive.key, archived[0]);
    assert!(second.report.unrouted.is_empty(), "{:?}", second.report);
    assert!(
        stack.drain("accounting").await.is_empty(),
        "the second sweep sends nothing"
    );
    assert_eq!(first.alerts_sent, 0, "a repaired export raises no alert");
    let alerts: Vec<OperationalAlert> = stack
        .drain("alerts")
        .await
        .iter()
        .filter_map(|body| serde_json::from_str(body).ok())
        .collect();
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[tokio::test]
async fn routing_still_failing_is_alerted_once() {
    let stack = Stack::create().await;
    let webhook = stack.broken_webhook();
    let mut payload: serde_json::Value = serde_json::from_str(DOCUMENTED).unwrap();
    payload["id"] = json!(6102);
    payload["extracted_fields"]["currency"] = json!("USD");
    let response = webhook.handle(webhook_request(&payload.to_string())).await.unwrap();
    assert_eq!(response.status(), 503);

    // The sweep still has the broken queue URL, so its repair fails too.
    let mut app = stack.sweep();
    let mut queues = stack.queues.clone();
    queues.insert(
        "accounting".into(),
        format!("{}/000000000000/{}", stack.emulator.url(), unique_name("missing")),
    );
    app.intake = stack.intake(queues);
    let first = app.run(chrono::Utc::now()).await.unwrap();
    let second = app.run(chrono::Utc::now()).await.unwrap();

    assert_eq!(first.report.still_unrouted(), 1);
    assert_eq!(first.alerts_sent, 1);
    assert_eq!(second.alerts_sent, 0, "the same item is not alerted every run");
    assert_eq!(second.alerts_suppressed, 1);
    let alerts: Vec<OperationalAlert> = stack
        .drain("alerts")
        .await
        .iter()
        .filter_map(|body| serde_json::from_str(body).ok())
        .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, "export_unrouted");
    assert_eq!(alerts[0].document_id, Some(6102));
    assert!(alerts[0].params["error"].contains("failed"), "{:?}", alerts[0]);
}
