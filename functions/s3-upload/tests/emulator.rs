//! The S3 upload function against MiniStack (S3 with real event notifications
//! to SQS, DynamoDB, Secrets Manager) and the RecordEngine simulator, both on
//! 127.0.0.1, through the real SDK and HTTP clients.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, NotificationConfiguration, QueueConfiguration, VersioningConfiguration,
};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use bridge_devstack::{ServerHandle, SimulatorConfig, start_recordengine};
use bridge_shared::alerts::OperationalAlert;
use bridge_shared::aws::{Clients, DynamoDocumentStore, SecretsManagerSource, SqsQueues, from_item};
use bridge_shared::failures::FailureRecord;
use bridge_shared::inbound::aws::{DynamoFailureLog, S3ObjectStore};
use bridge_shared::inbound::{ContactMapping, MappingRules, Uploader, UploaderConfig};
use bridge_shared::ports::DocumentStore;
use bridge_shared::recordengine::{RecordEngineClient, RecordEngineConfig};
use bridge_tests::{Emulator, shared_emulator, unique_name};
use s3_upload::handler::{App, HandlerConfig, SqsVisibility};
use serde_json::Value;
use sha2::{Digest, Sha256};

const TOKEN: &str = "re_0123456789abcdef0123456789abcdef01234567";
const MAPPING: &str = "prefixes:\n  - prefix: \"发票/\"\n    contact_id: 5\n    folder_id: 12\n";

type TestApp = App<
    S3ObjectStore,
    SqsVisibility,
    DynamoDocumentStore,
    RecordEngineClient<SecretsManagerSource>,
    DynamoFailureLog,
    SqsQueues,
>;

/// One test's resources: unique names on the shared emulator and its own simulator.
struct Stack {
    emulator: &'static Emulator,
    clients: Clients,
    bucket: String,
    inbox_url: String,
    alerts_url: String,
    document_table: String,
    failure_table: String,
    secret_arn: String,
    simulator: ServerHandle,
    http: reqwest::Client,
}

impl Stack {
    async fn create(secret_value: &str) -> Stack {
        let emulator = shared_emulator();
        let clients = emulator.clients();
        let bucket = unique_name("inbox");
        let document_table = unique_name("documents");
        let failure_table = unique_name("failures");
        emulator.create_bucket(&bucket).await;
        emulator.create_table(&document_table, true).await;
        create_failure_table(&clients, &failure_table).await;
        let inbox_url = emulator.create_queue(&unique_name("inbox")).await;
        let alerts_url = emulator.create_queue(&unique_name("alerts")).await;
        let secret_arn = emulator
            .create_secret(&unique_name("recordengine-token"), secret_value)
            .await;
        let simulator = start_recordengine(SimulatorConfig {
            api_token: Some(TOKEN.into()),
            ..SimulatorConfig::default()
        })
        .await
        .expect("start the RecordEngine simulator");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Stack {
            emulator,
            clients,
            bucket,
            inbox_url,
            alerts_url,
            document_table,
            failure_table,
            secret_arn,
            simulator,
            http,
        }
    }

    fn app(&self, request_timeout: Duration) -> TestApp {
        let mut config = RecordEngineConfig::new(self.simulator.base_url(), &self.secret_arn);
        config.request_timeout = request_timeout;
        let secrets = Arc::new(SecretsManagerSource::new(self.clients.secrets.clone()));
        let recordengine = RecordEngineClient::new_guarded(config, secrets).expect("client for the simulator");
        let mapping = ContactMapping::from_text(MAPPING, "test mapping").unwrap();
        let uploader = Uploader::new(
            Arc::new(DynamoDocumentStore::new(
                self.clients.dynamodb.clone(),
                &self.document_table,
            )),
            Arc::new(recordengine),
            Arc::new(DynamoFailureLog::new(
                self.clients.dynamodb.clone(),
                &self.failure_table,
            )),
            Arc::new(SqsQueues::new(
                self.clients.sqs.clone(),
                BTreeMap::from([("alerts".to_owned(), self.alerts_url.clone())]),
            )),
            Arc::new(MappingRules::new(mapping, &["inbox/", "scheduled/"])),
            UploaderConfig {
                recorded_by: "s3-upload".into(),
                uncertain_settle: Duration::ZERO,
                event_ignored_prefixes: vec!["scheduled/".into()],
                ..UploaderConfig::default()
            },
        );
        App {
            uploader,
            objects: S3ObjectStore::new(self.clients.s3.clone()),
            visibility: SqsVisibility::new(self.clients.sqs.clone(), &self.inbox_url),
            config: HandlerConfig::default(),
        }
    }

