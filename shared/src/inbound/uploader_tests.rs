//! Uploader, scheduled run and local uploads against the in-memory fakes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::fakes::{FakeFailureLog, FakeHandoff, FakeObject, FakeObjectStore, FakeRecordEngine, FakeResponse};
use super::uploader::{DOCUMENT_ID_TAG, STATUS_TAG, upload_status};
use super::*;
use crate::alerts::OperationalAlert;
use crate::fakes::{FakeQueues, FakeStore};
use crate::json::Node;
use crate::ports::DocumentStore;
use crate::recordengine::{Lookup, RecordEngineError};
use crate::records::{UploadRecord, reference_pk};

const BUCKET: &str = "inbox-bucket";

type TestUploader = Uploader<FakeStore, FakeRecordEngine, FakeFailureLog, FakeQueues>;

struct Harness {
    uploader: TestUploader,
    objects: FakeObjectStore,
}

impl Harness {
    fn new() -> Harness {
        Self::with_config(UploaderConfig {
            uncertain_settle: Duration::ZERO,
            event_ignored_prefixes: vec!["scheduled/".into()],
            ..UploaderConfig::default()
        })
    }

    fn with_config(config: UploaderConfig) -> Harness {
        let mapping = ContactMapping::from_text(
            "prefixes: [{prefix: \"发票/\", contact_id: 5, folder_id: 12, profile_id: 3}]",
            "test mapping",
        )
        .unwrap();
        let uploader = Uploader::new(
            Arc::new(FakeStore::default()),
            Arc::new(FakeRecordEngine::default()),
            Arc::new(FakeFailureLog::default()),
            Arc::new(FakeQueues::default()),
            Arc::new(MappingRules::new(mapping, &["inbox/", "scheduled/"])),
            config,
        );
        Harness {
            uploader,
            objects: FakeObjectStore::default(),
        }
    }

    fn recordengine(&self) -> &FakeRecordEngine {
        &self.uploader.recordengine
    }

    fn alerts(&self) -> Vec<OperationalAlert> {
        self.uploader
            .alerts
            .bodies("alerts")
            .iter()
            .map(|body| serde_json::from_str(body).unwrap())
            .collect()
    }

    fn upload_record(&self, correlation_key: &str) -> Option<UploadRecord> {
        let items = self.uploader.store.items.lock().unwrap();
        items
            .get(&(reference_pk(correlation_key), "document".to_owned()))
            .map(|value| serde_json::from_value(value.clone()).unwrap())
    }

    async fn upload(&self, key: &str) -> UploadOutcome {
        let object = self.objects.event_ref(BUCKET, key);
        self.uploader.upload_object(&self.objects, &object, None).await
    }
}

fn correlation_key_of(outcome: &UploadOutcome) -> String {
    match outcome {
        UploadOutcome::Uploaded { correlation_key, .. } | UploadOutcome::AlreadyUploaded { correlation_key, .. } => {
            correlation_key.clone()
        }
        other => panic!("expected an upload, got {other:?}"),
    }
}

fn ambiguous() -> RecordEngineError {
    RecordEngineError::Ambiguous {
        detail: "no response within 60 s after the whole file was sent".into(),
    }
}

