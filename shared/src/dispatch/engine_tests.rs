//! Engine tests against the in-memory fakes and a scripted destination.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use tokio::time::Instant;

use super::budget::{BudgetScope, RateLimit};
use super::destination::{Delivered, Delivery, Destination};
use super::engine::{Disposition, Engine, EngineConfig, attribute};
use super::error::DispatchError;
use super::fakes::{FakeArchiveReader, FakeDispatchQueue};
use super::record::dispatch_status;
use super::store::get_dispatch;
use crate::failures::error_class;
use crate::fakes::FakeStore;
use crate::json::Node;
use crate::message::{ArchivePointer, MESSAGE_VERSION, RoutedMessage, idempotency_key};
use crate::rules::{Approval, Decision};

const DOCUMENTED: &str = include_str!("../../../tests/fixtures/recordengine/document-exported.json");

/// A destination that returns scripted results and counts what it received.
#[derive(Default)]
struct Scripted {
    results: Mutex<VecDeque<Result<(), DispatchError>>>,
    delay: Mutex<Duration>,
    calls: AtomicUsize,
    delivered: Mutex<Vec<String>>,
    saw_ambiguous: Mutex<Vec<bool>>,
    budget: Mutex<Option<BudgetScope>>,
}

impl Scripted {
    fn then(&self, result: Result<(), DispatchError>) -> &Self {
        self.results.lock().unwrap().push_back(result);
        self
    }

    fn delivered(&self) -> Vec<String> {
        self.delivered.lock().unwrap().clone()
    }
}

#[async_trait]
impl Destination for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    async fn budget(&self) -> Result<Option<BudgetScope>, DispatchError> {
        Ok(self.budget.lock().unwrap().clone())
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Delivered, DispatchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.saw_ambiguous.lock().unwrap().push(delivery.previous_ambiguous);
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let next = self.results.lock().unwrap().pop_front().unwrap_or(Ok(()));
        next?;
        self.delivered.lock().unwrap().push(delivery.idempotency_key.clone());
        Ok(Delivered {
            remote_id: format!("remote-{}", delivery.idempotency_key),
            detail: "created".into(),
        })
    }
}

struct Rig {
    engine: Engine,
    destination: Arc<Scripted>,
    store: Arc<FakeStore>,
    queue: Arc<FakeDispatchQueue>,
    archive: Arc<FakeArchiveReader>,
}

fn rig_with(destination: Arc<Scripted>, store: Arc<FakeStore>, config: EngineConfig) -> Rig {
    let queue = Arc::new(FakeDispatchQueue::default());
    let archive = Arc::new(FakeArchiveReader::default());
    let engine = Engine {
        config,
        destination: destination.clone(),
        store: store.clone(),
        documents: store.clone(),
        archive: archive.clone(),
        queue: queue.clone(),
    };
    Rig {
        engine,
        destination,
        store,
        queue,
        archive,
    }
}

fn rig() -> Rig {
    rig_with(
        Arc::new(Scripted::default()),
        Arc::new(FakeStore::default()),
        EngineConfig::new("accounting"),
    )
}

