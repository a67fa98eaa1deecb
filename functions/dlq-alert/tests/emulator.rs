//! The dead-letter function against MiniStack (SQS with a real redrive
//! policy, DynamoDB, Secrets Manager) and the devstack QuickBooks and WeCom
//! sinks, all on 127.0.0.1, through the real SDK and HTTP clients.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::QueueAttributeName;
use bridge_devstack::{QuickBooksConfig, ServerHandle, WeComConfig, start_quickbooks, start_wecom};
use bridge_shared::aws::{Clients, DynamoDocumentStore, from_item};
use bridge_shared::dispatch::alert_text::AlertLocale;
use bridge_shared::dispatch::aws::{DynamoVersionedStore, S3ArchiveReader, SecretsManagerStore, SqsDispatchQueue};
use bridge_shared::dispatch::http::HttpClient;
use bridge_shared::dispatch::settings::{Dependencies, DestinationsFile, Overrides, build_destination};
use bridge_shared::dispatch::wecom::WeComRobot;
use bridge_shared::dispatch::{Engine, EngineConfig};
use bridge_shared::failures::{error_class, failure_status};
use bridge_shared::json::Node;
use bridge_shared::message::{ArchivePointer, MESSAGE_VERSION, RoutedMessage, idempotency_key};
use bridge_shared::ports::DocumentStore;
use bridge_shared::rules::{Approval, Decision};
use bridge_tests::{Emulator, shared_emulator, unique_name};
use dlq_alert::channels::Channels;
use dlq_alert::dead_letter::QueueMap;
use dlq_alert::failure_store::{DynamoFailureStore, FailureStore, StoredFailure, alert_state};
use dlq_alert::handler::{App, HandlerConfig};
use serde_json::{Value, json};
use tokio::time::Instant;

const DOCUMENTED: &str = include_str!("../../../tests/fixtures/recordengine/document-exported.json");
const REALM: &str = "9130355377";
const ROBOT_KEY: &str = "robot-key-for-tests";

/// One test's resources: unique names on the shared emulator, its own sinks.
struct Stack {
    emulator: &'static Emulator,
    clients: Clients,
    document_table: String,
    failure_table: String,
    queue_url: String,
    dead_letter_url: String,
    dead_letter_arn: String,
    source_arn: String,
    wecom: ServerHandle,
    wecom_secret: String,
}