#[tokio::test]
async fn object_is_uploaded_and_recorded() {
    let harness = Harness::new();
    let key = "inbox/5/12/this im + age blah.txt";
    harness.objects.put(BUCKET, key, b"hello inbox");

    let outcome = harness.upload(key).await;

    let UploadOutcome::Uploaded {
        document_id,
        found_by_lookup,
        ..
    } = outcome.clone()
    else {
        panic!("expected Uploaded, got {outcome:?}");
    };
    assert!(!found_by_lookup);
    let received = harness.recordengine().documents();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].filename, "this im + age blah.txt");
    assert_eq!(received[0].content_type, "text/plain");
    assert_eq!((received[0].contact_id, received[0].folder_id), (5, 12));
    assert_eq!(received[0].sha256, hex::encode(Sha256::digest(b"hello inbox")));
    let correlation_key = correlation_key_of(&outcome);
    let refs = Node::parse(&received[0].external_refs).unwrap();
    let ours = refs.get("recordengine_bridge").unwrap();
    assert_eq!(
        ours.get("record_id").and_then(Node::as_str),
        Some(correlation_key.as_str())
    );
    assert_eq!(ours.get("record_type").and_then(Node::as_str), Some("s3_object"));
    assert_eq!(ours.get("key").and_then(Node::as_str), Some(key));

    let upload = harness.upload_record(&correlation_key).unwrap();
    assert_eq!(upload.status, upload_status::UPLOADED);
    assert_eq!(upload.document_id, Some(document_id));
    assert_eq!(upload.lease_until, None);
    let view = harness.uploader.store.document_view(document_id).await.unwrap();
    let document = view.document.unwrap();
    let origin = document.origin.unwrap();
    assert_eq!(origin.channel.as_deref(), Some("s3"));
    assert_eq!(origin.key.as_deref(), Some(key));
    assert_eq!(origin.size, Some(11));
    assert!(origin.uploaded_at.is_some());
    assert_eq!(document.filename.as_deref(), Some("this im + age blah.txt"));
    assert_eq!(
        document.external_refs_sent.as_deref(),
        Some(received[0].external_refs.as_str())
    );
    assert_eq!(document.status, "uploaded");
    assert_eq!(view.timeline.len(), 1);
    assert_eq!(view.timeline[0].kind, "uploaded");
    let tags = harness.objects.tags(BUCKET, key);
    assert_eq!(tags.get(STATUS_TAG).map(String::as_str), Some("uploaded"));
    assert_eq!(tags.get(DOCUMENT_ID_TAG), Some(&document_id.to_string()));
    assert!(harness.alerts().is_empty());
}

#[tokio::test]
async fn redelivered_event_uploads_once() {
    let harness = Harness::new();
    harness.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");

    let first = harness.upload("inbox/5/12/a.pdf").await;
    let heads_after_first = harness.objects.heads.load(Ordering::SeqCst);
    let second = harness.upload("inbox/5/12/a.pdf").await;

    assert!(matches!(first, UploadOutcome::Uploaded { .. }), "{first:?}");
    assert!(matches!(second, UploadOutcome::AlreadyUploaded { .. }), "{second:?}");
    assert_eq!(harness.recordengine().upload_attempts(), 1);
    assert_eq!(
        harness.objects.heads.load(Ordering::SeqCst),
        heads_after_first,
        "the upload record decides before any S3 call"
    );
}

#[tokio::test]
async fn mapping_file_and_metadata_refs_are_used() {
    let harness = Harness::new();
    let metadata = BTreeMap::from([(
        "external-refs".to_owned(),
        r#"{"salesforce": {"record_id": "0061x"}, "amount": 12.50, "recordengine_bridge": "spoofed"}"#.to_owned(),
    )]);
    harness.objects.put_object(
        BUCKET,
        "发票/2024年 发票.pdf",
        FakeObject {
            bytes: b"%PDF invoice".to_vec(),
            version_id: Some("v7".into()),
            metadata,
            ..FakeObject::default()
        },
    );

    let outcome = harness.upload("发票/2024年 发票.pdf").await;

    assert!(matches!(outcome, UploadOutcome::Uploaded { .. }), "{outcome:?}");
    let received = &harness.recordengine().documents()[0];
    assert_eq!(received.filename, "2024年 发票.pdf");
    assert_eq!(
        (received.contact_id, received.folder_id, received.profile_id),
        (5, 12, Some(3))
    );
    let refs = Node::parse(&received.external_refs).unwrap();
    assert_eq!(
        refs.get("salesforce")
            .and_then(|sf| sf.get("record_id"))
            .and_then(Node::as_str),
        Some("0061x")
    );
    assert_eq!(
        refs.get("amount"),
        Some(&Node::Number("12.50".into())),
        "numbers keep their text"
    );
    let ours = refs.get("recordengine_bridge").unwrap();
    assert_eq!(ours.get("version_id").and_then(Node::as_str), Some("v7"));
    assert_eq!(
        ours.get("record_id").and_then(Node::as_str),
        Some(s3_correlation_key(BUCKET, "发票/2024年 发票.pdf", Some("v7"), None).as_str())
    );
}