fn message(document_id: i64) -> RoutedMessage {
    let fingerprint = format!("{document_id:064}");
    RoutedMessage {
        message_version: MESSAGE_VERSION,
        document_id,
        fingerprint: fingerprint.clone(),
        destination: "accounting".into(),
        idempotency_key: idempotency_key(document_id, &fingerprint, "accounting"),
        approval: Approval::Required,
        decision: Decision {
            ruleset_version: "v1".into(),
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
        payload: Some(Node::parse(DOCUMENTED).unwrap()),
    }
}

fn record(message_id: &str, body: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(message_id.into());
    record.receipt_handle = Some(format!("handle-{message_id}"));
    record.body = Some(body.into());
    record
}

fn event(records: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

fn body(message: &RoutedMessage) -> String {
    serde_json::to_string(message).unwrap()
}

fn far_deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[tokio::test]
async fn second_of_three_fails_alone() {
    let rig = rig();
    rig.destination
        .then(Ok(()))
        .then(Err(DispatchError::retryable("HTTP 503 from the destination")))
        .then(Ok(()));
    let mut config = EngineConfig::new("accounting");
    config.concurrency = 1;
    let rig = rig_with(rig.destination.clone(), rig.store.clone(), config);
    let batch = event(vec![
        record("m1", &body(&message(1))),
        record("m2", &body(&message(2))),
        record("m3", &body(&message(3))),
    ]);

    let report = rig.engine.handle(&batch, far_deadline()).await;

    assert_eq!(report.failed_ids(), vec!["m2".to_string()]);
    assert_eq!(report.response().batch_item_failures.len(), 1);
    assert_eq!(report.response().batch_item_failures[0].item_identifier, "m2");
    assert!(matches!(report.get("m1"), Some(Disposition::Delivered { .. })));
    assert!(matches!(report.get("m3"), Some(Disposition::Delivered { .. })));
    let Some(Disposition::Retry { delay, class, .. }) = report.get("m2") else {
        panic!("m2 is retried: {report:?}");
    };
    assert_eq!(*class, error_class::RETRYABLE);
    assert!(
        *delay >= Duration::from_secs(5) && *delay <= Duration::from_secs(10),
        "{delay:?}"
    );
    assert_eq!(rig.queue.visibility_of("handle-m2"), Some(*delay));

    let stored = get_dispatch(rig.store.as_ref(), &message(2).idempotency_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, dispatch_status::RETRY);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.error_class.as_deref(), Some(error_class::RETRYABLE));
    assert_eq!(stored.last_error.as_deref(), Some("HTTP 503 from the destination"));
    let timeline = rig.store.timeline(2);
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0].kind, "dispatch_failed");
    assert_eq!(rig.store.timeline(1)[0].kind, "delivered");
}

#[tokio::test]
async fn unreadable_message_is_dead_lettered_alone() {
    let rig = rig();
    let batch = event(vec![record("bad", "{not json"), record("good", &body(&message(1)))]);

    let report = rig.engine.handle(&batch, far_deadline()).await;

    assert!(report.failed_ids().is_empty());
    assert!(matches!(
        report.get("bad"),
        Some(Disposition::DeadLettered {
            class: error_class::UNREADABLE,
            ..
        })
    ));
    let dead = rig.queue.dead_letters.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "{not json");
    assert_eq!(dead[0].1[attribute::ERROR_CLASS], error_class::UNREADABLE);
    assert_eq!(dead[0].1[attribute::SOURCE_MESSAGE_ID], "bad");
    assert_eq!(dead[0].1[attribute::RECORDED_BY], "dispatch-accounting");
    assert!(dead[0].1[attribute::ERROR].contains("unreadable message"));
    assert_eq!(rig.destination.delivered().len(), 1);
}

#[tokio::test]
async fn redeliveries_and_redrive_deliver_once() {
    let rig = rig();
    let text = body(&message(7));

    for copy in 0..3 {
        let report = rig
            .engine
            .handle(&event(vec![record(&format!("copy-{copy}"), &text)]), far_deadline())
            .await;
        assert!(report.failed_ids().is_empty(), "copy {copy}: {report:?}");
    }
    // A redrive from the dead-letter queue carries the same body and a new message id.
    let report = rig
        .engine
        .handle(&event(vec![record("redriven", &text)]), far_deadline())
        .await;

    assert_eq!(rig.destination.delivered().len(), 1);
    assert!(matches!(report.get("redriven"), Some(Disposition::Duplicate { .. })));
}

