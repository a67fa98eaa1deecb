//! The dispatcher against MiniStack (DynamoDB, SQS, S3, Secrets Manager,
//! SES) through the real AWS SDK, with the devstack sinks on 127.0.0.1
//! standing in for QuickBooks, Xero, HubSpot, the generic JSON endpoint and
//! the WeCom robot.
//!
//! Each test receives real SQS messages, runs the engine on them as Lambda
//! would, and then deletes the messages the batch response did not report
//! as failed, as the event source mapping does.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_dynamodb::types::AttributeValue;
use bridge_devstack::{
    GenericConfig, HubSpotConfig, QuickBooksConfig, ServerHandle, WeComConfig, XeroConfig, start_generic,
    start_hubspot, start_quickbooks, start_wecom, start_xero,
};
use bridge_shared::alerts::OperationalAlert;
use bridge_shared::dispatch::alert_text::AlertLocale;
use bridge_shared::dispatch::aws::DynamoVersionedStore;
use bridge_shared::dispatch::engine::attribute;
use bridge_shared::dispatch::record::dispatch_status;
use bridge_shared::dispatch::settings::{DestinationsFile, Overrides};
use bridge_shared::dispatch::store::get_dispatch;
use bridge_shared::dispatch::{BatchReport, Disposition, Engine};
use bridge_shared::failures::error_class;
use bridge_shared::json::Node;
use bridge_shared::message::{ArchivePointer, MESSAGE_VERSION, RoutedMessage, idempotency_key};
use bridge_shared::rules::{Approval, Decision};
use bridge_tests::{Emulator, shared_emulator, unique_name};
use dispatch::config::Config;
use dispatch::handler::{build_engine, handle};
use serde_json::{Value, json};
use tokio::time::Instant;

const DOCUMENTED: &str = include_str!("../../../tests/fixtures/recordengine/document-exported.json");
const REALM: &str = "9130355377";
const TENANT: &str = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";

/// The AWS resources of one test, with unique names on the shared emulator.
struct Stack {
    emulator: &'static Emulator,
    table: String,
    bucket: String,
    queue_url: String,
    dead_letter_url: String,
}

impl Stack {
    async fn create() -> Stack {
        let emulator = shared_emulator();
        let table = unique_name("documents");
        let bucket = unique_name("archive");
        emulator.create_table(&table, true).await;
        emulator.create_bucket(&bucket).await;
        let queue_url = emulator.create_queue(&unique_name("dispatch")).await;
        let dead_letter_url = emulator.create_queue(&unique_name("dispatch-dlq")).await;
        Stack {
            emulator,
            table,
            bucket,
            queue_url,
            dead_letter_url,
        }
    }

    async fn secret(&self, value: &str) -> String {
        self.emulator.create_secret(&unique_name("credentials"), value).await
    }

    fn config(&self, destination: &str, base_url: &str, token_url: Option<&str>, secret: Option<&str>) -> Config {
        Config {
            destination: destination.into(),
            document_table: self.table.clone(),
            queue_url: self.queue_url.clone(),
            dead_letter_queue_url: self.dead_letter_url.clone(),
            destinations_source: None,
            overrides: Overrides {
                base_url: Some(base_url.into()),
                token_url: token_url.map(str::to_owned),
                wecom_base_url: Some(base_url.into()),
            },
            credentials_secret: secret.map(str::to_owned),
            wecom_secret: secret.map(str::to_owned),
            locale: AlertLocale::ZhCn,
            email_from: None,
            email_to: Vec::new(),
            concurrency: 4,
            deadline_margin: Duration::from_secs(2),
            http_timeout: Duration::from_secs(10),
            max_attempts: 8,
            loopback_only: true,
        }
    }

    fn engine(&self, config: &Config, settings: &str) -> Engine {
        let file = DestinationsFile::from_yaml(settings, "test").expect("test settings parse");
        build_engine(config, &self.emulator.clients(), &file).expect("engine builds")
    }

    fn store(&self) -> DynamoVersionedStore {
        DynamoVersionedStore::new(self.emulator.clients().dynamodb, &self.table)
    }

    async fn send(&self, body: &str) {
        self.emulator
            .clients()
            .sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send message");
    }

    /// Receives up to ten visible messages as a Lambda SQS event.
    async fn receive(&self) -> SqsEvent {
        receive_event(self.emulator, &self.queue_url).await
    }

    /// Deletes the messages a batch did not report as failed, as Lambda does.
    async fn settle(&self, event: &SqsEvent, report: &BatchReport) {
        let failed = report.failed_ids();
        let sqs = self.emulator.clients().sqs;
        for record in &event.records {
            let id = record.message_id.clone().unwrap_or_default();
            if failed.contains(&id) {
                continue;
            }
            sqs.delete_message()
                .queue_url(&self.queue_url)
                .set_receipt_handle(record.receipt_handle.clone())
                .send()
                .await
                .expect("delete message");
        }
    }

    async fn run(&self, engine: &Engine, event: &SqsEvent) -> BatchReport {
        let report = engine.handle(event, Instant::now() + Duration::from_secs(60)).await;
        self.settle(event, &report).await;
        report
    }

    async fn dead_letters(&self) -> Vec<SqsMessage> {
        receive_event(self.emulator, &self.dead_letter_url).await.records
    }

    async fn delete_item(&self, pk: &str, sk: &str) {
        self.emulator
            .clients()
            .dynamodb
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .send()
            .await
            .expect("delete item");
    }
}