#[tokio::test]
async fn invalid_objects_are_rejected_with_alerts() {
    let harness = Harness::new();
    let cases = [
        ("inbox/5/12/setup.exe", &b"MZ"[..], "unsupported file type (.exe)"),
        ("inbox/5/12/empty.pdf", &b""[..], "is empty (0 bytes)"),
        ("unmapped/a.pdf", &b"%PDF"[..], "\"unmapped/a.pdf\" is unmapped"),
    ];
    for (key, bytes, _) in cases {
        harness.objects.put(BUCKET, key, bytes);
    }

    for (key, _, expected) in cases {
        let outcome = harness.upload(key).await;
        let UploadOutcome::Rejected { reason, failure_id } = outcome else {
            panic!("{key}: expected Rejected, got {outcome:?}");
        };
        assert!(reason.contains(expected), "{key}: {reason}");
        assert!(failure_id.is_some(), "{key}");
    }

    assert_eq!(harness.recordengine().upload_attempts(), 0, "nothing was uploaded");
    let failures = harness.uploader.failures.all();
    assert_eq!(failures.len(), 3);
    for failure in &failures {
        assert_eq!(failure.error_class, "permanent");
        assert_eq!(failure.recorded_by, "s3-upload");
        assert!(failure.body.as_deref().unwrap().contains("bridge_upload_request"));
    }
    let alerts = harness.alerts();
    assert_eq!(alerts.len(), 3);
    for (alert, (key, _, _)) in alerts.iter().zip(cases) {
        assert_eq!(alert.kind, "upload_rejected");
        assert_eq!(alert.params.get("key").map(String::as_str), Some(key));
        assert!(alert.failure_id.is_some());
    }
    assert!(
        harness.alerts()[2].params["reason"].contains("test mapping"),
        "names the mapping"
    );
}