#[tokio::test]
async fn simultaneous_copies_deliver_once() {
    let destination = Arc::new(Scripted::default());
    *destination.delay.lock().unwrap() = Duration::from_millis(200);
    let store = Arc::new(FakeStore::default());
    let first = rig_with(destination.clone(), store.clone(), EngineConfig::new("accounting"));
    let second = rig_with(destination.clone(), store.clone(), EngineConfig::new("accounting"));
    let text = body(&message(8));
    let batch_a = event(vec![record("a", &text)]);
    let batch_b = event(vec![record("b", &text)]);

    let (report_a, report_b) = tokio::join!(
        first.engine.handle(&batch_a, far_deadline()),
        second.engine.handle(&batch_b, far_deadline()),
    );

    assert_eq!(destination.calls.load(Ordering::SeqCst), 1);
    let outcomes = [report_a.get("a").cloned().unwrap(), report_b.get("b").cloned().unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Disposition::Delivered { .. }))
            .count(),
        1,
        "{outcomes:?}"
    );
    let waiting = outcomes
        .iter()
        .find(|outcome| matches!(outcome, Disposition::Deferred { .. }))
        .expect("the other copy waits for the lease");
    let Disposition::Deferred { delay, .. } = waiting else {
        unreachable!()
    };
    assert!(*delay >= Duration::from_secs(1));
    // The deferred copy carries no rate-limit count: waiting for a lease is not throttling.
    let delayed = first.queue.delayed.lock().unwrap().clone();
    let delayed_b = second.queue.delayed.lock().unwrap().clone();
    let copy = delayed.first().or(delayed_b.first()).expect("a delayed copy was sent");
    assert_eq!(copy.2[attribute::DEFERRALS], "0");
}

#[tokio::test]
async fn retry_after_sets_the_visibility() {
    let rig = rig();
    rig.destination.then(Err(DispatchError::retry_after(
        "HTTP 503 with Retry-After: 37",
        Duration::from_secs(37),
    )));

    let report = rig
        .engine
        .handle(&event(vec![record("m", &body(&message(9)))]), far_deadline())
        .await;

    assert_eq!(report.failed_ids(), vec!["m".to_string()]);
    assert_eq!(rig.queue.visibility_of("handle-m"), Some(Duration::from_secs(37)));
}