impl Stack {
    async fn create(max_receive_count: u32) -> Stack {
        let emulator = shared_emulator();
        let clients = emulator.clients();
        let document_table = unique_name("documents");
        let failure_table = unique_name("failures");
        emulator.create_table(&document_table, true).await;
        create_failure_table(&clients, &failure_table).await;

        let dead_letter_url = emulator.create_queue(&unique_name("accounting-dlq")).await;
        let dead_letter_arn = queue_arn(&clients, &dead_letter_url).await;
        let queue_url = clients
            .sqs
            .create_queue()
            .queue_name(unique_name("accounting"))
            .attributes(
                QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receive_count.to_string()})
                    .to_string(),
            )
            .send()
            .await
            .expect("create the source queue")
            .queue_url()
            .expect("queue URL")
            .to_owned();
        let source_arn = queue_arn(&clients, &queue_url).await;

        let wecom = start_wecom(WeComConfig {
            keys: Some(vec![ROBOT_KEY.into()]),
            ..WeComConfig::default()
        })
        .await
        .expect("start the WeCom sink");
        let wecom_secret = emulator.create_secret(&unique_name("wecom-key"), ROBOT_KEY).await;
        Stack {
            emulator,
            clients,
            document_table,
            failure_table,
            queue_url,
            dead_letter_url,
            dead_letter_arn,
            source_arn,
            wecom,
            wecom_secret,
        }
    }

    fn config(&self) -> HandlerConfig {
        let mut config = HandlerConfig::new(
            QueueMap {
                dead_letter_queues: [("accounting".to_owned(), self.dead_letter_arn.clone())].into(),
                source_queues: [("accounting".to_owned(), self.queue_url.clone())].into(),
            },
            AlertLocale::En,
        );
        config.failures.window = Duration::from_secs(3);
        config.failures.max_window = Duration::from_secs(6);
        config
    }

    fn app(&self, config: HandlerConfig) -> App {
        let versioned = Arc::new(DynamoVersionedStore::new(
            self.clients.dynamodb.clone(),
            &self.document_table,
        ));
        let http = HttpClient::with_guard(Duration::from_secs(5), true).expect("HTTP client");
        let robot = WeComRobot::new(
            self.wecom.base_url(),
            http,
            Arc::new(SecretsManagerStore::new(self.clients.secrets.clone())),
            &self.wecom_secret,
        );
        App {
            failures: Arc::new(self.failure_store()),
            versioned: versioned.clone(),
            documents: Arc::new(DynamoDocumentStore::new(
                self.clients.dynamodb.clone(),
                &self.document_table,
            )),
            sender: Arc::new(Channels {
                wecom: Some(Arc::new(robot)),
                email: None,
                budgets: versioned,
            }),
            config,
        }
    }

    fn failure_store(&self) -> DynamoFailureStore {
        DynamoFailureStore::new(self.clients.dynamodb.clone(), &self.failure_table)
    }

    async fn failures(&self) -> Vec<StoredFailure> {
        self.failure_store().list().await.expect("scan the failure table")
    }

    /// Messages the WeCom sink delivered (errcode 0).
    async fn robot_messages(&self) -> Vec<String> {
        let list: Value = reqwest::get(self.wecom.url("/_messages"))
            .await
            .expect("WeCom sink answers")
            .json()
            .await
            .expect("WeCom sink answers JSON");
        list["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|message| message["errcode"] == 0)
            .map(|message| message["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Builds a dispatcher for the accounting queue that books into a QuickBooks sink.
    async fn quickbooks_engine(&self, sink: &ServerHandle) -> Engine {
        let secret = self
            .emulator
            .create_secret(
                &unique_name("quickbooks"),
                &json!({
                    "client_id": "qb-client",
                    "client_secret": "qb-client-secret",
                    "refresh_token": "qb-refresh",
                    "access_token": "qb-access",
                    "access_token_expires_at": chrono::Utc::now().timestamp() + 3600,
                    "realm_id": REALM,
                })
                .to_string(),
            )
            .await;
        let file = DestinationsFile::from_yaml(
            "version: test\ndestinations:\n  accounting:\n    kind: quickbooks\n    base_url: x\n    token_url: x\n    \
             expense_account_id: \"7\"\n    default_vendor_id: \"56\"\n",
            "test",
        )
        .unwrap();
        let overrides = Overrides {
            base_url: Some(sink.base_url().to_owned()),
            token_url: Some(sink.url("/oauth2/v1/tokens/bearer")),
            wecom_base_url: None,
        };
        let settings = file.settings_for("accounting", &overrides).unwrap();
        let versioned: Arc<DynamoVersionedStore> = Arc::new(DynamoVersionedStore::new(
            self.clients.dynamodb.clone(),
            &self.document_table,
        ));
        let destination = build_destination(
            settings,
            Dependencies {
                http: HttpClient::with_guard(Duration::from_secs(5), true).unwrap(),
                secrets: Arc::new(SecretsManagerStore::new(self.clients.secrets.clone())),
                store: versioned.clone(),
                credentials_secret: Some(secret),
                wecom_secret: None,
                mailer: None,
                email_from: None,
                email_to: Vec::new(),
                locale: AlertLocale::En,
            },
        )
        .unwrap();
        let mut config = EngineConfig::new("accounting");
        config.retry_base = Duration::from_secs(1);
        config.retry_cap = Duration::from_secs(1);
        config.deadline_margin = Duration::from_secs(1);
        Engine {
            config,
            destination,
            store: versioned,
            documents: Arc::new(DynamoDocumentStore::new(
                self.clients.dynamodb.clone(),
                &self.document_table,
            )),
            archive: Arc::new(S3ArchiveReader::new(self.clients.s3.clone())),
            queue: Arc::new(SqsDispatchQueue::new(
                self.clients.sqs.clone(),
                &self.queue_url,
                &self.dead_letter_url,
            )),
        }
    }
}

async fn create_failure_table(clients: &Clients, name: &str) {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    clients
        .dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("failure_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("failure_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create the failure table");
}

async fn queue_arn(clients: &Clients, queue_url: &str) -> String {
    clients
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn))
        .expect("queue ARN")
        .clone()
}

/// Receives up to ten messages as Lambda would hand them over, with system
/// and message attributes and the queue's ARN as the event source.
async fn receive(clients: &Clients, queue_url: &str, queue_arn: &str) -> SqsEvent {
    let response = clients
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
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
        record.event_source_arn = Some(queue_arn.to_owned());
        for (name, value) in message.attributes.unwrap_or_default() {
            record.attributes.insert(name.as_str().to_owned(), value);
        }
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

/// Deletes the messages Lambda would delete: those not reported as failed.
async fn settle(clients: &Clients, queue_url: &str, event: &SqsEvent, failed: &[String]) {
    for record in &event.records {
        if failed.contains(&record.message_id.clone().unwrap_or_default()) {
            continue;
        }
        clients
            .sqs
            .delete_message()
            .queue_url(queue_url)
            .set_receipt_handle(record.receipt_handle.clone())
            .send()
            .await
            .expect("delete message");
    }
}

fn routed(document_id: i64) -> RoutedMessage {
    let mut payload: Value = serde_json::from_str(DOCUMENTED).unwrap();
    payload["id"] = json!(document_id);
    payload["extracted_fields"]["currency"] = json!("USD");
    payload["external_refs"] = json!({"recordengine_bridge": {"record_id": format!("s3-{document_id}")}});
    let fingerprint = format!("{document_id:064x}");
    RoutedMessage {
        message_version: MESSAGE_VERSION,
        document_id,
        fingerprint: fingerprint.clone(),
        destination: "accounting".into(),
        idempotency_key: idempotency_key(document_id, &fingerprint, "accounting"),
        approval: Approval::Required,
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

/// Builds a dead letter as Lambda hands it over from the accounting dead-letter queue.
fn dead_letter(stack: &Stack, message_id: &str, body: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(message_id.to_owned());
    record.receipt_handle = Some(format!("handle-{message_id}"));
    record.body = Some(body.to_owned());
    record.event_source_arn = Some(stack.dead_letter_arn.clone());
    record.attributes.insert("ApproximateReceiveCount".into(), "3".into());
    record
        .attributes
        .insert("DeadLetterQueueSourceArn".into(), stack.source_arn.clone());
    record
}

fn batch(records: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

/// Returns the failure count an alert names: a digest's title count, else one.
fn failures_named(content: &str) -> u64 {
    content
        .lines()
        .next()
        .and_then(|title| title.split(" failures need attention").next())
        .filter(|_| content.contains("failures need attention"))
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

#[tokio::test]
async fn exhausted_dispatch_becomes_one_record_and_one_alert() {
    let stack = Stack::create(2).await;
    let sink = start_quickbooks(QuickBooksConfig::default()).await.unwrap();
    reqwest::Client::new()
        .post(sink.url("/_faults"))
        .json(&json!({"status": 500, "times": 50}))
        .send()
        .await
        .unwrap();
    let engine = stack.quickbooks_engine(&sink).await;
    let message = routed(4101);
    let body = serde_json::to_string(&message).unwrap();
    stack
        .clients
        .sqs
        .send_message()
        .queue_url(&stack.queue_url)
        .message_body(&body)
        .send()
        .await
        .unwrap();

    // Dispatch as Lambda would until the redrive policy moves the message.
    let mut dead_letters = SqsEvent::default();
    let started = Instant::now();
    let mut receives = 0;
    while dead_letters.records.is_empty() && started.elapsed() < Duration::from_secs(30) {
        let event = receive(&stack.clients, &stack.queue_url, &stack.source_arn).await;
        if !event.records.is_empty() {
            receives += 1;
            let report = engine.handle(&event, Instant::now() + Duration::from_secs(30)).await;
            settle(&stack.clients, &stack.queue_url, &event, &report.failed_ids()).await;
        }
        dead_letters = receive(&stack.clients, &stack.dead_letter_url, &stack.dead_letter_arn).await;
    }
    assert_eq!(receives, 2, "maxReceiveCount receives before the dead-letter queue");
    assert_eq!(
        dead_letters.records.len(),
        1,
        "the message reached the dead-letter queue"
    );

    let app = stack.app(stack.config());
    let report = app.handle(&dead_letters).await;
    assert!(report.response().batch_item_failures.is_empty(), "{report:?}");
    let again = app.handle(&dead_letters).await;
    assert_eq!(again.messages[0].outcome, "already_recorded");

    let failures = stack.failures().await;
    assert_eq!(failures.len(), 1, "a redelivered dead letter adds no record");
    let record = &failures[0].record;
    assert_eq!(record.destination, "accounting");
    assert_eq!(record.status, failure_status::OPEN);
    assert_eq!(record.error_class, error_class::RETRYABLE);
    assert!(record.error.contains("HTTP 500"), "{}", record.error);
    assert_eq!(record.attempts, 2);
    assert_eq!(record.document_id, Some(4101));
    assert_eq!(
        record.idempotency_key.as_deref(),
        Some(message.idempotency_key.as_str())
    );
    assert_eq!(
        record.body.as_deref(),
        Some(body.as_str()),
        "the whole body is kept for a redrive"
    );
    assert_eq!(record.source_queue.as_deref(), Some(stack.source_arn.as_str()));
    assert!(record.external_refs.as_deref().unwrap().contains("s3-4101"));
    let attributes: Value = serde_json::from_str(record.attributes.as_deref().unwrap()).unwrap();
    assert_eq!(
        attributes["message_attributes"],
        json!({}),
        "the webhook sent no attributes here"
    );
    assert_eq!(failures[0].alert_state.as_deref(), Some(alert_state::SENT));

    let messages = stack.robot_messages().await;
    eprintln!("WeCom messages:\n{}", messages.join("\n---\n"));
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("Delivery to accounting failed"), "{}", messages[0]);
    assert!(messages[0].contains("#4101"), "{}", messages[0]);
    assert!(messages[0].contains(&record.failure_id), "{}", messages[0]);

    let timeline = DynamoDocumentStore::new(stack.clients.dynamodb.clone(), &stack.document_table)
        .document_view(4101)
        .await
        .unwrap()
        .timeline;
    let kinds: Vec<&str> = timeline.iter().map(|entry| entry.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|kind| **kind == "dispatch_failed").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"dead_lettered"), "{kinds:?}");
}

#[tokio::test]
async fn storm_of_fifty_sends_at_most_three_alerts() {
    let stack = Stack::create(5).await;
    let app = Arc::new(stack.app(stack.config()));
    let batches: Vec<SqsEvent> = (0..5)
        .map(|batch_index| {
            batch(
                (0..10)
                    .map(|index| {
                        let id = 5000 + batch_index * 10 + index;
                        let body = serde_json::to_string(&routed(id)).unwrap();
                        dead_letter(&stack, &format!("storm-{id}"), &body)
                    })
                    .collect(),
            )
        })
        .collect();

    // Five invocations at once, as five pollers would start them.
    let reports = futures_join(app.clone(), batches).await;
    for report in &reports {
        assert!(report.response().batch_item_failures.is_empty(), "{report:?}");
    }
    let during = stack.robot_messages().await;
    assert!(!during.is_empty(), "the first failures are alerted at once");
    assert!(during.len() <= 2, "two messages per window: {during:?}");

    // The flush schedule sends what was held once the window ends.
    let started = Instant::now();
    let mut flushed = false;
    while !flushed && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        flushed = !app.flush().await.alerts_sent.is_empty();
    }
    assert!(flushed, "the held failures are sent after the window");
    let again = app.flush().await;
    assert!(again.alerts_sent.is_empty(), "nothing is left to send");

    let messages = stack.robot_messages().await;
    eprintln!("WeCom messages:\n{}", messages.join("\n---\n"));
    assert!(messages.len() <= 3, "{} messages: {messages:?}", messages.len());
    let named: u64 = messages.iter().map(|content| failures_named(content)).sum();
    assert_eq!(named, 50, "every failure is named once: {messages:?}");
    assert!(
        messages
            .iter()
            .any(|content| content.contains("failures need attention"))
    );
    assert!(messages.iter().all(|content| content.len() <= 4096));

    let failures = stack.failures().await;
    assert_eq!(failures.len(), 50);
    assert!(
        failures
            .iter()
            .all(|failure| failure.alert_state.as_deref() == Some(alert_state::SENT)),
        "every record is marked alerted"
    );
}

async fn futures_join(app: Arc<App>, batches: Vec<SqsEvent>) -> Vec<dlq_alert::handler::Report> {
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|event| {
            let app = app.clone();
            tokio::spawn(async move { app.handle(&event).await })
        })
        .collect();
    let mut reports = Vec::new();
    for task in tasks {
        reports.push(task.await.expect("invocation task"));
    }
    reports
}

#[tokio::test]
async fn malformed_dead_letters_are_recorded_as_unreadable() {
    let stack = Stack::create(5).await;
    let app = stack.app(stack.config());
    let event = batch(vec![
        dead_letter(&stack, "garbage", "this is not JSON {"),
        dead_letter(&stack, "old-version", r#"{"message_version": 99, "document_id": "x"}"#),
    ]);

    let report = app.handle(&event).await;

    assert!(
        report.response().batch_item_failures.is_empty(),
        "a malformed message is no batch failure: {report:?}"
    );
    let failures = stack.failures().await;
    assert_eq!(failures.len(), 2);
    for failure in &failures {
        assert_eq!(failure.record.error_class, error_class::UNREADABLE);
        assert_eq!(
            failure.record.destination, "accounting",
            "from the dead-letter queue it came from"
        );
        assert!(
            failure.record.body.is_some(),
            "the body is kept to be fixed and replayed"
        );
    }
    let garbage = failures
        .iter()
        .find(|failure| failure.record.body.as_deref() == Some("this is not JSON {"))
        .unwrap();
    assert!(garbage.record.error.contains("not JSON"), "{}", garbage.record.error);

    let messages = stack.robot_messages().await;
    assert_eq!(
        messages.len(),
        1,
        "two failures in one batch make one digest: {messages:?}"
    );
    assert!(messages[0].contains("2 failures need attention"), "{}", messages[0]);
    assert!(messages[0].contains("unreadable"), "{}", messages[0]);
}

#[tokio::test]
async fn single_unreadable_message_gets_its_own_alert() {
    let stack = Stack::create(5).await;
    let app = stack.app(stack.config());

    let report = app.handle(&batch(vec![dead_letter(&stack, "lone", "")])).await;

    assert!(report.response().batch_item_failures.is_empty());
    let messages = stack.robot_messages().await;
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].contains("Unreadable message in a dead-letter queue"),
        "{}",
        messages[0]
    );
    assert!(messages[0].contains(&stack.source_arn), "{}", messages[0]);
}

#[tokio::test]
async fn failed_alerts_are_alerted_once_per_window() {
    let stack = Stack::create(5).await;
    let mut config = stack.config();
    config
        .queues
        .dead_letter_queues
        .insert("alerts".into(), "arn:aws:sqs:us-east-1:000000000000:alerts-dlq".into());
    let app = stack.app(config);
    let alert_body = |index: usize| {
        serde_json::to_string(
            &bridge_shared::alerts::OperationalAlert::new("upload_failed", "error", format!("upload-{index}"))
                .param("bucket", "inbox")
                .param("key", format!("inbox/5/12/{index}.pdf")),
        )
        .unwrap()
    };

    for index in 0..3 {
        let mut message = dead_letter(&stack, &format!("alert-{index}"), &alert_body(index));
        message.event_source_arn = Some("arn:aws:sqs:us-east-1:000000000000:alerts-dlq".into());
        let report = app.handle(&batch(vec![message])).await;
        assert!(report.response().batch_item_failures.is_empty());
    }
    app.flush().await;

    let failures = stack.failures().await;
    assert_eq!(failures.len(), 3);
    assert!(failures.iter().all(|failure| failure.record.destination == "alerts"));
    let messages = stack.robot_messages().await;
    assert_eq!(
        messages.len(),
        1,
        "one message per hour for failed alerts: {messages:?}"
    );
}

#[tokio::test]
async fn unreachable_table_reports_the_message_failed() {
    let stack = Stack::create(5).await;
    let mut app = stack.app(stack.config());
    app.failures = Arc::new(DynamoFailureStore::new(stack.clients.dynamodb.clone(), "no-such-table"));
    let body = serde_json::to_string(&routed(77)).unwrap();

    let report = app.handle(&batch(vec![dead_letter(&stack, "kept", &body)])).await;

    let failed: Vec<String> = report
        .response()
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone())
        .collect();
    assert_eq!(
        failed,
        vec!["kept".to_owned()],
        "the message stays on the dead-letter queue"
    );
    assert!(
        stack.robot_messages().await.is_empty(),
        "nothing is alerted without a record"
    );
}

