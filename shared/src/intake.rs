//! The front half of the outbound path: archive, parse, deduplicate,
//! correlate and route one authenticated webhook body.
//!
//! The webhook function calls [`Intake::receive`]; the reconciliation sweep
//! calls [`Intake::route_archived`] on bodies that reached the archive but
//! were never routed. Both paths share the same deduplication, so a payload
//! routed by one is a duplicate for the other.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::json::Node;
use crate::message::{ArchivePointer, MESSAGE_VERSION, RoutedMessage, export_fingerprint, idempotency_key};
use crate::payload::{ExportDocument, PayloadError, WebhookEvent, parse_webhook};
use crate::ports::{DocumentStore, ExportClaim, InfraError, MessageQueue, RawArchive};
use crate::records::{
    DOCUMENT_SK, DocumentRecord, EXTERNAL_REFS_KEY, ExportRecord, Origin, TimelineEntry, document_pk, export_sk,
    export_status,
};
use crate::rules::{Decision, RuleSet};

/// Prefix of archived webhook bodies in the archive bucket.
pub const ARCHIVE_PREFIX: &str = "raw/";

/// Tunables of the intake.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// Largest body that is parsed; larger ones are archived and answered 413.
    pub max_body_bytes: usize,
    /// Payloads up to this size travel inside the SQS message; larger ones
    /// travel as a pointer to the archive, keeping under the SQS limit of 256 KiB.
    pub max_inline_payload_bytes: usize,
    /// How long a delivery's claim on an export holds before another may take over.
    pub claim_lease_seconds: i64,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            max_body_bytes: 1024 * 1024,
            max_inline_payload_bytes: 200 * 1024,
            claim_lease_seconds: 60,
        }
    }
}

/// What happened to one body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Routed now: one message per destination was sent.
    Accepted {
        document_id: i64,
        routes: Vec<String>,
        #[serde(skip)]
        fingerprint: String,
    },
    /// The same export was routed before, or is being routed right now.
    Duplicate {
        document_id: i64,
        #[serde(skip)]
        fingerprint: String,
    },
    /// Not a `document.exported` event; archived and logged only.
    Ignored { event: Option<String> },
    /// The body could not be read; archived so that it can be fixed and replayed.
    Rejected {
        #[serde(rename = "error")]
        message: String,
        #[serde(skip)]
        error: PayloadError,
    },
    /// Larger than `max_body_bytes`; archived, not parsed.
    TooLarge { size: usize, limit: usize },
}

/// The archive key for a body: `raw/YYYY/MM/DD/<sha256>.json`. The same body
/// on the same day maps to the same key, so archiving it twice is harmless.
pub fn archive_key(received_at: DateTime<Utc>, body: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(body));
    format!("{ARCHIVE_PREFIX}{}/{digest}.json", received_at.format("%Y/%m/%d"))
}

/// The correlation key this bundle put in `external_refs` at upload, if any.
pub fn correlation_key(document: &ExportDocument) -> Option<String> {
    let reference = document.external_refs.get(EXTERNAL_REFS_KEY)?;
    match reference.get("record_id")? {
        Node::String(key) if !key.trim().is_empty() => Some(key.trim().to_owned()),
        Node::Number(key) => Some(key.clone()),
        _ => None,
    }
}

/// Archives, deduplicates, correlates and routes webhook bodies.
pub struct Intake<A, S, Q> {
    pub archive: Arc<A>,
    pub store: Arc<S>,
    pub queues: Arc<Q>,
    pub rules: Arc<RuleSet>,
    pub config: IntakeConfig,
}

impl<A: RawArchive, S: DocumentStore, Q: MessageQueue> Intake<A, S, Q> {
    /// Archives an authenticated body byte for byte, then routes it.
    /// Returns the outcome and the archive key.
    pub async fn receive(&self, body: &[u8], now: DateTime<Utc>) -> Result<(Outcome, String), InfraError> {
        let key = archive_key(now, body);
        self.archive.put(&key, body).await?;

        if body.len() > self.config.max_body_bytes {
            let outcome = Outcome::TooLarge {
                size: body.len(),
                limit: self.config.max_body_bytes,
            };
            return Ok((outcome, key));
        }

        let outcome = self.route_archived(body, &key, now).await?;
        Ok((outcome, key))
    }