async fn receive_event(emulator: &Emulator, queue_url: &str) -> SqsEvent {
    let response = emulator
        .clients()
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(0)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive messages");
    let mut event = SqsEvent::default();
    for message in response.messages.unwrap_or_default() {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id.clone();
        record.receipt_handle = message.receipt_handle.clone();
        record.body = message.body.clone();
        for (name, value) in message.message_attributes.unwrap_or_default() {
            let mut attribute = SqsMessageAttribute::default();
            attribute.string_value = value.string_value.clone();
            attribute.data_type = Some(value.data_type.clone());
            record.message_attributes.insert(name, attribute);
        }
        event.records.push(record);
    }
    event
}

/// Builds a routed message for the documented export with edits applied.
fn routed(destination: &str, document_id: i64, approval: Approval, edit: impl FnOnce(&mut Value)) -> RoutedMessage {
    let mut payload: Value = serde_json::from_str(DOCUMENTED).unwrap();
    payload["id"] = json!(document_id);
    edit(&mut payload);
    let fingerprint = format!("{:064x}", document_id);
    RoutedMessage {
        message_version: MESSAGE_VERSION,
        document_id,
        fingerprint: fingerprint.clone(),
        destination: destination.into(),
        idempotency_key: idempotency_key(document_id, &fingerprint, destination),
        approval,
        decision: Decision {
            ruleset_version: "2026-12-04.1".into(),
            rules_fired: vec!["approval-required".into()],
            routes: Vec::new(),
            annotations: Vec::new(),
        },
        origin: None,
        archive: ArchivePointer {
            bucket: "archive".into(),
            key: format!("raw/2026/12/04/{document_id}.json"),
        },
        received_at: "2026-12-04T08:00:00Z".into(),
        payload: Some(Node::parse(&payload.to_string()).unwrap()),
    }
}