#[tokio::test]
async fn records_round_trip_through_the_table() {
    let stack = Stack::create(5).await;
    let app = stack.app(stack.config());
    let body = serde_json::to_string(&routed(88)).unwrap();
    app.handle(&batch(vec![dead_letter(&stack, "round-trip", &body)])).await;
    let stored = stack.failures().await.remove(0);

    let item = stack
        .clients
        .dynamodb
        .get_item()
        .table_name(&stack.failure_table)
        .key(
            "failure_id",
            aws_sdk_dynamodb::types::AttributeValue::S(stored.record.failure_id.clone()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let read: StoredFailure = from_item(item, "GetItem").unwrap();

    assert_eq!(read, stored);
    assert!(stored.expires_at.unwrap() > chrono::Utc::now().timestamp() + 80 * 24 * 3600);

    let store = stack.failure_store();
    let at = "2026-12-04T09:00:00.000Z";
    assert!(store.mark_redriven(&stored.record.failure_id, at).await.unwrap());
    assert!(
        !store.mark_redriven(&stored.record.failure_id, at).await.unwrap(),
        "a record is redriven once"
    );
    assert!(
        store
            .reopen(&stored.record.failure_id, at, "send failed")
            .await
            .unwrap()
    );
    let reopened = store.get(&stored.record.failure_id).await.unwrap().unwrap();
    assert_eq!(reopened.record.status, failure_status::OPEN);
    assert_eq!(reopened.record.redriven_at, None);
}