    /// Parses and routes a body that is already in the archive under `key`.
    pub async fn route_archived(&self, body: &[u8], key: &str, now: DateTime<Utc>) -> Result<Outcome, InfraError> {
        let document = match parse_webhook(body) {
            Ok(WebhookEvent::Export(document)) => document,
            Ok(WebhookEvent::Other { event }) => return Ok(Outcome::Ignored { event }),
            Err(error) => {
                return Ok(Outcome::Rejected {
                    message: error.to_string(),
                    error,
                });
            }
        };
        let fingerprint = export_fingerprint(&document.canonical_content());

        // Deduplicate: exactly one delivery of an export wins the claim.
        let candidate = self.export_record(&document, &fingerprint, key, now);
        let claimed = match self.store.claim_export(&candidate, now.timestamp()).await? {
            ExportClaim::Claimed(claimed) => *claimed,
            ExportClaim::AlreadyRouted(_) | ExportClaim::InProgress(_) => {
                let entry = TimelineEntry::new(document.id, now, "duplicate_export", "the same export arrived again")
                    .with_data(&serde_json::json!({ "fingerprint": fingerprint, "archive_key": key }));
                if let Err(error) = self.store.append_timeline(&entry).await {
                    tracing::warn!(document_id = document.id, error = %error, "could not record a duplicate export");
                }
                return Ok(Outcome::Duplicate {
                    document_id: document.id,
                    fingerprint,
                });
            }
        };

        match self.route_claimed(&document, &fingerprint, claimed.clone(), now).await {
            Ok(routes) => Ok(Outcome::Accepted {
                document_id: document.id,
                routes,
                fingerprint,
            }),
            Err(error) => {
                // Leave the export visibly unrouted so that a retry or the
                // sweep routes it; the body is safe in the archive.
                let mut unrouted = claimed;
                unrouted.status = export_status::UNROUTED.into();
                unrouted.last_error = Some(error.to_string());
                unrouted.updated_at = rfc3339(now);
                if let Err(mark_error) = self.store.finish_export(&unrouted).await {
                    tracing::error!(
                        document_id = document.id,
                        error = %mark_error,
                        "could not mark an export unrouted; the sweep will find its expired claim"
                    );
                }
                Err(error)
            }
        }
    }