#[tokio::test]
async fn throttled_sends_a_delayed_copy_without_an_attempt() {
    let rig = rig();
    *rig.destination.budget.lock().unwrap() = Some(BudgetScope::new("scripted", "acct", RateLimit::QUICKBOOKS));
    rig.destination.then(Err(DispatchError::throttled(
        "HTTP 429 ThrottleExceeded",
        Duration::from_secs(37),
    )));
    let text = body(&message(10));

    let report = rig
        .engine
        .handle(&event(vec![record("m", &text)]), far_deadline())
        .await;

    assert!(report.failed_ids().is_empty(), "the original is acknowledged");
    let Some(Disposition::Deferred { delay, .. }) = report.get("m") else {
        panic!("deferred: {report:?}");
    };
    assert!(*delay >= Duration::from_secs(37), "{delay:?}");
    let delayed = rig.queue.delayed.lock().unwrap().clone();
    assert_eq!(delayed.len(), 1);
    assert_eq!(delayed[0].0, text);
    assert!(delayed[0].1 >= Duration::from_secs(37));
    assert_eq!(delayed[0].2[attribute::DEFERRALS], "1");
    let stored = get_dispatch(rig.store.as_ref(), &message(10).idempotency_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.attempts, 0, "a rate-limit wait is not a failed attempt");
    assert_eq!(stored.error_class.as_deref(), Some(error_class::THROTTLED));

    // Every other invocation now waits too: the budget is blocked.
    let mut copy = record("m-copy", &body(&message(11)));
    copy.message_attributes.clear();
    let report = rig.engine.handle(&event(vec![copy]), far_deadline()).await;
    let Some(Disposition::Deferred { delay, reason }) = report.get("m-copy") else {
        panic!("blocked budget defers: {report:?}");
    };
    assert!(*delay >= Duration::from_secs(35), "{delay:?}");
    assert!(reason.contains("429"), "{reason}");
    assert_eq!(rig.destination.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn long_throttle_parks_the_message() {
    let rig = rig();
    rig.destination.then(Err(DispatchError::throttled(
        "daily limit reached",
        Duration::from_secs(5 * 3600),
    )));

    let report = rig
        .engine
        .handle(&event(vec![record("m", &body(&message(12)))]), far_deadline())
        .await;

    let Some(Disposition::Parked { delay, .. }) = report.get("m") else {
        panic!("parked: {report:?}");
    };
    assert!(*delay >= Duration::from_secs(5 * 3600));
    assert_eq!(report.failed_ids(), vec!["m".to_string()]);
    assert_eq!(rig.queue.visibility_of("handle-m"), Some(*delay));
    assert!(rig.queue.delayed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn permanent_failure_goes_to_the_dead_letter_queue_at_once() {
    let rig = rig();
    rig.destination
        .then(Err(DispatchError::permanent("QuickBooks 2500: Invalid Reference Id")));
    let text = body(&message(13));

    let report = rig
        .engine
        .handle(&event(vec![record("m", &text)]), far_deadline())
        .await;

    assert!(report.failed_ids().is_empty(), "acknowledged after dead-lettering");
    let dead = rig.queue.dead_letters.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, text);
    assert_eq!(dead[0].1[attribute::ERROR_CLASS], error_class::PERMANENT);
    assert_eq!(dead[0].1[attribute::ERROR], "QuickBooks 2500: Invalid Reference Id");

    let stored = get_dispatch(rig.store.as_ref(), &message(13).idempotency_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, dispatch_status::FAILED);
    assert_eq!(stored.error_class.as_deref(), Some(error_class::PERMANENT));
    assert_eq!(stored.remote_id, None);
}

#[tokio::test]
async fn dead_letter_queue_down_keeps_the_message() {
    let rig = rig();
    rig.queue.fail_dead_letter.store(true, Ordering::SeqCst);
    rig.destination.then(Err(DispatchError::permanent("invalid")));

    let report = rig
        .engine
        .handle(&event(vec![record("m", &body(&message(14)))]), far_deadline())
        .await;

    assert_eq!(report.failed_ids(), vec!["m".to_string()]);
}

#[tokio::test]
async fn ambiguous_attempt_is_looked_up_next_time() {
    let rig = rig();
    rig.destination
        .then(Err(DispatchError::ambiguous("timed out after sending")));
    let text = body(&message(15));

    rig.engine
        .handle(&event(vec![record("m", &text)]), far_deadline())
        .await;
    rig.engine
        .handle(&event(vec![record("m", &text)]), far_deadline())
        .await;

    assert_eq!(*rig.destination.saw_ambiguous.lock().unwrap(), vec![false, true]);
    let stored = get_dispatch(rig.store.as_ref(), &message(15).idempotency_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, dispatch_status::DONE);
    assert!(!stored.ambiguous);
}

#[tokio::test]
async fn slow_destination_leaves_the_rest_untouched() {
    let destination = Arc::new(Scripted::default());
    *destination.delay.lock().unwrap() = Duration::from_millis(700);
    let mut config = EngineConfig::new("accounting");
    config.concurrency = 1;
    config.deadline_margin = Duration::from_millis(500);
    config.finish_reserve = Duration::from_millis(100);
    let rig = rig_with(destination.clone(), Arc::new(FakeStore::default()), config);
    let records: Vec<SqsMessage> = (20..24)
        .map(|id| record(&format!("m{id}"), &body(&message(id))))
        .collect();

    let report = rig
        .engine
        .handle(&event(records.clone()), Instant::now() + Duration::from_millis(1000))
        .await;

    assert!(
        matches!(report.get("m20"), Some(Disposition::Delivered { .. })),
        "{report:?}"
    );
    for id in ["m21", "m22", "m23"] {
        assert_eq!(report.get(id), Some(&Disposition::Untouched), "{id}: {report:?}");
        assert_eq!(
            rig.queue.visibility_of(&format!("handle-{id}")),
            Some(Duration::from_secs(5))
        );
    }
    assert_eq!(report.failed_ids(), vec!["m21", "m22", "m23"]);

    // All four come back (m20 as a duplicate delivery); nothing is delivered twice.
    *destination.delay.lock().unwrap() = Duration::ZERO;
    let report = rig.engine.handle(&event(records), far_deadline()).await;
    assert!(report.failed_ids().is_empty(), "{report:?}");
    assert!(matches!(report.get("m20"), Some(Disposition::Duplicate { .. })));
    let mut delivered = destination.delivered();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 4);
    assert_eq!(destination.delivered().len(), 4);
}

#[tokio::test]
async fn delivery_cut_at_the_deadline_is_ambiguous() {
    let destination = Arc::new(Scripted::default());
    *destination.delay.lock().unwrap() = Duration::from_secs(5);
    let mut config = EngineConfig::new("accounting");
    config.deadline_margin = Duration::from_millis(200);
    config.finish_reserve = Duration::from_millis(200);
    let rig = rig_with(destination, Arc::new(FakeStore::default()), config);

    let report = rig
        .engine
        .handle(
            &event(vec![record("m", &body(&message(30)))]),
            Instant::now() + Duration::from_millis(800),
        )
        .await;

    let Some(Disposition::Retry { class, .. }) = report.get("m") else {
        panic!("cut short: {report:?}");
    };
    assert_eq!(*class, error_class::AMBIGUOUS);
    let stored = get_dispatch(rig.store.as_ref(), &message(30).idempotency_key)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.ambiguous);
}

#[tokio::test]
async fn message_for_another_destination_is_dead_lettered() {
    let rig = rig();
    let mut other = message(31);
    other.destination = "crm".into();

    let report = rig
        .engine
        .handle(&event(vec![record("m", &body(&other))]), far_deadline())
        .await;

    let Some(Disposition::DeadLettered { class, error }) = report.get("m") else {
        panic!("{report:?}");
    };
    assert_eq!(*class, error_class::PERMANENT);
    assert!(error.contains("crm"), "{error}");
    assert_eq!(rig.destination.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn large_payload_is_read_from_the_archive() {
    let rig = rig();
    let mut large = message(32);
    large.payload = None;
    rig.archive.objects.lock().unwrap().insert(
        (large.archive.bucket.clone(), large.archive.key.clone()),
        DOCUMENTED.as_bytes().to_vec(),
    );
    let mut missing = message(33);
    missing.payload = None;

    let report = rig
        .engine
        .handle(
            &event(vec![record("large", &body(&large)), record("missing", &body(&missing))]),
            far_deadline(),
        )
        .await;

    assert!(
        matches!(report.get("large"), Some(Disposition::Delivered { .. })),
        "{report:?}"
    );
    let Some(Disposition::DeadLettered { error, .. }) = report.get("missing") else {
        panic!("{report:?}");
    };
    assert!(
        error.contains("archive has no s3://archive/raw/2026/12/04/33.json"),
        "{error}"
    );
}

#[tokio::test]
async fn attempts_run_out_into_the_dead_letter_queue() {
    let mut config = EngineConfig::new("accounting");
    config.max_attempts = 2;
    let rig = rig_with(Arc::new(Scripted::default()), Arc::new(FakeStore::default()), config);
    rig.destination
        .then(Err(DispatchError::retryable("HTTP 500")))
        .then(Err(DispatchError::retryable("HTTP 502")));
    let text = body(&message(34));

    let first = rig
        .engine
        .handle(&event(vec![record("m", &text)]), far_deadline())
        .await;
    let second = rig
        .engine
        .handle(&event(vec![record("m", &text)]), far_deadline())
        .await;

    assert!(matches!(first.get("m"), Some(Disposition::Retry { .. })));
    let Some(Disposition::DeadLettered { class, error }) = second.get("m") else {
        panic!("{second:?}");
    };
    assert_eq!(*class, error_class::RETRYABLE);
    assert!(
        error.contains("gave up after 2 failed attempts; last error: HTTP 502"),
        "{error}"
    );
}

#[tokio::test]
async fn empty_budget_defers_before_calling() {
    let rig = rig();
    let limit = RateLimit {
        requests: 1,
        window_seconds: 60,
        concurrent: None,
        daily: None,
    };
    *rig.destination.budget.lock().unwrap() = Some(BudgetScope::new("scripted", "acct", limit));

    let report = rig
        .engine
        .handle(
            &event(vec![record("a", &body(&message(40))), record("b", &body(&message(41)))]),
            far_deadline(),
        )
        .await;

    assert_eq!(rig.destination.calls.load(Ordering::SeqCst), 1);
    let deferred: Vec<&Disposition> = report
        .outcomes
        .iter()
        .map(|outcome| &outcome.disposition)
        .filter(|disposition| matches!(disposition, Disposition::Deferred { .. }))
        .collect();
    assert_eq!(deferred.len(), 1, "{report:?}");
    let Disposition::Deferred { delay, .. } = deferred[0] else {
        unreachable!()
    };
    assert!(*delay >= Duration::from_secs(60), "one request per minute: {delay:?}");
}