fn body(message: &RoutedMessage) -> String {
    serde_json::to_string(message).unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get_text(url: &str) -> String {
    http()
        .get(url)
        .bearer_auth("test-reader")
        .send()
        .await
        .expect("sink answers")
        .text()
        .await
        .expect("sink body")
}

async fn get_json(url: &str) -> Value {
    serde_json::from_str(&get_text(url).await).expect("sink answers JSON")
}

async fn inject(sink: &ServerHandle, fault: Value) {
    let response = http().post(sink.url("/_faults")).json(&fault).send().await.unwrap();
    assert!(response.status().is_success(), "fault accepted: {}", response.status());
}

/// Requests the sink recorded with this method and path prefix.
async fn requests(sink: &ServerHandle, method: &str, path_prefix: &str) -> Vec<Value> {
    get_json(&sink.url("/_requests")).await["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|request| request["method"] == method && request["path"].as_str().unwrap().starts_with(path_prefix))
        .cloned()
        .collect()
}

fn quickbooks_secret() -> String {
    json!({
        "client_id": "qb-client",
        "client_secret": "qb-client-secret",
        "refresh_token": "qb-refresh",
        "access_token": "qb-access",
        "access_token_expires_at": chrono::Utc::now().timestamp() + 3600,
        "realm_id": REALM,
    })
    .to_string()
}

fn quickbooks_settings() -> String {
    "version: test\ndestinations:\n  accounting:\n    kind: quickbooks\n    base_url: x\n    token_url: x\n    \
     expense_account_id: \"7\"\n    default_vendor_id: \"56\"\n"
        .to_owned()
}

fn xero_secret(expires_in: i64) -> String {
    json!({
        "client_id": "xero-client",
        "client_secret": "xero-client-secret",
        "refresh_token": "xero-seed-refresh",
        "access_token": "xero-access",
        "access_token_expires_at": chrono::Utc::now().timestamp() + expires_in,
        "tenant_id": TENANT,
    })
    .to_string()
}

fn xero_settings() -> String {
    "version: test\ndestinations:\n  accounting:\n    kind: xero\n    base_url: x\n    token_url: x\n    account_code: \"400\"\n"
        .to_owned()
}

fn generic_settings() -> String {
    "version: test\ndestinations:\n  china-accounting:\n    kind: http_json\n    url: x\n    headers:\n      \
     Authorization: \"Bearer {secret}\"\n"
        .to_owned()
}

fn alerts_settings() -> String {
    "version: test\ndestinations:\n  alerts:\n    kind: alerts\n".to_owned()
}

/// Bills in one QuickBooks realm, read through the sink's query endpoint.
async fn quickbooks_bills(sink: &ServerHandle) -> Vec<Value> {
    let url = format!(
        "{}?query={}",
        sink.url(&format!("/v3/company/{REALM}/query")),
        "select%20*%20from%20Bill"
    );
    get_json(&url).await["QueryResponse"]["Bill"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn quickbooks_stack() -> (Stack, ServerHandle, Engine) {
    let stack = Stack::create().await;
    let sink = start_quickbooks(QuickBooksConfig::default()).await.unwrap();
    let secret = stack.secret(&quickbooks_secret()).await;
    let config = stack.config(
        "accounting",
        sink.base_url(),
        Some(&sink.url("/oauth2/v1/tokens/bearer")),
        Some(&secret),
    );
    let engine = stack.engine(&config, &quickbooks_settings());
    (stack, sink, engine)
}

#[tokio::test]
async fn batch_of_three_fails_only_the_second() {
    let stack = Stack::create().await;
    let sink = start_generic(GenericConfig::default()).await.unwrap();
    let secret = stack.secret("generic-token").await;
    let mut config = stack.config("china-accounting", &sink.url("/api/bills"), None, Some(&secret));
    config.concurrency = 1;
    let engine = stack.engine(&config, &generic_settings());
    inject(&sink, json!({"status": 0, "times": 1})).await;
    inject(&sink, json!({"status": 500, "times": 1})).await;
    let messages: Vec<RoutedMessage> = (101..104)
        .map(|id| routed("china-accounting", id, Approval::Required, |_| {}))
        .collect();
    for message in &messages {
        stack.send(&body(message)).await;
    }
    let event = stack.receive().await;
    assert_eq!(event.records.len(), 3);

    let deadline_ms = (chrono::Utc::now().timestamp_millis() + 60_000) as u64;
    let response = handle(&engine, &event, deadline_ms).await;

    assert_eq!(response.batch_item_failures.len(), 1, "{response:?}");
    let second = event.records[1].message_id.clone().unwrap();
    assert_eq!(response.batch_item_failures[0].item_identifier, second);
    let created = get_json(&sink.url("/api/bills")).await["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(created, 2);
    let posted = requests(&sink, "POST", "/api/bills").await;
    assert!(
        posted
            .iter()
            .all(|request| request["headers"]["idempotency-key"].as_str().unwrap().len() == 40),
        "every request carries the idempotency key"
    );
    let failed_body: RoutedMessage = serde_json::from_str(event.records[1].body.as_deref().unwrap()).unwrap();
    let record = get_dispatch(&stack.store(), &failed_body.idempotency_key)
        .await
        .unwrap()
        .expect("the failed message has a dispatch record");
    assert_eq!(record.status, dispatch_status::RETRY);
    assert_eq!(record.error_class.as_deref(), Some(error_class::RETRYABLE));
    assert!(record.last_error.as_deref().unwrap().contains("HTTP 500"), "{record:?}");
    // The failed message is invisible for its backoff, not back at once.
    assert!(stack.receive().await.records.is_empty());
}

#[tokio::test]
async fn redeliveries_and_redrive_create_one_bill() {
    let (stack, sink, engine) = quickbooks_stack().await;
    let message = routed("accounting", 201, Approval::Required, |_| {});
    for _ in 0..3 {
        stack.send(&body(&message)).await;
    }

    let event = stack.receive().await;
    assert_eq!(event.records.len(), 3);
    let report = stack.run(&engine, &event).await;
    assert!(report.failed_ids().is_empty(), "{report:?}");

    // The same body again, as a redrive from the dead-letter queue sends it.
    stack.send(&body(&message)).await;
    let redriven = stack.receive().await;
    let report = stack.run(&engine, &redriven).await;
    assert!(
        matches!(report.outcomes[0].disposition, Disposition::Duplicate { .. }),
        "{report:?}"
    );

    assert_eq!(quickbooks_bills(&sink).await.len(), 1);
    let creates = requests(&sink, "POST", &format!("/v3/company/{REALM}/bill")).await;
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["query"]["requestid"], message.idempotency_key.as_str());

    // Without its dispatch record, the message still creates nothing new:
    // QuickBooks replays the first response to the same requestid.
    stack
        .delete_item(&format!("dispatch#{}", message.idempotency_key), "dispatch")
        .await;
    stack.send(&body(&message)).await;
    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;
    assert!(
        matches!(report.outcomes[0].disposition, Disposition::Delivered { .. }),
        "{report:?}"
    );
    assert_eq!(quickbooks_bills(&sink).await.len(), 1);

    let record = get_dispatch(&stack.store(), &message.idempotency_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, dispatch_status::DONE);
    assert_eq!(record.remote_id.as_deref(), Some("1"));
}

#[tokio::test]
async fn simultaneous_copies_create_one_bill() {
    let (stack, sink, engine) = quickbooks_stack().await;
    let secret = stack.secret(&quickbooks_secret()).await;
    let config = stack.config("accounting", sink.base_url(), None, Some(&secret));
    let other_engine = stack.engine(&config, &quickbooks_settings());
    // The first create takes 500 ms, so both copies are in flight together.
    inject(&sink, json!({"status": 0, "delay_ms": 500, "times": 1})).await;
    let message = routed("accounting", 202, Approval::Required, |_| {});
    stack.send(&body(&message)).await;
    stack.send(&body(&message)).await;
    let both = stack.receive().await;
    assert_eq!(both.records.len(), 2);
    let mut first = SqsEvent::default();
    first.records = vec![both.records[0].clone()];
    let mut second = SqsEvent::default();
    second.records = vec![both.records[1].clone()];

    let (report_a, report_b) = tokio::join!(stack.run(&engine, &first), stack.run(&other_engine, &second));

    assert_eq!(quickbooks_bills(&sink).await.len(), 1);
    let outcomes = [&report_a.outcomes[0].disposition, &report_b.outcomes[0].disposition];
    let delivered = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Disposition::Delivered { .. }))
        .count();
    assert_eq!(delivered, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|outcome| matches!(outcome, Disposition::Deferred { .. } | Disposition::Duplicate { .. })),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn quickbooks_429_waits_retry_after() {
    let (stack, sink, engine) = quickbooks_stack().await;
    inject(&sink, json!({"status": 429, "retry_after": "37"})).await;
    let message = routed("accounting", 203, Approval::Required, |_| {});
    stack.send(&body(&message)).await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    let Disposition::Deferred { delay, reason } = &report.outcomes[0].disposition else {
        panic!("a 429 defers the message: {report:?}");
    };
    assert!(*delay >= Duration::from_secs(37), "{delay:?}");
    assert!(reason.contains("429"), "{reason}");
    assert!(
        report.failed_ids().is_empty(),
        "the original is acknowledged; a delayed copy replaces it"
    );
    assert!(
        stack.receive().await.records.is_empty(),
        "the copy is not visible before its delay"
    );
    let record = get_dispatch(&stack.store(), &message.idempotency_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.attempts, 0, "throttling is not a failed attempt");

    // 37 s later the account's budget opens again and the copy arrives.
    stack.delete_item(&format!("budget#quickbooks#{REALM}"), "budget").await;
    stack.send(&body(&message)).await;
    let later = stack.receive().await;
    let report = stack.run(&engine, &later).await;
    assert!(
        matches!(report.outcomes[0].disposition, Disposition::Delivered { .. }),
        "{report:?}"
    );
    assert_eq!(quickbooks_bills(&sink).await.len(), 1);
}

async fn xero_stack(expires_in: i64) -> (Stack, ServerHandle, String) {
    let stack = Stack::create().await;
    let sink = start_xero(XeroConfig::default()).await.unwrap();
    let secret = stack.secret(&xero_secret(expires_in)).await;
    (stack, sink, secret)
}

/// Bills in the test tenant; `token` must be one the sink issued once it is seeded.
async fn xero_invoices(sink: &ServerHandle, token: &str) -> Vec<Value> {
    let response = http()
        .get(sink.url("/api.xro/2.0/Invoices"))
        .bearer_auth(token)
        .header("xero-tenant-id", TENANT)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["Invoices"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn xero_429_waits_retry_after() {
    let (stack, sink, secret) = xero_stack(3600).await;
    let config = stack.config(
        "accounting",
        sink.base_url(),
        Some(&sink.url("/connect/token")),
        Some(&secret),
    );
    let engine = stack.engine(&config, &xero_settings());
    inject(&sink, json!({"status": 429, "retry_after": "37"})).await;
    let message = routed("accounting", 301, Approval::Skip, |_| {});
    stack.send(&body(&message)).await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    let Disposition::Deferred { delay, .. } = &report.outcomes[0].disposition else {
        panic!("a 429 defers the message: {report:?}");
    };
    assert!(*delay >= Duration::from_secs(37), "{delay:?}");
    assert!(stack.receive().await.records.is_empty());

    stack.delete_item(&format!("budget#xero#{TENANT}"), "budget").await;
    stack.send(&body(&message)).await;
    let later = stack.receive().await;
    let report = stack.run(&engine, &later).await;
    assert!(
        matches!(report.outcomes[0].disposition, Disposition::Delivered { .. }),
        "{report:?}"
    );
    let invoices = xero_invoices(&sink, "test-reader").await;
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0]["Type"], "ACCPAY");
    assert_eq!(invoices[0]["Status"], "AUTHORISED", "approval skipped");
    let puts = requests(&sink, "PUT", "/api.xro/2.0/Invoices").await;
    assert_eq!(puts.len(), 2);
    assert_eq!(puts[1]["headers"]["idempotency-key"], message.idempotency_key.as_str());
}

#[tokio::test]
async fn xero_has_errors_is_permanent() {
    let (stack, sink, secret) = xero_stack(3600).await;
    let config = stack.config("accounting", sink.base_url(), None, Some(&secret));
    let engine = stack.engine(&config, &xero_settings());
    inject(
        &sink,
        json!({"status": 200, "body": {"Invoices": [{
            "InvoiceID": "00000000-0000-0000-0000-000000000000",
            "HasErrors": true,
            "ValidationErrors": [{"Message": "Account code '400' is not a valid code for this document."}]
        }]}}),
    )
    .await;
    let message = routed("accounting", 302, Approval::Required, |_| {});
    stack.send(&body(&message)).await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    let Disposition::DeadLettered { class, error } = &report.outcomes[0].disposition else {
        panic!("HasErrors is permanent: {report:?}");
    };
    assert_eq!(*class, error_class::PERMANENT);
    assert!(error.contains("Account code '400'"), "{error}");
    let dead = stack.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body.as_deref(), Some(body(&message).as_str()));
    let attributes = &dead[0].message_attributes;
    assert_eq!(
        attributes[attribute::ERROR_CLASS].string_value.as_deref(),
        Some(error_class::PERMANENT)
    );
    assert!(
        attributes[attribute::ERROR]
            .string_value
            .as_deref()
            .unwrap()
            .contains("Account code")
    );
    let record = get_dispatch(&stack.store(), &message.idempotency_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, dispatch_status::FAILED);
    assert_eq!(record.remote_id, None, "no invoice id is stored");
    assert_eq!(record.error_class.as_deref(), Some(error_class::PERMANENT));
    assert!(xero_invoices(&sink, "test-reader").await.is_empty());
}

#[tokio::test]
async fn concurrent_xero_refresh_happens_once() {
    // The stored access token expires within the refresh margin.
    let (stack, sink, secret) = xero_stack(60).await;
    let seed = http()
        .post(sink.url("/_oauth/seed"))
        .json(&json!({"refresh_token": "xero-seed-refresh"}))
        .send()
        .await
        .unwrap();
    assert!(seed.status().is_success());
    let config = stack.config(
        "accounting",
        sink.base_url(),
        Some(&sink.url("/connect/token")),
        Some(&secret),
    );
    let first = stack.engine(&config, &xero_settings());
    let second = stack.engine(&config, &xero_settings());
    let mut event_a = SqsEvent::default();
    let mut event_b = SqsEvent::default();
    for (event, id) in [(&mut event_a, 303), (&mut event_b, 304)] {
        stack
            .send(&body(&routed("accounting", id, Approval::Required, |_| {})))
            .await;
        *event = stack.receive().await;
    }

    let (report_a, report_b) = tokio::join!(stack.run(&first, &event_a), stack.run(&second, &event_b));

    for report in [&report_a, &report_b] {
        assert!(
            matches!(report.outcomes[0].disposition, Disposition::Delivered { .. }),
            "{report:?}"
        );
    }
    let stats = get_json(&sink.url("/_stats")).await;
    assert_eq!(stats["oauth"]["refreshes"], 1, "{stats}");
    assert_eq!(stats["oauth"]["rejected_refreshes"], 0, "{stats}");
    let stored: Value = serde_json::from_str(
        &stack
            .emulator
            .clients()
            .secrets
            .get_secret_value()
            .secret_id(&secret)
            .send()
            .await
            .unwrap()
            .secret_string
            .unwrap(),
    )
    .unwrap();
    assert_ne!(
        stored["refresh_token"], "xero-seed-refresh",
        "the rotated refresh token is stored"
    );
    assert!(stored["access_token_expires_at"].as_i64().unwrap() > chrono::Utc::now().timestamp() + 600);
    let token = stored["access_token"].as_str().unwrap();
    assert_eq!(xero_invoices(&sink, token).await.len(), 2);
}

async fn alerts_stack() -> (Stack, ServerHandle, Engine) {
    let stack = Stack::create().await;
    let sink = start_wecom(WeComConfig::default()).await.unwrap();
    let secret = stack.secret(r#"{"key": "robot-key-0001"}"#).await;
    let config = stack.config("alerts", sink.base_url(), None, Some(&secret));
    let engine = stack.engine(&config, &alerts_settings());
    (stack, sink, engine)
}

#[tokio::test]
async fn wecom_45009_waits_a_minute() {
    let (stack, sink, engine) = alerts_stack().await;
    inject(&sink, json!({"errcode": 45009})).await;
    let alert = OperationalAlert::new("upload_failed", "error", "wecom-45009").param("error", "HTTP 500");
    stack.send(&serde_json::to_string(&alert).unwrap()).await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    let Disposition::Deferred { delay, reason } = &report.outcomes[0].disposition else {
        panic!("45009 waits: {report:?}");
    };
    assert!(*delay >= Duration::from_secs(60), "{delay:?}");
    assert!(reason.contains("45009"), "{reason}");
    assert!(stack.receive().await.records.is_empty());
}

#[tokio::test]
async fn wecom_93000_is_permanent() {
    let (stack, sink, engine) = alerts_stack().await;
    inject(&sink, json!({"errcode": 93000})).await;
    let alert = OperationalAlert::new("upload_failed", "error", "wecom-93000").param("error", "HTTP 500");
    stack.send(&serde_json::to_string(&alert).unwrap()).await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    let Disposition::DeadLettered { class, error } = &report.outcomes[0].disposition else {
        panic!("93000 is permanent: {report:?}");
    };
    assert_eq!(*class, error_class::PERMANENT);
    assert!(error.contains("93000"), "{error}");
    assert!(
        !error.contains("robot-key-0001"),
        "the key never appears in an error: {error}"
    );
    assert_eq!(stack.dead_letters().await.len(), 1);
}

#[tokio::test]
async fn chinese_alert_fits_markdown_limit() {
    let (stack, sink, engine) = alerts_stack().await;
    let long_error = "金额与明细不符".repeat(200);
    assert_eq!(long_error.chars().count(), 1400);
    let alert = OperationalAlert::new("dispatch_failed", "error", "long-chinese")
        .param("destination", "china-accounting")
        .param("document_id", "847")
        .param("error_class", "permanent")
        .param("error", long_error);
    stack.send(&serde_json::to_string(&alert).unwrap()).await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    assert!(
        matches!(report.outcomes[0].disposition, Disposition::Delivered { .. }),
        "{report:?}"
    );
    let messages = get_json(&sink.url("/_messages")).await;
    let message = &messages["messages"][0];
    assert_eq!(message["errcode"], 0, "{message}");
    assert_eq!(message["msgtype"], "markdown");
    let content = message["content"].as_str().unwrap();
    assert!(content.len() <= 4096, "{} bytes", content.len());
    assert!(message["bytes"].as_u64().unwrap() <= 4096);
    assert!(content.ends_with('…'));
    assert!(
        content.starts_with("### [错误] 发送到 china-accounting 失败"),
        "{content}"
    );
}

#[tokio::test]
async fn low_confidence_document_alert_links_the_document() {
    let (stack, sink, engine) = alerts_stack().await;
    let mut message = routed("alerts", 401, Approval::Required, |payload| {
        payload["confidence_score"] = json!(42);
        payload["confidence_reasoning"] = json!("Vendor name unclear on the scan.");
    });
    message.decision.rules_fired = vec!["low-confidence".into()];
    stack.send(&body(&message)).await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    assert!(
        matches!(report.outcomes[0].disposition, Disposition::Delivered { .. }),
        "{report:?}"
    );
    let messages = get_json(&sink.url("/_messages")).await;
    let content = messages["messages"][0]["content"].as_str().unwrap().to_owned();
    for expected in [
        "识别置信度低",
        "#401",
        "Acme Corporation",
        "18500.00 CNY",
        "42 / 100",
        "Vendor name unclear on the scan.",
        "https://YOUR-INSTANCE/documents/847",
    ] {
        assert!(content.contains(expected), "missing {expected}: {content}");
    }
}

#[tokio::test]
async fn empty_line_items_book_one_total_line() {
    let (stack, sink, engine) = quickbooks_stack().await;
    let message = routed("accounting", 204, Approval::Required, |payload| {
        payload["line_items"] = json!([]);
    });
    stack.send(&body(&message)).await;

    let event = stack.receive().await;
    stack.run(&engine, &event).await;

    let bills = quickbooks_bills(&sink).await;
    assert_eq!(bills.len(), 1);
    let lines = bills[0]["Line"].as_array().unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["Amount"].to_string(), "18500.0");
    assert_eq!(lines[0]["DetailType"], "AccountBasedExpenseLineDetail");
    assert_eq!(bills[0]["DocNumber"], "INV-2025-1147");
    assert_eq!(bills[0]["VendorRef"]["value"], "56");
    assert_eq!(bills[0]["CurrencyRef"]["value"], "CNY");
}

#[tokio::test]
async fn tenths_add_up_to_thirty_cents() {
    let (stack, sink, engine) = quickbooks_stack().await;
    let message = routed("accounting", 205, Approval::Required, |payload| {
        payload["line_items"] = json!([{"description": "a", "amount": "0.1"}, {"description": "b", "amount": "0.2"}]);
        payload["extracted_fields"]["tax"] = Value::Null;
        payload["extracted_fields"]["total_amount"] = json!("0.3");
    });
    stack.send(&body(&message)).await;

    let event = stack.receive().await;
    stack.run(&engine, &event).await;

    // Read the bill as text so that its amounts are compared as written.
    let url = format!(
        "{}?query={}",
        sink.url(&format!("/v3/company/{REALM}/query")),
        "select%20*%20from%20Bill"
    );
    let text = get_text(&url).await;
    let tree = Node::parse(&text).unwrap();
    let Some(Node::Array(bills)) = tree.get("QueryResponse").and_then(|response| response.get("Bill")) else {
        panic!("one bill: {text}");
    };
    assert_eq!(bills.len(), 1);
    let total: rust_decimal::Decimal = match bills[0].get("TotalAmt") {
        Some(Node::Number(number)) => number.parse().unwrap(),
        other => panic!("TotalAmt is a number: {other:?}"),
    };
    assert_eq!(total, "0.30".parse().unwrap());
    let creates = requests(&sink, "POST", &format!("/v3/company/{REALM}/bill")).await;
    let sent = serde_json::to_string(&creates[0]["body"]["Line"]).unwrap();
    assert!(sent.contains("0.1") && sent.contains("0.2"), "{sent}");
}

#[tokio::test]
async fn slow_destination_leaves_rest_for_next_invocation() {
    let stack = Stack::create().await;
    let sink = start_generic(GenericConfig::default()).await.unwrap();
    let secret = stack.secret("generic-token").await;
    let mut config = stack.config("china-accounting", &sink.url("/api/bills"), None, Some(&secret));
    config.concurrency = 1;
    config.deadline_margin = Duration::from_millis(1000);
    let engine = stack.engine(&config, &generic_settings());
    inject(&sink, json!({"status": 0, "delay_ms": 1500, "times": 1})).await;
    for id in 501..504 {
        stack
            .send(&body(&routed("china-accounting", id, Approval::Required, |_| {})))
            .await;
    }
    let event = stack.receive().await;
    assert_eq!(event.records.len(), 3);

    let report = engine
        .handle(&event, Instant::now() + Duration::from_millis(2500))
        .await;

    assert!(
        matches!(report.outcomes[0].disposition, Disposition::Delivered { .. }),
        "{report:?}"
    );
    assert_eq!(report.outcomes[1].disposition, Disposition::Untouched);
    assert_eq!(report.outcomes[2].disposition, Disposition::Untouched);
    assert_eq!(report.failed_ids().len(), 2);
    stack.settle(&event, &report).await;

    // The whole batch comes back (the first as a duplicate delivery of SQS).
    let again = engine.handle(&event, Instant::now() + Duration::from_secs(60)).await;
    assert!(again.failed_ids().is_empty(), "{again:?}");
    assert!(matches!(again.outcomes[0].disposition, Disposition::Duplicate { .. }));
    let items = get_json(&sink.url("/api/bills")).await["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(items, 3);
    assert_eq!(
        requests(&sink, "POST", "/api/bills").await.len(),
        3,
        "no record was sent twice"
    );
}

#[tokio::test]
async fn hubspot_updates_the_named_record() {
    let stack = Stack::create().await;
    let sink = start_hubspot(HubSpotConfig::default()).await.unwrap();
    let secret = stack.secret("pat-na1-test-token").await;
    let config = stack.config("crm", sink.base_url(), None, Some(&secret));
    let settings = "version: test\ndestinations:\n  crm:\n    kind: hubspot\n    base_url: x\n    properties:\n      \
                    recordengine_document_id: document_id\n      recordengine_invoice_total: total_amount\n";
    let engine = stack.engine(&config, settings);
    let message = routed("crm", 601, Approval::Required, |payload| {
        payload["external_refs"]["hubspot"] = json!({"record_id": "12345678901", "record_type": "Deal"});
    });
    let without_ref = routed("crm", 602, Approval::Required, |_| {});
    stack.send(&body(&message)).await;
    stack.send(&body(&without_ref)).await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    let patches = requests(&sink, "PATCH", "/crm/v3/objects/deals/12345678901").await;
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0]["body"]["properties"]["recordengine_document_id"], "601");
    assert_eq!(
        patches[0]["body"]["properties"]["recordengine_invoice_total"],
        "18500.00"
    );
    let dead: Vec<&Disposition> = report
        .outcomes
        .iter()
        .map(|outcome| &outcome.disposition)
        .filter(|disposition| matches!(disposition, Disposition::DeadLettered { .. }))
        .collect();
    assert_eq!(dead.len(), 1, "the message without external_refs.hubspot: {report:?}");
}

#[tokio::test]
async fn large_payload_is_read_from_the_archive() {
    let (stack, sink, engine) = quickbooks_stack().await;
    let mut message = routed("accounting", 206, Approval::Required, |_| {});
    message.archive = ArchivePointer {
        bucket: stack.bucket.clone(),
        key: "raw/2026/12/04/206.json".into(),
    };
    let payload = message.payload.take().unwrap();
    stack
        .emulator
        .clients()
        .s3
        .put_object()
        .bucket(&stack.bucket)
        .key(&message.archive.key)
        .body(payload.to_canonical_string().into_bytes().into())
        .send()
        .await
        .unwrap();
    stack.send(&body(&message)).await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    assert!(
        matches!(report.outcomes[0].disposition, Disposition::Delivered { .. }),
        "{report:?}"
    );
    assert_eq!(quickbooks_bills(&sink).await.len(), 1);
}

#[tokio::test]
async fn loopback_guard_rejects_real_hosts() {
    let stack = Stack::create().await;
    let secret = stack.secret(&quickbooks_secret()).await;
    // A documentation address (RFC 5737), so that a failing guard reaches no real service.
    let config = stack.config("accounting", "https://192.0.2.1", None, Some(&secret));
    let engine = stack.engine(&config, &quickbooks_settings());
    stack
        .send(&body(&routed("accounting", 207, Approval::Required, |_| {})))
        .await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    let Disposition::DeadLettered { error, .. } = &report.outcomes[0].disposition else {
        panic!("{report:?}");
    };
    assert!(error.contains("BRIDGE_LOOPBACK_ONLY=1"), "{error}");
}

#[tokio::test]
async fn timeline_shows_the_destination_result() {
    let (stack, _sink, engine) = quickbooks_stack().await;
    stack
        .send(&body(&routed("accounting", 208, Approval::Required, |_| {})))
        .await;

    let event = stack.receive().await;
    stack.run(&engine, &event).await;

    let documents = bridge_shared::aws::DynamoDocumentStore::new(stack.emulator.clients().dynamodb, &stack.table);
    let view = bridge_shared::ports::DocumentStore::document_view(&documents, 208)
        .await
        .unwrap();
    assert_eq!(view.timeline.len(), 1);
    assert_eq!(view.timeline[0].kind, "delivered");
    assert_eq!(view.timeline[0].destination.as_deref(), Some("accounting"));
    assert!(view.timeline[0].detail.contains("Bill"), "{:?}", view.timeline[0]);
    assert!(view.timeline[0].data.as_deref().unwrap().contains("\"remote_id\""));
}

#[tokio::test]
async fn quickbooks_401_refreshes_once() {
    let (stack, sink, engine) = quickbooks_stack().await;
    // After seeding, the stored access token is unknown to the sink and gets a 401.
    let seed = http()
        .post(sink.url("/_oauth/seed"))
        .json(&json!({"refresh_token": "qb-refresh"}))
        .send()
        .await
        .unwrap();
    assert!(seed.status().is_success());
    let message = routed("accounting", 209, Approval::Required, |_| {});
    stack.send(&body(&message)).await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    assert!(
        matches!(report.outcomes[0].disposition, Disposition::Delivered { .. }),
        "{report:?}"
    );
    let stats = get_json(&sink.url("/_stats")).await;
    assert_eq!(stats["oauth"]["refreshes"], 1, "{stats}");
    let creates = requests(&sink, "POST", &format!("/v3/company/{REALM}/bill")).await;
    assert_eq!(creates.len(), 2, "one 401, then one create with the new token");
    assert_eq!(creates[0]["response_status"], 401);
    assert_eq!(creates[1]["response_status"], 200);
}

#[tokio::test]
async fn xero_invalid_grant_is_permanent() {
    let (stack, sink, secret) = xero_stack(60).await;
    // The sink only accepts a refresh token the stored one is not.
    let seed = http()
        .post(sink.url("/_oauth/seed"))
        .json(&json!({"refresh_token": "some-other-refresh-token"}))
        .send()
        .await
        .unwrap();
    assert!(seed.status().is_success());
    let config = stack.config(
        "accounting",
        sink.base_url(),
        Some(&sink.url("/connect/token")),
        Some(&secret),
    );
    let engine = stack.engine(&config, &xero_settings());
    stack
        .send(&body(&routed("accounting", 305, Approval::Required, |_| {})))
        .await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    let Disposition::DeadLettered { class, error } = &report.outcomes[0].disposition else {
        panic!("invalid_grant needs a person: {report:?}");
    };
    assert_eq!(*class, error_class::PERMANENT);
    assert!(error.contains("invalid_grant"), "{error}");
    assert!(error.contains("authorise the app again"), "{error}");
    assert!(!error.contains("xero-seed-refresh"), "no token in the error: {error}");
}

#[tokio::test]
async fn alert_email_goes_through_ses() {
    let stack = Stack::create().await;
    let clients = stack.emulator.clients();
    for identity in ["alerts@bridge.test", "ops@bridge.test"] {
        clients
            .ses
            .create_email_identity()
            .email_identity(identity)
            .send()
            .await
            .expect("create SES identity");
    }
    let mut config = stack.config("alerts", "http://127.0.0.1:9", None, None);
    config.wecom_secret = None;
    config.email_from = Some("alerts@bridge.test".into());
    config.email_to = vec!["ops@bridge.test".into()];
    config.locale = AlertLocale::En;
    let engine = stack.engine(&config, &alerts_settings());
    let alert = OperationalAlert::new("recordengine_unauthorized", "error", "email-1").param("error", "HTTP 401");
    stack.send(&serde_json::to_string(&alert).unwrap()).await;

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    let Disposition::Delivered { remote_id } = &report.outcomes[0].disposition else {
        panic!("{report:?}");
    };
    assert_eq!(remote_id, "email");
    let sent = get_json(&format!("{}/_ministack/ses/messages", stack.emulator.url())).await;
    let text = sent.to_string();
    assert!(text.contains("RecordEngine rejected the API token"), "{text}");
    assert!(text.contains("ops@bridge.test"), "{text}");
}

#[tokio::test]
async fn quickbooks_timeout_is_looked_up_before_create() {
    let stack = Stack::create().await;
    let sink = start_quickbooks(QuickBooksConfig::default()).await.unwrap();
    let secret = stack.secret(&quickbooks_secret()).await;
    let mut config = stack.config("accounting", sink.base_url(), None, Some(&secret));
    config.http_timeout = Duration::from_millis(500);
    let engine = stack.engine(&config, &quickbooks_settings());
    // The sink creates the bill but responds after the client gave up.
    inject(&sink, json!({"status": 0, "delay_ms": 1500, "times": 1})).await;
    stack
        .send(&body(&routed("accounting", 210, Approval::Required, |_| {})))
        .await;
    let event = stack.receive().await;

    let first = engine.handle(&event, Instant::now() + Duration::from_secs(60)).await;
    let second = engine.handle(&event, Instant::now() + Duration::from_secs(60)).await;

    let Disposition::Retry { class, .. } = &first.outcomes[0].disposition else {
        panic!("a timeout after sending is retried: {first:?}");
    };
    assert_eq!(*class, error_class::AMBIGUOUS);
    assert!(
        matches!(second.outcomes[0].disposition, Disposition::Delivered { .. }),
        "{second:?}"
    );
    assert_eq!(quickbooks_bills(&sink).await.len(), 1);
    let queries = requests(&sink, "GET", &format!("/v3/company/{REALM}/query")).await;
    assert!(
        queries[0]["query"]["query"]
            .as_str()
            .unwrap()
            .contains("DocNumber = 'INV-2025-1147'"),
        "{queries:?}"
    );
    assert_eq!(
        requests(&sink, "POST", &format!("/v3/company/{REALM}/bill"))
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn xero_timeout_is_looked_up_before_create() {
    let (stack, sink, secret) = xero_stack(3600).await;
    let mut config = stack.config("accounting", sink.base_url(), None, Some(&secret));
    config.http_timeout = Duration::from_millis(500);
    let engine = stack.engine(&config, &xero_settings());
    inject(&sink, json!({"status": 0, "delay_ms": 1500, "times": 1})).await;
    stack
        .send(&body(&routed("accounting", 306, Approval::Required, |_| {})))
        .await;
    let event = stack.receive().await;

    let first = engine.handle(&event, Instant::now() + Duration::from_secs(60)).await;
    let second = engine.handle(&event, Instant::now() + Duration::from_secs(60)).await;

    assert!(
        matches!(first.outcomes[0].disposition, Disposition::Retry { .. }),
        "{first:?}"
    );
    let Disposition::Delivered { remote_id } = &second.outcomes[0].disposition else {
        panic!("{second:?}");
    };
    let invoices = xero_invoices(&sink, "test-reader").await;
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0]["InvoiceID"], remote_id.as_str());
    assert_eq!(requests(&sink, "PUT", "/api.xro/2.0/Invoices").await.len(), 1);
}

#[tokio::test]
async fn vendor_lookup_is_cached_per_environment() {
    let stack = Stack::create().await;
    let sink = start_quickbooks(QuickBooksConfig::default()).await.unwrap();
    let secret = stack.secret(&quickbooks_secret()).await;
    let mut config = stack.config("accounting", sink.base_url(), None, Some(&secret));
    // One record at a time: two concurrent first lookups may both query, by design.
    config.concurrency = 1;
    let settings = "version: test\ndestinations:\n  accounting:\n    kind: quickbooks\n    base_url: x\n    \
                    token_url: x\n    expense_account_id: \"7\"\n    vendor_lookup: true\n";
    let engine = stack.engine(&config, settings);
    for document_id in [211, 212] {
        let message = routed("accounting", document_id, Approval::Required, |payload| {
            payload["extracted_fields"]["invoice_number"] = json!(format!("INV-{document_id}"));
        });
        stack.send(&body(&message)).await;
    }

    let event = stack.receive().await;
    let report = stack.run(&engine, &event).await;

    assert!(report.failed_ids().is_empty(), "{report:?}");
    let bills = quickbooks_bills(&sink).await;
    assert_eq!(bills.len(), 2);
    assert!(
        bills.iter().all(|bill| bill["VendorRef"]["value"] == "5001"),
        "{bills:?}"
    );
    let vendor_queries: Vec<Value> = requests(&sink, "GET", &format!("/v3/company/{REALM}/query"))
        .await
        .into_iter()
        .filter(|request| {
            request["query"]["query"]
                .as_str()
                .unwrap_or_default()
                .contains("Vendor")
        })
        .collect();
    assert_eq!(vendor_queries.len(), 1, "the second Bill reuses the vendor id");
}