    async fn route_claimed(
        &self,
        document: &ExportDocument,
        fingerprint: &str,
        mut record: ExportRecord,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, InfraError> {
        let existing = self.store.get_document(document.id).await?;
        let origin = self.correlate(document, existing.as_ref()).await?;
        let decision = self.rules.decide(document);

        for route in &decision.routes {
            let message = self.message(
                document,
                fingerprint,
                &route.destination,
                route.approval,
                &decision,
                &origin,
                &record,
                now,
            );
            let body = serde_json::to_string(&message).map_err(|error| {
                InfraError::new("SQS", "SendMessage", format!("could not serialise message: {error}"))
            })?;
            let attributes = [
                ("destination", route.destination.clone()),
                ("document_id", document.id.to_string()),
                ("idempotency_key", message.idempotency_key.clone()),
                ("fingerprint", fingerprint.to_owned()),
            ];
            self.queues.send(&route.destination, &body, &attributes).await?;
        }

        let routes: Vec<String> = decision.routes.iter().map(|route| route.destination.clone()).collect();
        record.status = export_status::ROUTED.into();
        record.routes = routes.clone();
        record.ruleset_version = Some(decision.ruleset_version.clone());
        record.rules_fired = Some(decision.rules_fired.clone());
        record.updated_at = rfc3339(now);

        // The messages are in SQS now, so the export counts as routed even if
        // the bookkeeping below fails: dispatch idempotency absorbs a re-route.
        if let Err(error) = self
            .record_routing(document, existing, origin, &record, &decision, now)
            .await
        {
            tracing::error!(document_id = document.id, error = %error, "routed, but could not record the routing");
        }
        Ok(routes)
    }

    async fn record_routing(
        &self,
        document: &ExportDocument,
        existing: Option<DocumentRecord>,
        origin: Option<Origin>,
        record: &ExportRecord,
        decision: &Decision,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        self.store.finish_export(record).await?;

        let exported = TimelineEntry::new(document.id, now, "exported", "document.exported received").with_data(
            &serde_json::json!({
                "fingerprint": record.fingerprint,
                "archive_key": record.archive_key,
                "filename": document.display_filename(),
            }),
        );
        self.store.append_timeline(&exported).await?;

        let detail = if decision.routes.is_empty() {
            format!("no rule chose a destination (rule set {})", decision.ruleset_version)
        } else {
            format!(
                "routed to {} by {} (rule set {})",
                record.routes.join(", "),
                decision.rules_fired.join(", "),
                decision.ruleset_version
            )
        };
        // Routing finished after the export arrived; the later time also keeps the two entries in order.
        let routed_at = Utc::now().max(now + chrono::Duration::microseconds(1));
        let routed = TimelineEntry::new(document.id, routed_at, "routed", detail).with_data(decision);
        self.store.append_timeline(&routed).await?;

        let updated = match existing {
            Some(mut document_record) => {
                if document_record.origin.is_none() {
                    document_record.origin = origin;
                }
                document_record.status = "exported".into();
                document_record.last_export_at = Some(rfc3339(now));
                document_record.updated_at = rfc3339(now);
                document_record
            }
            // A document uploaded in the UI, by email, or by an upload whose
            // response was lost: create its record from the export.
            None => DocumentRecord {
                pk: document_pk(document.id),
                sk: DOCUMENT_SK.into(),
                document_id: document.id,
                origin,
                external_refs_sent: None,
                contact_id: document.contact_id,
                folder_id: document.folder_id,
                profile_id: None,
                filename: document.display_filename().map(str::to_owned),
                status: "exported".into(),
                created_at: rfc3339(now),
                updated_at: rfc3339(now),
                last_export_at: Some(rfc3339(now)),
            },
        };
        self.store.put_document(&updated).await
    }

    /// Finds where the document came from: by RecordEngine id first, then by
    /// the correlation key in `external_refs` (which also resolves an upload
    /// whose response never arrived).
    async fn correlate(
        &self,
        document: &ExportDocument,
        existing: Option<&DocumentRecord>,
    ) -> Result<Option<Origin>, InfraError> {
        if let Some(origin) = existing.and_then(|record| record.origin.clone()) {
            return Ok(Some(origin));
        }
        let Some(key) = correlation_key(document) else {
            return Ok(None);
        };
        let upload = self.store.get_upload(&key).await?;
        Ok(upload.map(|upload| upload.origin))
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &self,
        document: &ExportDocument,
        fingerprint: &str,
        destination: &str,
        approval: crate::rules::Approval,
        decision: &Decision,
        origin: &Option<Origin>,
        record: &ExportRecord,
        now: DateTime<Utc>,
    ) -> RoutedMessage {
        let payload_size = document.raw.to_canonical_string().len();
        let payload = (payload_size <= self.config.max_inline_payload_bytes).then(|| document.raw.clone());

        RoutedMessage {
            message_version: MESSAGE_VERSION,
            document_id: document.id,
            fingerprint: fingerprint.to_owned(),
            destination: destination.to_owned(),
            idempotency_key: idempotency_key(document.id, fingerprint, destination),
            approval,
            decision: decision.clone(),
            origin: origin.clone(),
            archive: ArchivePointer {
                bucket: record.archive_bucket.clone(),
                key: record.archive_key.clone(),
            },
            received_at: rfc3339(now),
            payload,
        }
    }

    fn export_record(
        &self,
        document: &ExportDocument,
        fingerprint: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> ExportRecord {
        ExportRecord {
            pk: document_pk(document.id),
            sk: export_sk(fingerprint),
            document_id: document.id,
            fingerprint: fingerprint.to_owned(),
            status: export_status::ROUTING.into(),
            lease_until: now.timestamp() + self.config.claim_lease_seconds,
            archive_bucket: self.archive.bucket().to_owned(),
            archive_key: key.to_owned(),
            received_at: rfc3339(now),
            routes: Vec::new(),
            ruleset_version: None,
            rules_fired: None,
            deliveries: 1,
            last_error: None,
            updated_at: rfc3339(now),
        }
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::fakes::{FakeArchive, FakeQueues, FakeStore};
    use crate::ports::DocumentStore;
    use crate::rules::{BUNDLED_RULES, DEFAULT_DESTINATIONS};

    const DOCUMENTED: &str = include_str!("../../tests/fixtures/recordengine/document-exported.json");

    fn intake() -> Intake<FakeArchive, FakeStore, FakeQueues> {
        let destinations: BTreeSet<String> = DEFAULT_DESTINATIONS.iter().map(|name| name.to_string()).collect();
        Intake {
            archive: Arc::new(FakeArchive::default()),
            store: Arc::new(FakeStore::default()),
            queues: Arc::new(FakeQueues::default()),
            rules: Arc::new(RuleSet::from_yaml(BUNDLED_RULES, "bundled", &destinations).unwrap()),
            config: IntakeConfig::default(),
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-04T08:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn queue_failure_leaves_the_export_unrouted_then_a_retry_routes_it() {
        let intake = intake();
        intake.queues.fail.store(true, Ordering::SeqCst);

        let error = intake.receive(DOCUMENTED.as_bytes(), now()).await.unwrap_err();

        assert_eq!(error.service, "SQS");
        assert_eq!(
            intake.archive.objects.lock().unwrap().len(),
            1,
            "archived before routing"
        );
        let fingerprint = export_fingerprint(&match crate::payload::parse_webhook(DOCUMENTED.as_bytes()).unwrap() {
            WebhookEvent::Export(document) => document.canonical_content(),
            other => panic!("{other:?}"),
        });
        let record = intake.store.get_export(847, &fingerprint).await.unwrap().unwrap();
        assert_eq!(record.status, export_status::UNROUTED);
        assert!(record.last_error.unwrap().contains("SQS SendMessage failed"));

        intake.queues.fail.store(false, Ordering::SeqCst);
        let (outcome, _) = intake.receive(DOCUMENTED.as_bytes(), now()).await.unwrap();

        assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
        let record = intake.store.get_export(847, &fingerprint).await.unwrap().unwrap();
        assert_eq!(record.status, export_status::ROUTED);
        assert_eq!(record.deliveries, 2);
    }

    #[tokio::test]
    async fn archive_failure_stores_and_queues_nothing() {
        let intake = intake();
        intake.archive.fail.store(true, Ordering::SeqCst);

        let error = intake.receive(DOCUMENTED.as_bytes(), now()).await.unwrap_err();

        assert_eq!(error.service, "S3");
        assert!(intake.store.items.lock().unwrap().is_empty());
        assert_eq!(intake.queues.count(), 0);
    }

    #[tokio::test]
    async fn an_expired_claim_can_be_taken_over() {
        let intake = intake();
        let document = match crate::payload::parse_webhook(DOCUMENTED.as_bytes()).unwrap() {
            WebhookEvent::Export(document) => document,
            other => panic!("{other:?}"),
        };
        let fingerprint = export_fingerprint(&document.canonical_content());
        let stale = intake.export_record(
            &document,
            &fingerprint,
            "raw/x.json",
            now() - chrono::Duration::minutes(10),
        );
        intake
            .store
            .claim_export(&stale, (now() - chrono::Duration::minutes(10)).timestamp())
            .await
            .unwrap();

        let (outcome, _) = intake.receive(DOCUMENTED.as_bytes(), now()).await.unwrap();

        assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_live_claim_answers_duplicate() {
        let intake = intake();
        let document = match crate::payload::parse_webhook(DOCUMENTED.as_bytes()).unwrap() {
            WebhookEvent::Export(document) => document,
            other => panic!("{other:?}"),
        };
        let fingerprint = export_fingerprint(&document.canonical_content());
        let live = intake.export_record(&document, &fingerprint, "raw/x.json", now());
        intake.store.claim_export(&live, now().timestamp()).await.unwrap();

        let (outcome, _) = intake.receive(DOCUMENTED.as_bytes(), now()).await.unwrap();

        assert!(matches!(outcome, Outcome::Duplicate { .. }), "{outcome:?}");
        assert_eq!(intake.queues.count(), 0);
    }

    #[tokio::test]
    async fn large_payloads_travel_as_archive_pointers() {
        let mut intake = intake();
        intake.config.max_inline_payload_bytes = 100;

        intake.receive(DOCUMENTED.as_bytes(), now()).await.unwrap();

        let body = &intake.queues.bodies("accounting")[0];
        let message: RoutedMessage = serde_json::from_str(body).unwrap();
        assert!(message.payload.is_none());
        assert!(message.archive.key.starts_with("raw/2026/12/04/"));
        assert_eq!(message.archive.bucket, "fake-archive");
    }

    #[tokio::test]
    async fn bookkeeping_failure_after_sending_still_counts_as_routed() {
        let intake = intake();
        // Fail the store only after the claim: the messages are already in SQS.
        let store = Arc::clone(&intake.store);
        let queues = Arc::clone(&intake.queues);
        let task = tokio::spawn(async move {
            for _ in 0..1000 {
                if queues.count() > 0 {
                    store.fail.store(true, Ordering::SeqCst);
                    break;
                }
                tokio::task::yield_now().await;
            }
        });

        let result = intake.receive(DOCUMENTED.as_bytes(), now()).await;
        task.await.unwrap();

        assert!(result.is_ok(), "{result:?}");
        assert!(intake.queues.count() >= 1);
    }

    #[test]
    fn archive_keys_are_dated_and_content_addressed() {
        let key = archive_key(now(), b"{}");

        assert_eq!(
            key,
            "raw/2026/12/04/44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a.json"
        );
    }

    #[test]
    fn correlation_key_forms() {
        let mut document = match crate::payload::parse_webhook(DOCUMENTED.as_bytes()).unwrap() {
            WebhookEvent::Export(document) => *document,
            other => panic!("{other:?}"),
        };
        assert_eq!(correlation_key(&document), None);

        document.external_refs.insert(
            EXTERNAL_REFS_KEY.into(),
            Node::parse(r#"{"record_id": " s3-abc ", "record_type": "s3_object"}"#).unwrap(),
        );
        assert_eq!(correlation_key(&document).as_deref(), Some("s3-abc"));

        document
            .external_refs
            .insert(EXTERNAL_REFS_KEY.into(), Node::parse(r#"{"record_id": ""}"#).unwrap());
        assert_eq!(correlation_key(&document), None);
    }
}
