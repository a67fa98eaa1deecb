//! Batch handling against the in-memory fakes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bridge_shared::fakes::{FakeQueues, FakeStore};
use bridge_shared::inbound::fakes::{FakeFailureLog, FakeObjectStore, FakeRecordEngine, FakeResponse};
use bridge_shared::inbound::{ContactMapping, MappingRules, UploaderConfig};
use bridge_shared::recordengine::RecordEngineError;

use super::*;

const BUCKET: &str = "inbox-bucket";

#[derive(Default)]
struct FakeVisibility {
    changes: Mutex<Vec<(String, u64)>>,
}

#[async_trait]
impl VisibilityControl for FakeVisibility {
    async fn change_visibility(&self, receipt_handle: &str, seconds: u64) -> Result<(), InfraError> {
        self.changes.lock().unwrap().push((receipt_handle.to_owned(), seconds));
        Ok(())
    }
}

type TestApp = App<FakeObjectStore, FakeVisibility, FakeStore, FakeRecordEngine, FakeFailureLog, FakeQueues>;

fn app() -> TestApp {
    let uploader = Uploader::new(
        Arc::new(FakeStore::default()),
        Arc::new(FakeRecordEngine::default()),
        Arc::new(FakeFailureLog::default()),
        Arc::new(FakeQueues::default()),
        Arc::new(MappingRules::new(
            ContactMapping::bundled().unwrap(),
            &["inbox/", "scheduled/"],
        )),
        UploaderConfig {
            uncertain_settle: Duration::ZERO,
            event_ignored_prefixes: vec!["scheduled/".into()],
            ..UploaderConfig::default()
        },
    );
    App {
        uploader,
        objects: FakeObjectStore::default(),
        visibility: FakeVisibility::default(),
        config: HandlerConfig::default(),
    }
}

fn s3_event_body(encoded_key: &str) -> String {
    serde_json::json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": BUCKET}, "object": {"key": encoded_key, "size": 4}}
        }]
    })
    .to_string()
}

fn message(id: &str, body: &str, receive_count: u32) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(id.to_owned());
    message.receipt_handle = Some(format!("handle-{id}"));
    message.body = Some(body.to_owned());
    message.attributes = HashMap::from([("ApproximateReceiveCount".to_owned(), receive_count.to_string())]);
    message.event_source_arn = Some("arn:aws:sqs:us-east-1:000000000000:inbox".into());
    message
}

fn event(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages;
    event
}

fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn batch_reports_only_retryable_items() {
    let app = app();
    app.objects.put(BUCKET, "inbox/5/12/good one.pdf", b"%PDF");
    app.objects.put(BUCKET, "inbox/5/12/busy.pdf", b"%PDF");
    // Uploads run concurrently, so the 503 goes to whichever arrives first:
    // concurrency 1 keeps the order of the batch.
    let app = App {
        config: HandlerConfig {
            concurrency: 1,
            ..HandlerConfig::default()
        },
        ..app
    };
    app.uploader.recordengine.respond(FakeResponse::Created);
    app.uploader
        .recordengine
        .respond(FakeResponse::Fail(RecordEngineError::Unavailable {
            operation: "upload",
            status: Some(503),
            retry_after: Some(Duration::from_secs(7)),
            detail: "HTTP 503".into(),
        }));
    let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"inbox-bucket"}"#;
    let batch = event(vec![
        message("test", test_event, 1),
        message("good", &s3_event_body("inbox/5/12/good+one.pdf"), 1),
        message("busy", &s3_event_body("inbox/5/12/busy.pdf"), 1),
        message("junk", "{not json", 1),
    ]);

    let response = app.handle(batch, None).await;

    assert_eq!(failed_ids(&response), vec!["busy"]);
    assert_eq!(
        app.visibility.changes.lock().unwrap().clone(),
        vec![("handle-busy".to_owned(), 7)],
        "hidden for RecordEngine's Retry-After"
    );
    let uploaded = app.uploader.recordengine.documents();
    assert_eq!(uploaded.len(), 1);
    assert_eq!(uploaded[0].filename, "good one.pdf");
    let failures = app.uploader.failures.all();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].failure_id, "inbox#message#junk");
    assert_eq!(failures[0].error_class, "unreadable");
    assert_eq!(failures[0].body.as_deref(), Some("{not json"));
    let alerts = app.uploader.alerts.bodies("alerts");
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].contains("unreadable_message"), "{}", alerts[0]);
}

#[tokio::test]
async fn redelivered_message_uploads_once() {
    let app = app();
    app.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    let body = s3_event_body("inbox/5/12/a.pdf");

    let first = app.handle(event(vec![message("m1", &body, 1)]), None).await;
    let second = app.handle(event(vec![message("m1", &body, 2)]), None).await;

    assert!(first.batch_item_failures.is_empty());
    assert!(second.batch_item_failures.is_empty());
    assert_eq!(app.uploader.recordengine.upload_attempts(), 1);
}

#[tokio::test]
async fn unauthorized_is_acknowledged() {
    let app = app();
    app.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    app.uploader
        .recordengine
        .respond(FakeResponse::Fail(RecordEngineError::Unauthorized {
            operation: "upload",
        }));

    let response = app
        .handle(event(vec![message("m1", &s3_event_body("inbox/5/12/a.pdf"), 1)]), None)
        .await;

    assert!(response.batch_item_failures.is_empty(), "no retry storm");
    assert!(app.visibility.changes.lock().unwrap().is_empty());
    assert_eq!(app.uploader.failures.all().len(), 1);
}

#[tokio::test]
async fn backoff_grows_with_deliveries() {
    let app = app();
    app.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    for _ in 0..2 {
        app.uploader
            .recordengine
            .respond(FakeResponse::Fail(RecordEngineError::Unavailable {
                operation: "upload",
                status: None,
                retry_after: None,
                detail: "connection refused".into(),
            }));
    }
    let body = s3_event_body("inbox/5/12/a.pdf");

    app.handle(event(vec![message("first", &body, 1)]), None).await;
    app.handle(event(vec![message("third", &body, 3)]), None).await;

    let changes = app.visibility.changes.lock().unwrap().clone();
    assert_eq!(changes.len(), 2);
    assert!(
        (30..=33).contains(&changes[0].1),
        "first delivery: about 30 s, got {}",
        changes[0].1
    );
    assert!(
        (120..=132).contains(&changes[1].1),
        "third delivery: about 120 s, got {}",
        changes[1].1
    );
}

#[tokio::test]
async fn backoff_is_capped() {
    let app = app();
    let message = message("m", "{}", 30);

    let wait = app.backoff(&message);

    assert!(
        wait >= Duration::from_secs(900) && wait <= Duration::from_secs(990),
        "{wait:?}"
    );
}

#[test]
fn deadline_converts_to_instant() {
    let in_one_minute = chrono::Utc::now().timestamp_millis() as u64 + 60_000;

    let deadline = deadline_instant(in_one_minute).unwrap();

    let remaining = deadline - Instant::now();
    assert!(
        remaining > Duration::from_secs(58) && remaining <= Duration::from_secs(60),
        "{remaining:?}"
    );
    assert_eq!(deadline_instant(0), None);
}