#[tokio::test]
async fn invalid_metadata_refs_are_rejected() {
    let harness = Harness::new();
    harness.objects.put_object(
        BUCKET,
        "inbox/5/12/a.pdf",
        FakeObject {
            bytes: b"%PDF".to_vec(),
            metadata: BTreeMap::from([("external-refs".to_owned(), "[1, 2]".to_owned())]),
            ..FakeObject::default()
        },
    );

    let outcome = harness.upload("inbox/5/12/a.pdf").await;

    assert!(
        matches!(&outcome, UploadOutcome::Rejected { reason, .. } if reason.contains("expected a JSON object")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn unavailable_then_success_uploads_once() {
    let harness = Harness::new();
    harness.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    harness
        .recordengine()
        .respond(FakeResponse::Fail(RecordEngineError::Unavailable {
            operation: "upload",
            status: Some(503),
            retry_after: Some(Duration::from_secs(7)),
            detail: "HTTP 503: maintenance".into(),
        }));

    let first = harness.upload("inbox/5/12/a.pdf").await;
    let second = harness.upload("inbox/5/12/a.pdf").await;

    assert_eq!(
        first,
        UploadOutcome::Retry {
            after: Some(Duration::from_secs(7)),
            error: "RecordEngine upload failed and may be retried: HTTP 503: maintenance".into()
        }
    );
    assert!(first.should_retry());
    assert!(matches!(second, UploadOutcome::Uploaded { .. }), "{second:?}");
    assert_eq!(harness.recordengine().documents().len(), 1);
    assert!(
        harness.uploader.failures.all().is_empty(),
        "a retryable failure is not a failure record"
    );
}

#[tokio::test]
async fn unauthorized_fails_once_and_alerts_once() {
    let harness = Harness::new();
    for key in ["inbox/5/12/a.pdf", "inbox/5/12/b.pdf"] {
        harness.objects.put(BUCKET, key, b"%PDF");
        harness
            .recordengine()
            .respond(FakeResponse::Fail(RecordEngineError::Unauthorized {
                operation: "upload",
            }));
    }

    let first = harness.upload("inbox/5/12/a.pdf").await;
    let second = harness.upload("inbox/5/12/b.pdf").await;

    for outcome in [&first, &second] {
        assert!(
            matches!(
                outcome,
                UploadOutcome::Failed {
                    error_class: "permanent",
                    ..
                }
            ),
            "{outcome:?}"
        );
        assert!(!outcome.should_retry());
    }
    assert_eq!(
        harness.uploader.failures.all().len(),
        2,
        "one failure record per object, for redrive"
    );
    let alerts = harness.alerts();
    assert_eq!(alerts.len(), 1, "one alert for a revoked token, not one per file");
    assert_eq!(alerts[0].kind, "recordengine_unauthorized");
    assert!(alerts[0].params["error"].contains("HTTP 401"));
}

#[tokio::test]
async fn other_4xx_fails_with_upload_failed_alert() {
    let harness = Harness::new();
    harness.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    harness
        .recordengine()
        .respond(FakeResponse::Fail(RecordEngineError::Rejected {
            operation: "upload",
            status: 422,
            body: r#"{"detail": "Contact not found"}"#.into(),
        }));

    let outcome = harness.upload("inbox/5/12/a.pdf").await;

    assert!(matches!(outcome, UploadOutcome::Failed { .. }), "{outcome:?}");
    let alerts = harness.alerts();
    assert_eq!(alerts[0].kind, "upload_failed");
    assert!(alerts[0].params["error"].contains("Contact not found"));
    let failure = &harness.uploader.failures.all()[0];
    assert!(failure.error.contains("HTTP 422"));
    assert_eq!(failure.s3_key.as_deref(), Some("inbox/5/12/a.pdf"));
}

#[tokio::test]
async fn ambiguous_upload_found_by_lookup() {
    let harness = Harness::new();
    harness.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    harness
        .recordengine()
        .respond(FakeResponse::CreatedButFail(ambiguous()));

    let first = harness.upload("inbox/5/12/a.pdf").await;
    let second = harness.upload("inbox/5/12/a.pdf").await;

    assert!(first.should_retry(), "{first:?}");
    let created = harness.recordengine().documents();
    assert_eq!(created.len(), 1);
    assert_eq!(
        second,
        UploadOutcome::Uploaded {
            document_id: created[0].document_id.unwrap(),
            correlation_key: s3_correlation_key(
                BUCKET,
                "inbox/5/12/a.pdf",
                None,
                harness.objects.event_ref(BUCKET, "inbox/5/12/a.pdf").etag.as_deref()
            ),
            found_by_lookup: true,
        }
    );
    assert_eq!(harness.recordengine().upload_attempts(), 1, "not uploaded again");
    let view = harness
        .uploader
        .store
        .document_view(created[0].document_id.unwrap())
        .await
        .unwrap();
    assert!(view.timeline[0].detail.contains("unknown outcome"));
}

#[tokio::test]
async fn ambiguous_upload_not_found_is_sent_again() {
    let harness = Harness::new();
    harness.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    harness.recordengine().respond(FakeResponse::Fail(ambiguous()));

    let first = harness.upload("inbox/5/12/a.pdf").await;
    let second = harness.upload("inbox/5/12/a.pdf").await;
    let third = harness.upload("inbox/5/12/a.pdf").await;

    assert!(first.should_retry());
    assert!(
        matches!(
            second,
            UploadOutcome::Uploaded {
                found_by_lookup: false,
                ..
            }
        ),
        "{second:?}"
    );
    assert!(matches!(third, UploadOutcome::AlreadyUploaded { .. }), "{third:?}");
    assert_eq!(harness.recordengine().documents().len(), 1);
    assert_eq!(harness.recordengine().lookup_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn ambiguous_upload_waits_to_settle() {
    let harness = Harness::with_config(UploaderConfig {
        uncertain_settle: Duration::from_secs(300),
        ..UploaderConfig::default()
    });
    harness.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    harness.recordengine().respond(FakeResponse::Fail(ambiguous()));

    harness.upload("inbox/5/12/a.pdf").await;
    let second = harness.upload("inbox/5/12/a.pdf").await;

    let UploadOutcome::Retry { after: Some(after), .. } = second else {
        panic!("expected Retry, got {second:?}");
    };
    assert!(
        after > Duration::from_secs(290) && after <= Duration::from_secs(300),
        "{after:?}"
    );
    assert_eq!(harness.recordengine().lookup_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn inconclusive_lookup_is_left_for_operator() {
    let harness = Harness::new();
    harness.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    harness.recordengine().respond(FakeResponse::Fail(ambiguous()));
    harness
        .recordengine()
        .answer_lookup(Ok(Lookup::Inconclusive("no lookup strategy is configured".into())));

    harness.upload("inbox/5/12/a.pdf").await;
    let second = harness.upload("inbox/5/12/a.pdf").await;

    let UploadOutcome::LeftForOperator {
        correlation_key,
        reason,
        failure_id,
    } = second
    else {
        panic!("expected LeftForOperator, got {second:?}");
    };
    assert!(reason.contains("no lookup strategy"));
    assert_eq!(harness.recordengine().upload_attempts(), 1, "not uploaded blindly");
    let alerts = harness.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, "upload_ambiguous");
    assert_eq!(alerts[0].params["correlation_key"], correlation_key);
    assert_eq!(alerts[0].failure_id, failure_id);
    assert_eq!(harness.uploader.failures.all()[0].error_class, "ambiguous");
    assert_eq!(
        harness.upload_record(&correlation_key).unwrap().status,
        upload_status::AMBIGUOUS
    );
}

#[tokio::test]
async fn expired_lease_is_checked_not_reuploaded() {
    let harness = Harness::new();
    harness.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    let object = harness.objects.event_ref(BUCKET, "inbox/5/12/a.pdf");
    let correlation_key = s3_correlation_key(BUCKET, &object.key, None, object.etag.as_deref());
    let stale = UploadRecord {
        pk: reference_pk(&correlation_key),
        sk: "document".into(),
        origin: Default::default(),
        status: upload_status::UPLOADING.into(),
        document_id: None,
        lease_until: Some(chrono::Utc::now().timestamp() - 10),
        last_error: None,
        external_refs_sent: None,
        contact_id: None,
        folder_id: None,
        profile_id: None,
        filename: None,
        updated_at: "2026-12-04T08:00:00.000Z".into(),
    };
    harness.uploader.store.put_upload(&stale);
    harness
        .recordengine()
        .answer_lookup(Ok(Lookup::Found { document_id: 77 }));

    let outcome = harness.upload("inbox/5/12/a.pdf").await;

    assert_eq!(
        outcome,
        UploadOutcome::Uploaded {
            document_id: 77,
            correlation_key,
            found_by_lookup: true
        }
    );
    assert_eq!(harness.recordengine().upload_attempts(), 0);
}

#[tokio::test]
async fn live_lease_is_in_progress() {
    let harness = Harness::new();
    harness.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    let object = harness.objects.event_ref(BUCKET, "inbox/5/12/a.pdf");
    let correlation_key = s3_correlation_key(BUCKET, &object.key, None, object.etag.as_deref());
    harness.uploader.store.put_upload(&UploadRecord {
        pk: reference_pk(&correlation_key),
        sk: "document".into(),
        origin: Default::default(),
        status: upload_status::UPLOADING.into(),
        document_id: None,
        lease_until: Some(chrono::Utc::now().timestamp() + 120),
        last_error: None,
        external_refs_sent: None,
        contact_id: None,
        folder_id: None,
        profile_id: None,
        filename: None,
        updated_at: "2026-12-04T08:00:00.000Z".into(),
    });

    let outcome = harness.upload("inbox/5/12/a.pdf").await;

    let UploadOutcome::InProgress { after } = outcome else {
        panic!("expected InProgress, got {outcome:?}");
    };
    assert!(outcome.should_retry());
    assert_eq!(outcome.category(), "skipped");
    assert!(
        after >= Duration::from_secs(118) && after <= Duration::from_secs(120),
        "{after:?}"
    );
    assert_eq!(harness.recordengine().upload_attempts(), 0);
}

#[tokio::test]
async fn non_candidates_are_skipped() {
    let harness = Harness::new();
    harness.objects.put(BUCKET, "inbox/5/12/", b"");
    harness.objects.put(BUCKET, "scheduled/5/12/a.pdf", b"%PDF");
    harness.objects.put(BUCKET, "inbox/5/12/changed.pdf", b"%PDF v1");
    let stale_event = harness.objects.event_ref(BUCKET, "inbox/5/12/changed.pdf");
    harness.objects.put(BUCKET, "inbox/5/12/changed.pdf", b"%PDF v2");
    let gone = ObjectRef {
        key: "inbox/5/12/gone.pdf".into(),
        ..stale_event.clone()
    };

    let marker = harness.upload("inbox/5/12/").await;
    let scheduled = harness.upload("scheduled/5/12/a.pdf").await;
    let overwritten = harness
        .uploader
        .upload_object(&harness.objects, &stale_event, None)
        .await;
    let missing = harness.uploader.upload_object(&harness.objects, &gone, None).await;

    for (outcome, expected) in [
        (&marker, "folder marker"),
        (&scheduled, "wait for the scheduled run"),
        (&overwritten, "was overwritten"),
        (&missing, "no longer exists"),
    ] {
        assert!(
            matches!(outcome, UploadOutcome::Skipped { reason } if reason.contains(expected)),
            "{outcome:?}"
        );
    }
    assert_eq!(harness.recordengine().upload_attempts(), 0);
    assert!(harness.alerts().is_empty());
}

#[tokio::test]
async fn storage_outage_means_retry() {
    let harness = Harness::new();
    harness.objects.put(BUCKET, "inbox/5/12/a.pdf", b"%PDF");
    harness.uploader.store.fail.store(true, Ordering::SeqCst);

    let outcome = harness.upload("inbox/5/12/a.pdf").await;

    assert!(outcome.should_retry(), "{outcome:?}");
    assert_eq!(harness.recordengine().upload_attempts(), 0);
}

fn schedule_config(concurrency: usize) -> ScheduleConfig {
    ScheduleConfig {
        bucket: BUCKET.into(),
        prefix: "scheduled/".into(),
        concurrency,
        deadline_margin: Duration::from_secs(5),
        upload_margin: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn scheduled_run_uploads_each_file_once() {
    let harness = Harness::new();
    for index in 0..25 {
        harness.objects.put(
            BUCKET,
            &format!("scheduled/8/9/file-{index:02}.pdf"),
            format!("%PDF {index}").as_bytes(),
        );
    }
    *harness.objects.page_size.lock().unwrap() = Some(10);
    *harness.recordengine().delay.lock().unwrap() = Duration::from_millis(20);
    let handoff = FakeHandoff::default();
    let deadline = Instant::now() + Duration::from_secs(60);

    let first = run_scheduled(
        &harness.uploader,
        &harness.objects,
        &handoff,
        &schedule_config(4),
        deadline,
    )
    .await;
    let second = run_scheduled(
        &harness.uploader,
        &harness.objects,
        &handoff,
        &schedule_config(4),
        deadline,
    )
    .await;

    assert_eq!(
        (first.listed, first.uploaded, first.skipped, first.failed),
        (25, 25, 0, 0),
        "{first:?}"
    );
    assert!(first.listing_complete);
    let max_in_flight = harness.recordengine().max_in_flight.load(Ordering::SeqCst);
    assert!(max_in_flight <= 4, "at most 4 uploads at once, saw {max_in_flight}");
    assert!(max_in_flight >= 2, "uploads ran concurrently, saw {max_in_flight}");
    let mut names: Vec<String> = harness
        .recordengine()
        .documents()
        .into_iter()
        .map(|upload| upload.filename)
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 25, "each file once");
    assert_eq!(
        (second.uploaded, second.skipped, second.failed),
        (0, 25, 0),
        "{second:?}"
    );
    assert_eq!(harness.recordengine().upload_attempts(), 25);
    assert!(handoff.queued.lock().unwrap().is_empty());
    let documents = harness.recordengine().documents();
    assert!(
        documents
            .iter()
            .all(|upload| (upload.contact_id, upload.folder_id) == (8, 9))
    );
}

#[tokio::test]
async fn scheduled_run_hands_off_near_deadline() {
    let harness = Harness::new();
    for index in 0..6 {
        harness
            .objects
            .put(BUCKET, &format!("scheduled/8/9/f{index}.pdf"), b"%PDF");
    }
    *harness.objects.page_size.lock().unwrap() = Some(2);
    let handoff = FakeHandoff::default();
    // Inside the margin from the start: nothing may start.
    let deadline = Instant::now() + Duration::from_secs(4);

    let summary = run_scheduled(
        &harness.uploader,
        &harness.objects,
        &handoff,
        &schedule_config(2),
        deadline,
    )
    .await;

    assert_eq!(summary.uploaded, 0);
    assert_eq!(harness.recordengine().upload_attempts(), 0);
    assert_eq!(summary.handed_off, 6, "{summary:?}");
    assert!(summary.listing_complete);
    let queued = handoff.queued.lock().unwrap().clone();
    assert_eq!(queued.len(), 6);
    assert!(queued.iter().all(|object| object.channel == Channel::Schedule));
}

#[tokio::test]
async fn scheduled_run_counts_failures() {
    let harness = Harness::new();
    harness.objects.put(BUCKET, "scheduled/8/9/a.pdf", b"%PDF");
    harness.objects.put(BUCKET, "scheduled/8/9/b.exe", b"MZ");
    harness.objects.put(BUCKET, "scheduled/8/9/sub/", b"");
    let handoff = FakeHandoff::default();

    let summary = run_scheduled(
        &harness.uploader,
        &harness.objects,
        &handoff,
        &schedule_config(2),
        Instant::now() + Duration::from_secs(60),
    )
    .await;

    assert_eq!(
        (summary.listed, summary.uploaded, summary.failed),
        (2, 1, 1),
        "{summary:?}"
    );
    assert!(summary.failures[0].contains("b.exe"));
}

#[tokio::test]
async fn local_files_use_the_same_path() {
    let harness = Harness::new();
    let directory = std::env::temp_dir().join(format!("bridge-local-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).unwrap();
    let invoice = directory.join("2024年 发票.pdf");
    std::fs::write(&invoice, b"%PDF local").unwrap();
    let unsupported = directory.join("notes.md");
    std::fs::write(&unsupported, b"# notes").unwrap();
    let missing = directory.join("missing.pdf");
    let target = Target {
        contact_id: 5,
        folder_id: 12,
        profile_id: None,
        resolved_by: "command line".into(),
    };
    let paths = vec![invoice.clone(), unsupported, missing];

    let first = upload_local_files(&harness.uploader, &paths, &target, None).await;
    let again = upload_local_files(&harness.uploader, &paths[..1], &target, None).await;

    assert!(
        matches!(first[0].outcome, UploadOutcome::Uploaded { .. }),
        "{:?}",
        first[0]
    );
    assert!(
        matches!(&first[1].outcome, UploadOutcome::Rejected { reason, failure_id: None } if reason.contains(".md")),
        "{:?}",
        first[1]
    );
    assert!(
        matches!(&first[2].outcome, UploadOutcome::Rejected { reason, .. } if reason.contains("cannot read")),
        "{:?}",
        first[2]
    );
    assert!(
        matches!(again[0].outcome, UploadOutcome::AlreadyUploaded { .. }),
        "{:?}",
        again[0]
    );
    let received = harness.recordengine().documents();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].filename, "2024年 发票.pdf");
    assert_eq!(received[0].sha256, hex::encode(Sha256::digest(b"%PDF local")));
    assert!(received[0].external_refs.contains("\"record_type\":\"local_file\""));
    let UploadOutcome::Uploaded { document_id, .. } = first[0].outcome else {
        unreachable!()
    };
    let document = harness.uploader.store.get_document(document_id).await.unwrap().unwrap();
    assert_eq!(document.origin.unwrap().channel.as_deref(), Some("bridgectl"));
    assert!(harness.uploader.failures.all().is_empty());
    std::fs::remove_dir_all(&directory).unwrap();
}
