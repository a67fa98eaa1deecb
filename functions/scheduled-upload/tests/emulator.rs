//! The scheduled upload function against MiniStack and the RecordEngine
//! simulator, both on 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use bridge_devstack::{ServerHandle, SimulatorConfig, start_recordengine};
use bridge_shared::aws::{Clients, DynamoDocumentStore, SecretsManagerSource, SqsQueues};
use bridge_shared::inbound::aws::{DynamoFailureLog, S3ObjectStore, SqsHandoff};
use bridge_shared::inbound::{
    Channel, ContactMapping, InboundMessage, MappingRules, ScheduleConfig, UploadOutcome, Uploader, UploaderConfig,
    parse_message,
};
use bridge_shared::ports::DocumentStore;
use bridge_shared::recordengine::{RecordEngineClient, RecordEngineConfig};
use bridge_tests::{Emulator, shared_emulator, unique_name};
use scheduled_upload::handler::App;
use serde_json::Value;
use sha2::{Digest, Sha256};

const TOKEN: &str = "re_0123456789abcdef0123456789abcdef01234567";

type TestApp = App<
    S3ObjectStore,
    SqsHandoff,
    DynamoDocumentStore,
    RecordEngineClient<SecretsManagerSource>,
    DynamoFailureLog,
    SqsQueues,
>;

struct Stack {
    emulator: &'static Emulator,
    clients: Clients,
    bucket: String,
    inbox_url: String,
    document_table: String,
    failure_table: String,
    alerts_url: String,
    secret_arn: String,
    simulator: ServerHandle,
}

impl Stack {
    async fn create() -> Stack {
        let emulator = shared_emulator();
        let clients = emulator.clients();
        let bucket = unique_name("inbox");
        let document_table = unique_name("documents");
        let failure_table = unique_name("failures");
        emulator.create_bucket(&bucket).await;
        emulator.create_table(&document_table, true).await;
        // The failure table's key is `failure_id`, not `pk`; nothing is expected in it here,
        // so a `pk` table only has to exist.
        emulator.create_table(&failure_table, false).await;
        let simulator = start_recordengine(SimulatorConfig {
            api_token: Some(TOKEN.into()),
            ..SimulatorConfig::default()
        })
        .await
        .expect("start the RecordEngine simulator");
        Stack {
            emulator,
            bucket,
            inbox_url: emulator.create_queue(&unique_name("inbox")).await,
            alerts_url: emulator.create_queue(&unique_name("alerts")).await,
            secret_arn: emulator.create_secret(&unique_name("recordengine-token"), TOKEN).await,
            document_table,
            failure_table,
            simulator,
            clients,
        }
    }

    fn app(&self, concurrency: usize, deadline_margin: Duration) -> TestApp {
        let config = RecordEngineConfig::new(self.simulator.base_url(), &self.secret_arn);
        let secrets = Arc::new(SecretsManagerSource::new(self.clients.secrets.clone()));
        let uploader = Uploader::new(
            Arc::new(DynamoDocumentStore::new(
                self.clients.dynamodb.clone(),
                &self.document_table,
            )),
            Arc::new(RecordEngineClient::new_guarded(config, secrets).unwrap()),
            Arc::new(DynamoFailureLog::new(
                self.clients.dynamodb.clone(),
                &self.failure_table,
            )),
            Arc::new(SqsQueues::new(
                self.clients.sqs.clone(),
                BTreeMap::from([("alerts".to_owned(), self.alerts_url.clone())]),
            )),
            Arc::new(MappingRules::new(
                ContactMapping::bundled().unwrap(),
                &["inbox/", "scheduled/"],
            )),
            UploaderConfig {
                recorded_by: "scheduled-upload".into(),
                event_ignored_prefixes: vec!["scheduled/".into()],
                ..UploaderConfig::default()
            },
        );
        App {
            uploader,
            objects: S3ObjectStore::new(self.clients.s3.clone()),
            handoff: SqsHandoff::new(self.clients.sqs.clone(), &self.inbox_url),
            schedule: ScheduleConfig {
                bucket: self.bucket.clone(),
                prefix: "scheduled/".into(),
                concurrency,
                deadline_margin,
                upload_margin: Duration::from_secs(1),
            },
        }
    }

    /// Puts `count` files under `scheduled/8/9/`; returns name → SHA-256.
    async fn put_waiting(&self, count: usize) -> BTreeMap<String, String> {
        let mut expected = BTreeMap::new();
        for index in 0..count {
            let name = format!("晨报 {index:02}.pdf");
            let bytes = format!("%PDF scheduled file {index}").repeat(100 + index);
            self.clients
                .s3
                .put_object()
                .bucket(&self.bucket)
                .key(format!("scheduled/8/9/{name}"))
                .body(ByteStream::from(bytes.clone().into_bytes()))
                .send()
                .await
                .expect("put object");
            expected.insert(name, hex::encode(Sha256::digest(bytes.as_bytes())));
        }
        expected
    }

