//! A pipeline on the shared emulator for bridgectl's end-to-end tests. It has
//! the document and failure tables, the archive bucket, and every destination
//! queue with a dead-letter queue and a real redrive policy. The QuickBooks
//! and WeCom sinks run beside it, and the dispatcher, webhook and dead-letter
//! function run in process. The real `bridgectl` binary runs against it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use bridge_devstack::{QuickBooksConfig, ServerHandle, WeComConfig, start_quickbooks, start_wecom};
use bridge_shared::auth::{AuthMode, TokenVerifier};
use bridge_shared::aws::{Clients, DynamoDocumentStore, S3Archive, SecretsManagerSource, SqsQueues};
use bridge_shared::dispatch::alert_text::AlertLocale;
use bridge_shared::dispatch::aws::{DynamoVersionedStore, S3ArchiveReader, SecretsManagerStore, SqsDispatchQueue};
use bridge_shared::dispatch::http::HttpClient;
use bridge_shared::dispatch::settings::{Dependencies, DestinationsFile, Overrides, build_destination};
use bridge_shared::dispatch::wecom::WeComRobot;
use bridge_shared::dispatch::{Engine, EngineConfig};
use bridge_shared::intake::{Intake, IntakeConfig};
use bridge_shared::rules::{BUNDLED_RULES, DEFAULT_DESTINATIONS, RuleSet};
use bridge_tests::{Emulator, shared_emulator, unique_name};
use dlq_alert::channels::Channels;
use dlq_alert::dead_letter::QueueMap;
use dlq_alert::failure_store::DynamoFailureStore;
use dlq_alert::handler::{App, HandlerConfig};
use serde_json::{Value, json};
use tokio::time::Instant;

pub const REALM: &str = "9130355377";
pub const ROBOT_KEY: &str = "robot-key-for-bridgectl-tests";
pub const WEBHOOK_TOKEN: &str = "re_9f8e7d6c5b4a39281f0e9d8c7b6a59483f2e1d0c";
pub const DOCUMENTED: &str = include_str!("../../../../tests/fixtures/recordengine/document-exported.json");

/// One destination queue and its dead-letter queue.
pub struct QueuePair {
    pub url: String,
    pub arn: String,
    pub dead_letter_url: String,
    pub dead_letter_arn: String,
}

pub struct Pipeline {
    pub emulator: &'static Emulator,
    pub clients: Clients,
    pub document_table: String,
    pub failure_table: String,
    pub archive_bucket: String,
    pub queues: BTreeMap<String, QueuePair>,
    pub quickbooks: ServerHandle,
    pub wecom: ServerHandle,
    pub wecom_secret: String,
    pub quickbooks_secret: String,
    pub webhook_secret: String,
}