    /// Sends the bucket's ObjectCreated notifications to the inbox queue, as the template does.
    async fn notify_inbox_queue(&self) {
        let attributes = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(&self.inbox_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        let queue_arn = attributes.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
        let queue = QueueConfiguration::builder()
            .queue_arn(queue_arn)
            .events("s3:ObjectCreated:*".into())
            .build()
            .unwrap();
        self.clients
            .s3
            .put_bucket_notification_configuration()
            .bucket(&self.bucket)
            .notification_configuration(NotificationConfiguration::builder().queue_configurations(queue).build())
            .send()
            .await
            .expect("configure the bucket notification");
    }

    async fn enable_versioning(&self) {
        self.clients
            .s3
            .put_bucket_versioning()
            .bucket(&self.bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("enable versioning");
    }

    async fn put(&self, key: &str, bytes: &[u8], metadata: &[(&str, &str)]) {
        let mut request = self
            .clients
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes.to_vec()));
        for (name, value) in metadata {
            request = request.metadata(*name, *value);
        }
        request.send().await.expect("put object");
    }

    /// Receives up to `expected` messages from the inbox queue, waiting at most 10 s.
    async fn receive(&self, expected: usize) -> Vec<SqsMessage> {
        let mut messages = Vec::new();
        let started = Instant::now();
        while messages.len() < expected && started.elapsed() < Duration::from_secs(10) {
            let response = self
                .clients
                .sqs
                .receive_message()
                .queue_url(&self.inbox_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive messages");
            for message in response.messages.unwrap_or_default() {
                let mut converted = SqsMessage::default();
                converted.message_id = message.message_id.clone();
                converted.receipt_handle = message.receipt_handle.clone();
                converted.body = message.body.clone();
                converted.attributes = message
                    .attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, value)| (name.as_str().to_owned(), value))
                    .collect::<HashMap<_, _>>();
                converted.event_source_arn = Some("arn:aws:sqs:us-east-1:000000000000:inbox".into());
                messages.push(converted);
            }
        }
        messages
    }

    /// One receive without waiting.
    async fn receive_now(&self) -> Vec<String> {
        let response = self
            .clients
            .sqs
            .receive_message()
            .queue_url(&self.inbox_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive messages");
        response
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|message| message.body)
            .collect()
    }

    async fn simulator_json(&self, path: &str) -> Value {
        self.http
            .get(self.simulator.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("simulator answers")
            .json()
            .await
            .expect("simulator JSON")
    }

    /// Uploads the simulator received, faulted and rejected ones included.
    async fn uploads(&self) -> Vec<Value> {
        self.simulator_json("/_requests").await["uploads"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Uploads that created a document.
    async fn created(&self) -> Vec<Value> {
        self.uploads()
            .await
            .into_iter()
            .filter(|upload| upload["id"].is_i64())
            .collect()
    }

    async fn fault(&self, fault: Value) {
        let response = self
            .http
            .post(self.simulator.url("/_faults"))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "fault accepted: {}", response.status());
    }

    async fn failures(&self) -> Vec<FailureRecord> {
        let response = self
            .clients
            .dynamodb
            .scan()
            .table_name(&self.failure_table)
            .send()
            .await
            .expect("scan the failure table");
        response
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| from_item(item, "Scan").unwrap())
            .collect()
    }

    async fn alerts(&self) -> Vec<OperationalAlert> {
        self.emulator
            .drain_queue(&self.alerts_url)
            .await
            .iter()
            .map(|body| serde_json::from_str(body).expect("operational alert"))
            .collect()
    }

    async fn tags(&self, key: &str) -> BTreeMap<String, String> {
        let response = self
            .clients
            .s3
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        response
            .tag_set()
            .iter()
            .map(|tag| (tag.key().to_owned(), tag.value().to_owned()))
            .collect()
    }
}