    async fn uploads(&self) -> Vec<Value> {
        let body: Value = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(self.simulator.url("/_requests"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["uploads"].as_array().unwrap().clone()
    }
}

fn far_deadline() -> Instant {
    Instant::now() + Duration::from_secs(300)
}

#[tokio::test]
async fn waiting_files_upload_once_each() {
    let stack = Stack::create().await;
    let expected = stack.put_waiting(25).await;
    let app = stack.app(4, Duration::from_secs(5));

    let first = app.handle(far_deadline()).await;

    assert_eq!(
        (first.listed, first.uploaded, first.skipped, first.failed),
        (25, 25, 0, 0),
        "{first:?}"
    );
    assert!(first.listing_complete);
    assert_eq!(first.handed_off, 0);
    let uploads = stack.uploads().await;
    assert_eq!(uploads.len(), 25, "25 requests in all");
    let mut seen = BTreeMap::new();
    for upload in &uploads {
        let name = upload["filename"].as_str().unwrap().to_owned();
        assert_eq!(upload["fields"]["contact_id"], "8");
        assert_eq!(upload["fields"]["folder_id"], "9");
        assert!(
            seen.insert(name.clone(), upload["sha256"].clone()).is_none(),
            "{name} uploaded twice"
        );
    }
    for (name, sha256) in &expected {
        assert_eq!(seen.get(name).and_then(Value::as_str), Some(sha256.as_str()), "{name}");
    }

    // The schedule fires again: nothing is uploaded twice.
    let second = app.handle(far_deadline()).await;

    assert_eq!(
        (second.uploaded, second.skipped, second.failed),
        (0, 25, 0),
        "{second:?}"
    );
    assert_eq!(stack.uploads().await.len(), 25);
}

#[tokio::test]
async fn overlapping_runs_upload_once() {
    let stack = Stack::create().await;
    stack.put_waiting(12).await;
    let first = stack.app(3, Duration::from_secs(5));
    let second = stack.app(3, Duration::from_secs(5));

    let (one, two) = futures::join!(first.handle(far_deadline()), second.handle(far_deadline()));

    assert_eq!(one.uploaded + two.uploaded, 12, "{one:?} {two:?}");
    assert_eq!(one.failed, 0, "{one:?}");
    assert_eq!(two.failed, 0, "{two:?}");
    let uploads = stack.uploads().await;
    let names: BTreeSet<&str> = uploads
        .iter()
        .map(|upload| upload["filename"].as_str().unwrap())
        .collect();
    assert_eq!(uploads.len(), 12, "each file sent once");
    assert_eq!(names.len(), 12);
}

#[tokio::test]
async fn rest_is_handed_to_inbox_queue_near_deadline() {
    let stack = Stack::create().await;
    stack.put_waiting(5).await;
    // A margin longer than the time left: no upload may start.
    let app = stack.app(2, Duration::from_secs(60));

    let summary = app.handle(Instant::now() + Duration::from_secs(50)).await;

    assert_eq!(summary.uploaded, 0, "{summary:?}");
    assert_eq!(summary.handed_off, 5, "{summary:?}");
    assert!(stack.uploads().await.is_empty());
    let bodies = stack.emulator.drain_queue(&stack.inbox_url).await;
    assert_eq!(bodies.len(), 5);

    // The handed-off requests go through the same upload path, each once.
    let mut uploaded = 0;
    for body in bodies.iter().chain(bodies.iter()) {
        let InboundMessage::Objects(objects) = parse_message(body).unwrap() else {
            panic!("expected an upload request: {body}");
        };
        assert_eq!(objects[0].channel, Channel::Schedule);
        assert!(
            objects[0].key.starts_with("scheduled/8/9/晨报 "),
            "{:?}",
            objects[0].key
        );
        let outcome = app.uploader.upload_object(&app.objects, &objects[0], None).await;
        if let UploadOutcome::Uploaded { document_id, .. } = outcome {
            uploaded += 1;
            let document = app.uploader.store.get_document(document_id).await.unwrap().unwrap();
            assert_eq!(document.origin.unwrap().channel.as_deref(), Some("schedule"));
        }
    }
    assert_eq!(uploaded, 5);
    assert_eq!(stack.uploads().await.len(), 5);
}