impl Pipeline {
    /// Creates every resource; the accounting queue moves a message to its
    /// dead-letter queue after `max_receive_count` receives.
    pub async fn create(max_receive_count: u32) -> Pipeline {
        let emulator = shared_emulator();
        let clients = emulator.clients();
        let document_table = unique_name("documents");
        let failure_table = unique_name("failures");
        let archive_bucket = unique_name("archive");
        emulator.create_table(&document_table, true).await;
        create_failure_table(&clients, &failure_table).await;
        emulator.create_bucket(&archive_bucket).await;

        let mut queues = BTreeMap::new();
        for destination in DEFAULT_DESTINATIONS {
            let dead_letter_url = emulator.create_queue(&unique_name(&format!("{destination}-dlq"))).await;
            let dead_letter_arn = queue_arn(&clients, &dead_letter_url).await;
            let url = clients
                .sqs
                .create_queue()
                .queue_name(unique_name(destination))
                .attributes(
                    QueueAttributeName::RedrivePolicy,
                    json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receive_count.to_string()})
                        .to_string(),
                )
                .send()
                .await
                .expect("create a destination queue")
                .queue_url()
                .expect("queue URL")
                .to_owned();
            let arn = queue_arn(&clients, &url).await;
            queues.insert(
                destination.to_owned(),
                QueuePair {
                    url,
                    arn,
                    dead_letter_url,
                    dead_letter_arn,
                },
            );
        }

        let quickbooks = start_quickbooks(QuickBooksConfig::default())
            .await
            .expect("QuickBooks sink");
        let wecom = start_wecom(WeComConfig {
            keys: Some(vec![ROBOT_KEY.into()]),
            ..WeComConfig::default()
        })
        .await
        .expect("WeCom sink");
        let wecom_secret = emulator.create_secret(&unique_name("wecom-key"), ROBOT_KEY).await;
        let quickbooks_secret = emulator
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
        let webhook_secret = emulator
            .create_secret(&unique_name("webhook-token"), WEBHOOK_TOKEN)
            .await;
        Pipeline {
            emulator,
            clients,
            document_table,
            failure_table,
            archive_bucket,
            queues,
            quickbooks,
            wecom,
            wecom_secret,
            quickbooks_secret,
            webhook_secret,
        }
    }

    /// Options naming every resource, as an operator passes them without `--stack`.
    pub fn resource_args(&self) -> Vec<String> {
        let mut args = vec![
            "--failure-table".to_owned(),
            self.failure_table.clone(),
            "--document-table".to_owned(),
            self.document_table.clone(),
            "--archive-bucket".to_owned(),
            self.archive_bucket.clone(),
        ];
        for (destination, pair) in &self.queues {
            args.push("--queue".into());
            args.push(format!("{destination}={}", pair.url));
            args.push("--dead-letter-queue".into());
            args.push(format!("{destination}={}", pair.dead_letter_url));
        }
        args
    }

    /// Runs the real bridgectl binary with the emulator's environment only.
    pub fn bridgectl(&self, args: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_bridgectl"))
            .env_clear()
            .envs(self.emulator.environment())
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .expect("run bridgectl");
        eprintln!(
            "$ bridgectl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs bridgectl with `args` followed by the resource options; returns stdout,
    /// failing the test when the command fails.
    pub fn bridgectl_ok(&self, args: &[&str]) -> String {
        let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        all.extend(self.resource_args());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let output = self.bridgectl(&refs);
        assert!(
            output.status.success(),
            "bridgectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    pub fn versioned(&self) -> Arc<DynamoVersionedStore> {
        Arc::new(DynamoVersionedStore::new(
            self.clients.dynamodb.clone(),
            &self.document_table,
        ))
    }

    pub fn documents(&self) -> DynamoDocumentStore {
        DynamoDocumentStore::new(self.clients.dynamodb.clone(), &self.document_table)
    }

    pub fn failure_store(&self) -> DynamoFailureStore {
        DynamoFailureStore::new(self.clients.dynamodb.clone(), &self.failure_table)
    }

    /// Builds the accounting dispatcher, booking into the QuickBooks sink and retrying after 1 s.
    pub fn accounting_engine(&self) -> Engine {
        let file = DestinationsFile::from_yaml(
            "version: test\ndestinations:\n  accounting:\n    kind: quickbooks\n    base_url: x\n    token_url: x\n    \
             expense_account_id: \"7\"\n    default_vendor_id: \"56\"\n",
            "test",
        )
        .unwrap();
        let overrides = Overrides {
            base_url: Some(self.quickbooks.base_url().to_owned()),
            token_url: Some(self.quickbooks.url("/oauth2/v1/tokens/bearer")),
            wecom_base_url: None,
        };
        let versioned = self.versioned();
        let destination = build_destination(
            file.settings_for("accounting", &overrides).unwrap(),
            Dependencies {
                http: HttpClient::with_guard(Duration::from_secs(5), true).unwrap(),
                secrets: Arc::new(SecretsManagerStore::new(self.clients.secrets.clone())),
                store: versioned.clone(),
                credentials_secret: Some(self.quickbooks_secret.clone()),
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
        let pair = &self.queues["accounting"];
        Engine {
            config,
            destination,
            store: versioned,
            documents: Arc::new(self.documents()),
            archive: Arc::new(S3ArchiveReader::new(self.clients.s3.clone())),
            queue: Arc::new(SqsDispatchQueue::new(
                self.clients.sqs.clone(),
                &pair.url,
                &pair.dead_letter_url,
            )),
        }
    }

    /// The dead-letter function over every dead-letter queue, alerting to the WeCom sink.
    pub fn dead_letter_app(&self) -> App {
        let versioned = self.versioned();
        let robot = WeComRobot::new(
            self.wecom.base_url(),
            HttpClient::with_guard(Duration::from_secs(5), true).unwrap(),
            Arc::new(SecretsManagerStore::new(self.clients.secrets.clone())),
            &self.wecom_secret,
        );
        let queues = QueueMap {
            dead_letter_queues: self
                .queues
                .iter()
                .map(|(name, pair)| (name.clone(), pair.dead_letter_arn.clone()))
                .collect(),
            source_queues: self
                .queues
                .iter()
                .map(|(name, pair)| (name.clone(), pair.url.clone()))
                .collect(),
        };
        App {
            failures: Arc::new(self.failure_store()),
            versioned: versioned.clone(),
            documents: Arc::new(self.documents()),
            sender: Arc::new(Channels {
                wecom: Some(Arc::new(robot)),
                email: None,
                budgets: versioned,
            }),
            config: HandlerConfig::new(queues, AlertLocale::En),
        }
    }

    /// The webhook function in process, routing to the pipeline's queues.
    pub fn webhook(&self) -> webhook::handler::App<S3Archive, DynamoDocumentStore, SqsQueues, SecretsManagerSource> {
        let destinations = self.queues.keys().cloned().collect();
        let intake = Intake {
            archive: Arc::new(S3Archive::new(self.clients.s3.clone(), &self.archive_bucket)),
            store: Arc::new(self.documents()),
            queues: Arc::new(SqsQueues::new(
                self.clients.sqs.clone(),
                self.queues
                    .iter()
                    .map(|(name, pair)| (name.clone(), pair.url.clone()))
                    .collect(),
            )),
            rules: Arc::new(RuleSet::from_yaml(BUNDLED_RULES, "bundled", &destinations).unwrap()),
            config: IntakeConfig::default(),
        };
        let verifier = TokenVerifier::new(
            Arc::new(SecretsManagerSource::new(self.clients.secrets.clone())),
            &self.webhook_secret,
        );
        webhook::handler::App::new(intake, verifier, AuthMode::Bearer)
    }

    /// Sends a body to a destination queue with the attributes the webhook sets.
    pub async fn send(&self, destination: &str, body: &str, attributes: &[(&str, String)]) {
        let mut request = self
            .clients
            .sqs
            .send_message()
            .queue_url(&self.queues[destination].url)
            .message_body(body);
        for (name, value) in attributes {
            request = request.message_attributes(
                *name,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .unwrap(),
            );
        }
        request.send().await.expect("send message");
    }

    /// Runs the accounting dispatcher as Lambda would until its queue is empty,
    /// or until `until` holds; bounded to 40 s.
    pub async fn dispatch_accounting(&self, engine: &Engine, until: impl AsyncFnMut() -> bool) {
        let mut until = until;
        let pair = &self.queues["accounting"];
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(40) {
            let event = receive(&self.clients, &pair.url, &pair.arn).await;
            if !event.records.is_empty() {
                let report = engine.handle(&event, Instant::now() + Duration::from_secs(30)).await;
                settle(&self.clients, &pair.url, &event, &report.failed_ids()).await;
            }
            if until().await {
                return;
            }
        }
        panic!("the accounting queue did not reach the expected state within 40 s");
    }

    /// Bills in the QuickBooks sink's realm.
    pub async fn bills(&self) -> Vec<Value> {
        let url = format!(
            "{}?query=select%20*%20from%20Bill",
            self.quickbooks.url(&format!("/v3/company/{REALM}/query"))
        );
        let answer: Value = reqwest::Client::new()
            .get(url)
            .bearer_auth("reader")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["QueryResponse"]["Bill"].as_array().cloned().unwrap_or_default()
    }

    pub async fn fault(&self, sink: &ServerHandle, fault: Value) {
        let response = reqwest::Client::new()
            .post(sink.url("/_faults"))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    pub async fn clear_faults(&self, sink: &ServerHandle) {
        reqwest::Client::new()
            .delete(sink.url("/_faults"))
            .send()
            .await
            .unwrap();
    }
}

pub async fn create_failure_table(clients: &Clients, name: &str) {
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

pub async fn queue_arn(clients: &Clients, queue_url: &str) -> String {
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

/// Receives up to ten messages as Lambda hands them over.
pub async fn receive(clients: &Clients, queue_url: &str, queue_arn: &str) -> SqsEvent {
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
pub async fn settle(clients: &Clients, queue_url: &str, event: &SqsEvent, failed: &[String]) {
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

/// Builds an API Gateway HTTP API (payload format 2.0) event for `POST /webhooks/recordengine`.
pub fn webhook_request(body: &str) -> lambda_http::Request {
    let event = json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/recordengine",
        "rawPath": "/webhooks/recordengine",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "authorization": format!("Bearer {WEBHOOK_TOKEN}")},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "api",
            "domainName": "127.0.0.1",
            "domainPrefix": "api",
            "http": {"method": "POST", "path": "/webhooks/recordengine", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "RecordEngine"},
            "requestId": "bridgectl-test",
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