async fn create_failure_table(clients: &Clients, name: &str) {
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

fn batch(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages;
    event
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn by_filename(uploads: &[Value], filename: &str) -> Value {
    uploads
        .iter()
        .find(|upload| upload["filename"] == filename)
        .unwrap_or_else(|| panic!("no upload named {filename:?} in {uploads:?}"))
        .clone()
}

#[tokio::test]
async fn notified_keys_upload_under_decoded_names() {
    let stack = Stack::create(TOKEN).await;
    stack.enable_versioning().await;
    stack.notify_inbox_queue().await;
    let app = stack.app(Duration::from_secs(30));

    // Configuring the notification sends an s3:TestEvent first.
    let test_events = stack.receive(1).await;
    assert_eq!(test_events.len(), 1);
    assert!(test_events[0].body.as_deref().unwrap().contains("s3:TestEvent"));
    let response = app.handle(batch(test_events), None).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "the test event is acknowledged"
    );

    let spaced = b"plain text with spaces and a plus".to_vec();
    let invoice: Vec<u8> = (0..300_000u32).flat_map(|index| index.to_le_bytes()).collect();
    stack
        .put(
            "inbox/this im + age blah.txt",
            &spaced,
            &[("contact-id", "5"), ("folder-id", "12")],
        )
        .await;
    stack.put("发票/2024年 发票.pdf", &invoice, &[]).await;
    let messages = stack.receive(2).await;
    assert_eq!(messages.len(), 2, "one notification per object");
    let bodies: Vec<&str> = messages
        .iter()
        .map(|message| message.body.as_deref().unwrap())
        .collect();
    assert!(
        bodies
            .iter()
            .any(|body| body.contains("\"inbox/this+im+%2B+age+blah.txt\"")),
        "S3 form-encodes the key: {bodies:?}"
    );
    assert!(
        bodies
            .iter()
            .any(|body| body.contains("\"%E5%8F%91%E7%A5%A8/2024%E5%B9%B4+%E5%8F%91%E7%A5%A8.pdf\"")),
        "{bodies:?}"
    );

    let response = app.handle(batch(messages.clone()), None).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let created = stack.created().await;
    assert_eq!(created.len(), 2, "{created:?}");
    let spaced_upload = by_filename(&created, "this im + age blah.txt");
    assert_eq!(
        spaced_upload["sha256"],
        sha256(&spaced),
        "the uploaded bytes are the object's bytes"
    );
    assert_eq!(spaced_upload["fields"]["contact_id"], "5");
    assert_eq!(spaced_upload["fields"]["folder_id"], "12");
    assert_eq!(spaced_upload["content_type"], "text/plain");
    let invoice_upload = by_filename(&created, "2024年 发票.pdf");
    assert_eq!(invoice_upload["sha256"], sha256(&invoice));
    assert_eq!(invoice_upload["size"], invoice.len() as u64);
    assert_eq!(invoice_upload["fields"]["contact_id"], "5");
    let refs: Value = serde_json::from_str(invoice_upload["fields"]["external_refs"].as_str().unwrap()).unwrap();
    let correlation_key = refs["recordengine_bridge"]["record_id"].as_str().unwrap().to_owned();
    assert_eq!(refs["recordengine_bridge"]["record_type"], "s3_object");
    assert_eq!(refs["recordengine_bridge"]["key"], "发票/2024年 发票.pdf");
    assert!(
        refs["recordengine_bridge"]["version_id"].is_string(),
        "versioned bucket: {refs}"
    );

    let document_id = invoice_upload["id"].as_i64().unwrap();
    let store = DynamoDocumentStore::new(stack.clients.dynamodb.clone(), &stack.document_table);
    let view = store.document_view(document_id).await.unwrap();
    let document = view.document.expect("document record");
    let origin = document.origin.unwrap();
    assert_eq!(origin.correlation_key, correlation_key);
    assert_eq!(origin.key.as_deref(), Some("发票/2024年 发票.pdf"));
    assert_eq!(origin.channel.as_deref(), Some("s3"));
    assert!(origin.version_id.is_some());
    assert_eq!(document.filename.as_deref(), Some("2024年 发票.pdf"));
    assert_eq!((document.contact_id, document.folder_id), (Some(5), Some(12)));
    assert_eq!(view.timeline.len(), 1);
    assert_eq!(view.timeline[0].kind, "uploaded");
    let upload = store.get_upload(&correlation_key).await.unwrap().unwrap();
    assert_eq!(upload.status, "uploaded");
    assert_eq!(upload.document_id, Some(document_id));
    let tags = stack.tags("发票/2024年 发票.pdf").await;
    assert_eq!(tags.get("recordengine-status").map(String::as_str), Some("uploaded"));
    assert_eq!(tags.get("recordengine-id"), Some(&document_id.to_string()));

    // The same notifications delivered again upload nothing.
    let again = app.handle(batch(messages), None).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(stack.uploads().await.len(), 2, "no second upload");
    assert!(stack.alerts().await.is_empty());
}

#[tokio::test]
async fn invalid_objects_are_recorded_and_alerted() {
    let stack = Stack::create(TOKEN).await;
    stack.notify_inbox_queue().await;
    let app = stack.app(Duration::from_secs(30));
    stack.receive(1).await;
    let keys = ["inbox/5/12/setup.exe", "inbox/5/12/empty.pdf", "unmapped/report.pdf"];
    stack.put(keys[0], b"MZ", &[]).await;
    stack.put(keys[1], b"", &[]).await;
    stack.put(keys[2], b"%PDF", &[]).await;
    let messages = stack.receive(3).await;
    assert_eq!(messages.len(), 3);

    let response = app.handle(batch(messages), None).await;

    assert!(response.batch_item_failures.is_empty(), "rejections are not retried");
    assert!(stack.uploads().await.is_empty(), "nothing reached RecordEngine");
    let failures = stack.failures().await;
    assert_eq!(failures.len(), 3, "{failures:?}");
    for key in keys {
        let failure = failures
            .iter()
            .find(|failure| failure.s3_key.as_deref() == Some(key))
            .unwrap_or_else(|| panic!("no failure record for {key}"));
        assert_eq!(failure.error_class, "permanent");
        assert_eq!(failure.recorded_by, "s3-upload");
        assert_eq!(failure.s3_bucket.as_deref(), Some(stack.bucket.as_str()));
    }
    let unmapped = failures
        .iter()
        .find(|failure| failure.s3_key.as_deref() == Some(keys[2]))
        .unwrap();
    assert!(unmapped.error.contains("is unmapped"), "{}", unmapped.error);
    assert!(
        unmapped.error.contains("test mapping"),
        "names the mapping: {}",
        unmapped.error
    );
    let alerts = stack.alerts().await;
    assert_eq!(alerts.len(), 3);
    for key in keys {
        let alert = alerts
            .iter()
            .find(|alert| alert.params.get("key").map(String::as_str) == Some(key))
            .unwrap_or_else(|| panic!("no alert for {key}"));
        assert_eq!(alert.kind, "upload_rejected");
        assert!(alert.failure_id.is_some());
    }
}

#[tokio::test]
async fn unavailable_then_success_uploads_once() {
    let stack = Stack::create(TOKEN).await;
    stack.notify_inbox_queue().await;
    let app = stack.app(Duration::from_secs(30));
    stack.receive(1).await;
    stack.put("inbox/5/12/a.pdf", b"%PDF retried", &[]).await;
    let messages = stack.receive(1).await;
    stack
        .fault(serde_json::json!({"status": 503, "times": 1, "retry_after": "7"}))
        .await;

    let first = app.handle(batch(messages.clone()), None).await;

    assert_eq!(first.batch_item_failures.len(), 1, "retried");
    assert_eq!(
        first.batch_item_failures[0].item_identifier,
        messages[0].message_id.clone().unwrap()
    );
    assert!(
        stack.receive_now().await.is_empty(),
        "the message is hidden for Retry-After (7 s)"
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    let redelivered = stack.receive(1).await;
    assert_eq!(redelivered.len(), 1, "visible again after 7 s");
    assert_eq!(redelivered[0].message_id, messages[0].message_id);

    let second = app.handle(batch(redelivered), None).await;

    assert!(second.batch_item_failures.is_empty(), "{second:?}");
    let uploads = stack.uploads().await;
    assert_eq!(uploads.len(), 2, "one faulted attempt and one upload: {uploads:?}");
    assert_eq!(uploads[0]["response_status"], 503);
    assert_eq!(stack.created().await.len(), 1);
    assert!(stack.failures().await.is_empty());
}

#[tokio::test]
async fn unauthorized_is_permanent_and_alerted() {
    let stack = Stack::create("re_revoked_token").await;
    stack.notify_inbox_queue().await;
    let app = stack.app(Duration::from_secs(30));
    stack.receive(1).await;
    stack.put("inbox/5/12/a.pdf", b"%PDF", &[]).await;
    stack.put("inbox/5/12/b.pdf", b"%PDF", &[]).await;
    let messages = stack.receive(2).await;

    let response = app.handle(batch(messages), None).await;

    assert!(response.batch_item_failures.is_empty(), "acknowledged, not retried");
    assert!(stack.created().await.is_empty());
    let failures = stack.failures().await;
    assert_eq!(failures.len(), 2);
    assert!(failures.iter().all(|failure| failure.error_class == "permanent"));
    assert!(failures.iter().all(|failure| failure.error.contains("HTTP 401")));
    assert!(
        failures
            .iter()
            .all(|failure| !failure.error.contains("re_revoked_token"))
    );
    let alerts = stack.alerts().await;
    assert_eq!(alerts.len(), 1, "one alert for the token: {alerts:?}");
    assert_eq!(alerts[0].kind, "recordengine_unauthorized");
}

#[tokio::test]
async fn ambiguous_upload_is_found_not_repeated() {
    let stack = Stack::create(TOKEN).await;
    stack.notify_inbox_queue().await;
    let app = stack.app(Duration::from_secs(1));
    stack.receive(1).await;
    stack.put("inbox/5/12/slow.pdf", b"%PDF slow", &[]).await;
    let messages = stack.receive(1).await;
    // Status 0: the simulator creates the document, then answers after the client gave up.
    stack
        .fault(serde_json::json!({"status": 0, "times": 1, "delay_ms": 3000}))
        .await;

    let first = app.handle(batch(messages.clone()), None).await;
    let second = app.handle(batch(messages), None).await;

    assert_eq!(
        first.batch_item_failures.len(),
        1,
        "an ambiguous upload is checked later"
    );
    assert!(second.batch_item_failures.is_empty(), "{second:?}");
    let created = stack.created().await;
    assert_eq!(created.len(), 1, "found by lookup, not uploaded twice: {created:?}");
    let document_id = created[0]["id"].as_i64().unwrap();
    let store = DynamoDocumentStore::new(stack.clients.dynamodb.clone(), &stack.document_table);
    let view = store.document_view(document_id).await.unwrap();
    assert!(view.document.is_some());
    assert!(
        view.timeline[0].detail.contains("unknown outcome"),
        "{:?}",
        view.timeline
    );
}

#[tokio::test]
async fn scheduled_prefix_and_folder_markers_are_skipped() {
    let stack = Stack::create(TOKEN).await;
    stack.notify_inbox_queue().await;
    let app = stack.app(Duration::from_secs(30));
    stack.receive(1).await;
    stack.put("scheduled/5/12/later.pdf", b"%PDF", &[]).await;
    stack.put("inbox/5/12/", b"", &[]).await;
    let messages = stack.receive(2).await;

    let response = app.handle(batch(messages), None).await;

    assert!(response.batch_item_failures.is_empty());
    assert!(stack.uploads().await.is_empty());
    assert!(
        stack.failures().await.is_empty(),
        "a folder marker is not an empty file"
    );
    assert!(stack.alerts().await.is_empty());
}
