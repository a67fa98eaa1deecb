//! The one upload path shared by S3 drops, the scheduled run and `bridgectl`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::event::UploadRequestMessage;
use super::mapping::{MappingRules, Target};
use super::ports::{FailureLog, ObjectInfo, ObjectStore, UploadClaim, UploadLedger};
use super::{Channel, ObjectRef, filename_of, s3_correlation_key};
use crate::alerts::{OperationalAlert, kind};
use crate::failures::{FailureRecord, error_class, failure_status};
use crate::json::Node;
use crate::ports::{DocumentStore, InfraError, MessageQueue};
use crate::recordengine::{
    DocumentApi, FileBody, Lookup, RecordEngineError, SUPPORTED_EXTENSIONS, UploadRequest, content_type_for, extension,
};
use crate::records::{
    DOCUMENT_SK, DocumentRecord, EXTERNAL_REFS_KEY, Origin, TimelineEntry, UploadRecord, document_pk, reference_pk,
};

/// Destination name of the alerts queue in the [`MessageQueue`] port.
pub const ALERTS_DESTINATION: &str = "alerts";

/// Upload record states.
pub mod upload_status {
    pub const UPLOADING: &str = "uploading";
    pub const UPLOADED: &str = "uploaded";
    pub const AMBIGUOUS: &str = "ambiguous";
    pub const FAILED: &str = "failed";
}

/// Tags written on an uploaded S3 object.
pub const STATUS_TAG: &str = "recordengine-status";
pub const DOCUMENT_ID_TAG: &str = "recordengine-id";

/// Tunables of the uploader.
#[derive(Debug, Clone)]
pub struct UploaderConfig {
    /// Stored as `recorded_by` in failure records: `s3-upload`, `scheduled-upload`, `bridgectl`.
    pub recorded_by: String,
    /// How long an `uploading` claim holds. It must exceed the longest upload,
    /// because a claim that runs out is treated as an upload of unknown outcome.
    pub lease_seconds: i64,
    /// How long after an ambiguous upload the lookup runs, giving RecordEngine
    /// time to finish a request that was still in progress when the client gave up.
    pub uncertain_settle: Duration,
    /// Keys under these prefixes are not uploaded from S3 events (the scheduled
    /// prefix, whose objects wait for the scheduled run).
    pub event_ignored_prefixes: Vec<String>,
    /// Whether uploaded S3 objects get the [`STATUS_TAG`] and [`DOCUMENT_ID_TAG`] tags.
    pub tag_objects: bool,
}

impl Default for UploaderConfig {
    fn default() -> Self {
        UploaderConfig {
            recorded_by: "s3-upload".into(),
            lease_seconds: 960,
            uncertain_settle: Duration::from_secs(60),
            event_ignored_prefixes: Vec::new(),
            tag_objects: true,
        }
    }
}

/// Outcome of one object's upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// RecordEngine has the document now; `found_by_lookup` when an earlier
    /// ambiguous upload turned out to have succeeded.
    Uploaded {
        document_id: i64,
        correlation_key: String,
        found_by_lookup: bool,
    },
    /// This object version was uploaded before; nothing was sent.
    AlreadyUploaded {
        document_id: Option<i64>,
        correlation_key: String,
    },
    /// Not an upload candidate: a folder marker, a key under an ignored
    /// prefix, or an object that is gone or was overwritten.
    Skipped { reason: String },
    /// Not uploaded and never will be as it is: unsupported type, empty,
    /// unmapped. A failure record and an `upload_rejected` alert were written
    /// (for S3 objects).
    Rejected { reason: String, failure_id: Option<String> },
    /// Failed for good (401, another 4xx); recorded and alerted.
    Failed {
        error_class: &'static str,
        error: String,
        failure_id: Option<String>,
    },
    /// May succeed later; `after` is RecordEngine's `Retry-After`, if it sent one.
    Retry { after: Option<Duration>, error: String },
    /// Another caller is uploading this version right now; `after` is the rest of its lease.
    InProgress { after: Duration },
    /// The outcome of an earlier upload is unknown and no lookup could settle
    /// it; an `upload_ambiguous` alert tells an operator to check.
    LeftForOperator {
        correlation_key: String,
        reason: String,
        failure_id: Option<String>,
    },
}

impl UploadOutcome {
    /// `uploaded`, `skipped` or `failed`: the figures of a run summary.
    pub fn category(&self) -> &'static str {
        match self {
            UploadOutcome::Uploaded { .. } => "uploaded",
            UploadOutcome::AlreadyUploaded { .. }
            | UploadOutcome::Skipped { .. }
            | UploadOutcome::InProgress { .. } => "skipped",
            UploadOutcome::Rejected { .. }
            | UploadOutcome::Failed { .. }
            | UploadOutcome::Retry { .. }
            | UploadOutcome::LeftForOperator { .. } => "failed",
        }
    }

    /// Whether the message that asked for this upload should be delivered
    /// again. An upload in progress elsewhere is checked again after its lease,
    /// in case that caller dies.
    pub fn should_retry(&self) -> bool {
        matches!(self, UploadOutcome::Retry { .. } | UploadOutcome::InProgress { .. })
    }

    /// Returns the wait before the next attempt, if the outcome carries one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UploadOutcome::Retry { after, .. } => *after,
            UploadOutcome::InProgress { after } => Some(*after),
            _ => None,
        }
    }
}

/// Everything known about a file once it passed validation.
pub(crate) struct Prepared {
    pub correlation_key: String,
    pub origin: Origin,
    pub filename: String,
    pub size: u64,
    pub target: Target,
    pub external_refs: String,
    pub channel: Channel,
    /// A message that replays this upload through the inbox queue, stored in failure records.
    pub replay_body: Option<String>,
    pub s3_version_id: Option<String>,
}

/// Uploads files to RecordEngine once per object version.
pub struct Uploader<S, R, F, Q> {
    pub store: Arc<S>,
    pub recordengine: Arc<R>,
    pub failures: Arc<F>,
    pub alerts: Arc<Q>,
    pub mapping: Arc<MappingRules>,
    pub config: UploaderConfig,
    /// The hour of the last `recordengine_unauthorized` alert, so that a
    /// revoked token raises one alert an hour, not one per file.
    last_unauthorized_alert: Mutex<Option<String>>,
}

impl<S, R, F, Q> Uploader<S, R, F, Q>
where
    S: DocumentStore + UploadLedger,
    R: DocumentApi,
    F: FailureLog,
    Q: MessageQueue,
{
    pub fn new(
        store: Arc<S>,
        recordengine: Arc<R>,
        failures: Arc<F>,
        alerts: Arc<Q>,
        mapping: Arc<MappingRules>,
        config: UploaderConfig,
    ) -> Self {
        Uploader {
            store,
            recordengine,
            failures,
            alerts,
            mapping,
            config,
            last_unauthorized_alert: Mutex::new(None),
        }
    }

    /// Uploads one S3 object version unless it was uploaded before.
    /// `deadline` bounds the RecordEngine request (the Lambda deadline less a margin).
    pub async fn upload_object<O: ObjectStore>(
        &self,
        objects: &O,
        object: &ObjectRef,
        deadline: Option<Instant>,
    ) -> UploadOutcome {
        let outcome = self.upload_object_inner(objects, object, deadline).await;
        log_outcome(object, &outcome);
        outcome
    }

    async fn upload_object_inner<O: ObjectStore>(
        &self,
        objects: &O,
        object: &ObjectRef,
        deadline: Option<Instant>,
    ) -> UploadOutcome {
        if object.key.ends_with('/') {
            return UploadOutcome::Skipped {
                reason: "the key ends with / (a folder marker)".into(),
            };
        }
        if object.channel == Channel::S3
            && let Some(prefix) = self
                .config
                .event_ignored_prefixes
                .iter()
                .find(|prefix| object.key.starts_with(prefix.as_str()))
        {
            return UploadOutcome::Skipped {
                reason: format!("keys under {prefix:?} wait for the scheduled run"),
            };
        }

        // A redelivered event of an uploaded version stops here, before any S3 call.
        if object.version_id.is_some() || object.etag.is_some() {
            let key = s3_correlation_key(
                &object.bucket,
                &object.key,
                object.version_id.as_deref(),
                object.etag.as_deref(),
            );
            match self.store.get_upload(&key).await {
                Ok(Some(record)) if record.status == upload_status::UPLOADED => {
                    return UploadOutcome::AlreadyUploaded {
                        document_id: record.document_id,
                        correlation_key: key,
                    };
                }
                Ok(_) => {}
                Err(error) => return retry_infra(error),
            }
        }

        let info = match objects.head(object).await {
            Ok(Some(info)) => info,
            Ok(None) => {
                return UploadOutcome::Skipped {
                    reason: "the object no longer exists".into(),
                };
            }
            Err(error) => return retry_infra(error),
        };
        if object.channel == Channel::S3
            && object.version_id.is_none()
            && let (Some(announced), Some(current)) = (&object.etag, &info.etag)
            && announced != current
        {
            return UploadOutcome::Skipped {
                reason: format!(
                    "the object was overwritten (ETag {announced} is now {current}); the newer version has its own event"
                ),
            };
        }

        let prepared = match self.prepare_s3(object, &info) {
            Ok(prepared) => prepared,
            Err(reason) => return self.reject_s3(object, &info, reason).await,
        };
        let outcome = self.upload_prepared(prepared, || objects.open(&info), deadline).await;

        if let UploadOutcome::Uploaded { document_id, .. } = &outcome
            && self.config.tag_objects
        {
            let tags = [
                (STATUS_TAG, upload_status::UPLOADED.to_owned()),
                (DOCUMENT_ID_TAG, document_id.to_string()),
            ];
            if let Err(error) = objects.add_tags(&info, &tags).await {
                tracing::warn!(bucket = %info.bucket, key = %info.key, document_id, error = %error,
                    "uploaded, but could not tag the object; the upload record is authoritative");
            }
        }
        outcome
    }

    /// Checks type, size, mapping and metadata, and builds what the upload sends.
    fn prepare_s3(&self, object: &ObjectRef, info: &ObjectInfo) -> Result<Prepared, String> {
        let filename = filename_of(&info.key).to_owned();
        check_file(&filename, info.size)?;
        let target = self
            .mapping
            .resolve(&info.key, &info.metadata)
            .map_err(|error| error.0)?;

        let correlation_key = s3_correlation_key(
            &info.bucket,
            &info.key,
            info.version_id.as_deref(),
            info.etag.as_deref(),
        );
        let mut ours = BTreeMap::from([
            ("record_id".to_owned(), Node::String(correlation_key.clone())),
            ("record_type".to_owned(), Node::String("s3_object".into())),
            ("bucket".to_owned(), Node::String(info.bucket.clone())),
            ("key".to_owned(), Node::String(info.key.clone())),
            ("channel".to_owned(), Node::String(object.channel.as_str().into())),
        ]);
        if let Some(version_id) = &info.version_id {
            ours.insert("version_id".into(), Node::String(version_id.clone()));
        }
        let supplied = info.metadata.get("external-refs").map(String::as_str);
        let external_refs = external_refs_text(supplied, ours)?;

        let replay = UploadRequestMessage::new(&ObjectRef {
            bucket: info.bucket.clone(),
            key: info.key.clone(),
            version_id: info.version_id.clone(),
            etag: info.etag.clone(),
            size: Some(info.size),
            channel: object.channel,
        });
        Ok(Prepared {
            origin: Origin {
                correlation_key: correlation_key.clone(),
                bucket: Some(info.bucket.clone()),
                key: Some(info.key.clone()),
                version_id: info.version_id.clone(),
                etag: info.etag.clone(),
                size: i64::try_from(info.size).ok(),
                uploaded_at: None,
                channel: Some(object.channel.as_str().into()),
            },
            correlation_key,
            filename,
            size: info.size,
            target,
            external_refs,
            channel: object.channel,
            replay_body: serde_json::to_string(&replay).ok(),
            s3_version_id: info.version_id.clone(),
        })
    }

    async fn reject_s3(&self, object: &ObjectRef, info: &ObjectInfo, reason: String) -> UploadOutcome {
        let correlation_key = s3_correlation_key(
            &info.bucket,
            &info.key,
            info.version_id.as_deref(),
            info.etag.as_deref(),
        );
        let failure_id = format!("upload#{correlation_key}#rejected");
        let replay = UploadRequestMessage::new(&ObjectRef {
            bucket: info.bucket.clone(),
            key: info.key.clone(),
            version_id: info.version_id.clone(),
            etag: info.etag.clone(),
            size: Some(info.size),
            channel: object.channel,
        });
        let record = FailureRecord {
            failure_id: failure_id.clone(),
            created_at: rfc3339(Utc::now()),
            recorded_by: self.config.recorded_by.clone(),
            destination: "upload".into(),
            error_class: error_class::PERMANENT.into(),
            error: format!("not uploaded: {reason}"),
            status: failure_status::OPEN.into(),
            attempts: 1,
            document_id: None,
            idempotency_key: None,
            correlation_key: Some(correlation_key.clone()),
            external_refs: None,
            source_queue: None,
            body: serde_json::to_string(&replay).ok(),
            attributes: None,
            s3_bucket: Some(info.bucket.clone()),
            s3_key: Some(info.key.clone()),
            s3_version_id: info.version_id.clone(),
            redriven_at: None,
            updated_at: None,
        };
        let stored = self.store_failure(&record).await;
        let alert = OperationalAlert::new(
            kind::UPLOAD_REJECTED,
            "warning",
            format!("upload_rejected#{correlation_key}"),
        )
        .param("bucket", &info.bucket)
        .param("key", &info.key)
        .param("reason", &reason);
        self.send_alert(alert, stored.then(|| failure_id.clone())).await;
        UploadOutcome::Rejected {
            reason,
            failure_id: stored.then_some(failure_id),
        }
    }

    /// Claims the upload record, uploads, and records the outcome.
    pub(crate) async fn upload_prepared<Open, Fut>(
        &self,
        prepared: Prepared,
        open: Open,
        deadline: Option<Instant>,
    ) -> UploadOutcome
    where
        Open: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<FileBody>, InfraError>>,
    {
        let now = Utc::now();
        let candidate = self.upload_record(&prepared, upload_status::UPLOADING, now);

        match self.store.claim_upload(&candidate, now.timestamp()).await {
            Ok(UploadClaim::Claimed) => self.send(&prepared, candidate, open, deadline).await,
            Ok(UploadClaim::Uploaded(record)) => UploadOutcome::AlreadyUploaded {
                document_id: record.document_id,
                correlation_key: prepared.correlation_key,
            },
            Ok(UploadClaim::InProgress(record)) => {
                let remaining = record.lease_until.unwrap_or(0) - now.timestamp();
                UploadOutcome::InProgress {
                    after: Duration::from_secs(remaining.clamp(1, 43_200) as u64),
                }
            }
            Ok(UploadClaim::Uncertain(seen)) => {
                self.resolve_uncertain(&prepared, candidate, *seen, open, deadline)
                    .await
            }
            Err(error) => retry_infra(error),
        }
    }

    /// Settles an upload whose earlier attempt may have created the document.
    async fn resolve_uncertain<Open, Fut>(
        &self,
        prepared: &Prepared,
        candidate: UploadRecord,
        seen: UploadRecord,
        open: Open,
        deadline: Option<Instant>,
    ) -> UploadOutcome
    where
        Open: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<FileBody>, InfraError>>,
    {
        if seen.status == upload_status::AMBIGUOUS
            && let Ok(marked_at) = DateTime::parse_from_rfc3339(&seen.updated_at)
        {
            let settle = chrono::Duration::from_std(self.config.uncertain_settle).unwrap_or_default();
            let wait = (marked_at.with_timezone(&Utc) + settle) - Utc::now();
            if wait > chrono::Duration::zero() {
                return UploadOutcome::Retry {
                    after: Some(
                        wait.to_std()
                            .unwrap_or(Duration::from_secs(1))
                            .max(Duration::from_secs(1)),
                    ),
                    error: "an earlier upload timed out after sending; checking RecordEngine once it settles".into(),
                };
            }
        }

        let key = &prepared.correlation_key;
        match self.recordengine.find_by_correlation_key(key).await {
            Ok(Lookup::Found { document_id }) => {
                tracing::info!(correlation_key = %key, document_id, "an earlier upload of unknown outcome had succeeded");
                self.finish(prepared, document_id, true).await
            }
            Ok(Lookup::NotFound) => match self.store.take_over_upload(&candidate, &seen).await {
                Ok(true) => {
                    tracing::info!(correlation_key = %key, "RecordEngine has no document from the earlier attempt; uploading again");
                    self.send(prepared, candidate, open, deadline).await
                }
                // Another caller took the upload over first.
                Ok(false) => UploadOutcome::InProgress {
                    after: Duration::from_secs(5),
                },
                Err(error) => retry_infra(error),
            },
            Ok(Lookup::Inconclusive(reason)) => self.leave_for_operator(prepared, seen, reason).await,
            Err(error @ RecordEngineError::Unauthorized { .. }) => self.fail(prepared, candidate, error).await,
            Err(error) if error.is_retryable() => UploadOutcome::Retry {
                after: error.retry_after(),
                error: error.to_string(),
            },
            Err(error) => self.leave_for_operator(prepared, seen, error.to_string()).await,
        }
    }

    async fn send<Open, Fut>(
        &self,
        prepared: &Prepared,
        mut claim: UploadRecord,
        open: Open,
        deadline: Option<Instant>,
    ) -> UploadOutcome
    where
        Open: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<FileBody>, InfraError>>,
    {
        let file = match open().await {
            Ok(Some(file)) => file,
            Ok(None) => {
                self.release(&mut claim, "the object disappeared before it could be read")
                    .await;
                return UploadOutcome::Skipped {
                    reason: "the object disappeared or changed before it could be read".into(),
                };
            }
            Err(error) => {
                self.release(&mut claim, &error.to_string()).await;
                return retry_infra(error);
            }
        };
        let request = UploadRequest {
            filename: prepared.filename.clone(),
            content_type: content_type_for(&prepared.filename),
            contact_id: prepared.target.contact_id,
            folder_id: prepared.target.folder_id,
            profile_id: prepared.target.profile_id,
            external_refs: prepared.external_refs.clone(),
            file,
        };

        match self.recordengine.upload(request, deadline).await {
            Ok(document) => self.finish(prepared, document.id, false).await,
            Err(RecordEngineError::Ambiguous { detail }) => {
                claim.status = upload_status::AMBIGUOUS.into();
                claim.lease_until = None;
                claim.last_error = Some(detail.clone());
                claim.updated_at = rfc3339(Utc::now());
                if let Err(error) = self.store.save_upload(&claim).await {
                    tracing::error!(correlation_key = %prepared.correlation_key, error = %error,
                        "could not mark the upload ambiguous; its lease will run out and lead to the same check");
                }
                UploadOutcome::Retry {
                    after: Some(self.config.uncertain_settle.max(Duration::from_secs(1))),
                    error: format!("upload outcome unknown, RecordEngine will be checked before any retry: {detail}"),
                }
            }
            Err(error) if error.is_retryable() => {
                self.release(&mut claim, &error.to_string()).await;
                UploadOutcome::Retry {
                    after: error.retry_after(),
                    error: error.to_string(),
                }
            }
            Err(error) => self.fail(prepared, claim, error).await,
        }
    }

    /// Marks a claim `failed`, which a later attempt may claim again.
    async fn release(&self, claim: &mut UploadRecord, error: &str) {
        claim.status = upload_status::FAILED.into();
        claim.lease_until = None;
        claim.last_error = Some(error.to_owned());
        claim.updated_at = rfc3339(Utc::now());
        if let Err(save_error) = self.store.save_upload(claim).await {
            tracing::warn!(correlation_key = %claim.origin.correlation_key, error = %save_error,
                "could not release the upload claim; it becomes claimable when its lease runs out");
        }
    }

    /// Records a permanent failure: upload record, failure record and alert.
    async fn fail(&self, prepared: &Prepared, mut claim: UploadRecord, error: RecordEngineError) -> UploadOutcome {
        let message = error.to_string();
        self.release(&mut claim, &message).await;

        let unauthorized = matches!(error, RecordEngineError::Unauthorized { .. });
        let suffix = if unauthorized { "unauthorized" } else { "failed" };
        let failure_id = format!("upload#{}#{suffix}", prepared.correlation_key);
        let record = self.failure_record(prepared, &failure_id, error.error_class(), &message);
        let stored = self.store_failure(&record).await;

        let alert = if unauthorized {
            let hour = Utc::now().format("%Y-%m-%dT%H").to_string();
            {
                let mut last = self.last_unauthorized_alert.lock().expect("alert lock");
                if last.as_deref() == Some(hour.as_str()) {
                    None
                } else {
                    *last = Some(hour.clone());
                    Some(
                        OperationalAlert::new(
                            kind::RECORDENGINE_UNAUTHORIZED,
                            "error",
                            format!("recordengine_unauthorized#{hour}"),
                        )
                        .param("error", &message),
                    )
                }
            }
        } else {
            Some(
                OperationalAlert::new(
                    kind::UPLOAD_FAILED,
                    "error",
                    format!("upload_failed#{}", prepared.correlation_key),
                )
                .param("bucket", prepared.origin.bucket.clone().unwrap_or_default())
                .param("key", prepared.origin.key.clone().unwrap_or_default())
                .param("error", &message),
            )
        };
        if let Some(alert) = alert {
            self.send_alert(alert, stored.then(|| failure_id.clone())).await;
        }
        UploadOutcome::Failed {
            error_class: error.error_class(),
            error: message,
            failure_id: stored.then_some(failure_id),
        }
    }

    async fn leave_for_operator(&self, prepared: &Prepared, mut seen: UploadRecord, reason: String) -> UploadOutcome {
        let message = format!(
            "an earlier upload may have created the document, and RecordEngine could not be checked: {reason}. \
             Look for a document whose external_refs carry {}; then mark the upload record uploaded, or failed to upload again",
            prepared.correlation_key
        );
        // An `uploading` record whose holder died becomes `ambiguous`, so that it reads as what it is.
        if seen.status != upload_status::AMBIGUOUS {
            seen.status = upload_status::AMBIGUOUS.into();
            seen.lease_until = None;
            seen.last_error = Some(reason.clone());
            seen.updated_at = rfc3339(Utc::now());
            if let Err(error) = self.store.save_upload(&seen).await {
                tracing::warn!(correlation_key = %prepared.correlation_key, error = %error, "could not mark the upload ambiguous");
            }
        }

        let failure_id = format!("upload#{}#ambiguous", prepared.correlation_key);
        let record = self.failure_record(prepared, &failure_id, error_class::AMBIGUOUS, &message);
        let stored = self.store_failure(&record).await;
        let alert = OperationalAlert::new(
            kind::UPLOAD_AMBIGUOUS,
            "error",
            format!("upload_ambiguous#{}", prepared.correlation_key),
        )
        .param("bucket", prepared.origin.bucket.clone().unwrap_or_default())
        .param("key", prepared.origin.key.clone().unwrap_or_default())
        .param("correlation_key", &prepared.correlation_key)
        .param("error", &reason);
        self.send_alert(alert, stored.then(|| failure_id.clone())).await;
        UploadOutcome::LeftForOperator {
            correlation_key: prepared.correlation_key.clone(),
            reason,
            failure_id: stored.then_some(failure_id),
        }
    }

    /// Records a successful upload: the upload record first (it is what stops
    /// a second upload), then the document record and its timeline entry.
    async fn finish(&self, prepared: &Prepared, document_id: i64, found_by_lookup: bool) -> UploadOutcome {
        let now = Utc::now();
        let mut record = self.upload_record(prepared, upload_status::UPLOADED, now);
        record.document_id = Some(document_id);
        record.lease_until = None;
        record.origin.uploaded_at = Some(rfc3339(now));
        if let Err(error) = self.store.save_upload(&record).await {
            tracing::error!(correlation_key = %prepared.correlation_key, document_id, error = %error,
                "uploaded, but could not record it; a later attempt will find the document by lookup");
        }
        if let Err(error) = self
            .record_document(prepared, &record, document_id, found_by_lookup, now)
            .await
        {
            tracing::error!(correlation_key = %prepared.correlation_key, document_id, error = %error,
                "uploaded, but could not write the document record; the export webhook will create it");
        }
        UploadOutcome::Uploaded {
            document_id,
            correlation_key: prepared.correlation_key.clone(),
            found_by_lookup,
        }
    }

    async fn record_document(
        &self,
        prepared: &Prepared,
        upload: &UploadRecord,
        document_id: i64,
        found_by_lookup: bool,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        // The export webhook may have created the record first.
        let document = match self.store.get_document(document_id).await? {
            Some(mut existing) => {
                existing.origin = Some(upload.origin.clone());
                existing.external_refs_sent = Some(prepared.external_refs.clone());
                existing.contact_id = existing.contact_id.or(Some(prepared.target.contact_id));
                existing.folder_id = existing.folder_id.or(Some(prepared.target.folder_id));
                existing.profile_id = existing.profile_id.or(prepared.target.profile_id);
                existing.filename = existing.filename.or(Some(prepared.filename.clone()));
                existing.updated_at = rfc3339(now);
                existing
            }
            None => DocumentRecord {
                pk: document_pk(document_id),
                sk: DOCUMENT_SK.into(),
                document_id,
                origin: Some(upload.origin.clone()),
                external_refs_sent: Some(prepared.external_refs.clone()),
                contact_id: Some(prepared.target.contact_id),
                folder_id: Some(prepared.target.folder_id),
                profile_id: prepared.target.profile_id,
                filename: Some(prepared.filename.clone()),
                status: upload_status::UPLOADED.into(),
                created_at: rfc3339(now),
                updated_at: rfc3339(now),
                last_export_at: None,
            },
        };
        self.store.put_document(&document).await?;

        let source = match (&prepared.origin.bucket, &prepared.origin.key) {
            (Some(bucket), Some(key)) => format!("s3://{bucket}/{key}"),
            (_, Some(path)) => path.clone(),
            _ => prepared.filename.clone(),
        };
        let detail = if found_by_lookup {
            format!("found in RecordEngine after an upload of unknown outcome, from {source}")
        } else {
            format!(
                "uploaded {source} to contact {} folder {}",
                prepared.target.contact_id, prepared.target.folder_id
            )
        };
        let entry = TimelineEntry::new(document_id, now, "uploaded", detail).with_data(&TimelineData {
            correlation_key: &prepared.correlation_key,
            channel: prepared.channel.as_str(),
            filename: &prepared.filename,
            size: prepared.size,
            contact_id: prepared.target.contact_id,
            folder_id: prepared.target.folder_id,
            profile_id: prepared.target.profile_id,
            resolved_by: &prepared.target.resolved_by,
            found_by_lookup,
        });
        self.store.append_timeline(&entry).await
    }

    fn upload_record(&self, prepared: &Prepared, status: &str, now: DateTime<Utc>) -> UploadRecord {
        UploadRecord {
            pk: reference_pk(&prepared.correlation_key),
            sk: DOCUMENT_SK.into(),
            origin: prepared.origin.clone(),
            status: status.into(),
            document_id: None,
            lease_until: Some(now.timestamp() + self.config.lease_seconds),
            last_error: None,
            external_refs_sent: Some(prepared.external_refs.clone()),
            contact_id: Some(prepared.target.contact_id),
            folder_id: Some(prepared.target.folder_id),
            profile_id: prepared.target.profile_id,
            filename: Some(prepared.filename.clone()),
            updated_at: rfc3339(now),
        }
    }

    fn failure_record(&self, prepared: &Prepared, failure_id: &str, class: &str, error: &str) -> FailureRecord {
        FailureRecord {
            failure_id: failure_id.to_owned(),
            created_at: rfc3339(Utc::now()),
            recorded_by: self.config.recorded_by.clone(),
            destination: "upload".into(),
            error_class: class.to_owned(),
            error: error.to_owned(),
            status: failure_status::OPEN.into(),
            attempts: 1,
            document_id: None,
            idempotency_key: None,
            correlation_key: Some(prepared.correlation_key.clone()),
            external_refs: Some(prepared.external_refs.clone()),
            source_queue: None,
            body: prepared.replay_body.clone(),
            attributes: None,
            s3_bucket: prepared.origin.bucket.clone(),
            s3_key: prepared.origin.key.clone(),
            s3_version_id: prepared.s3_version_id.clone(),
            redriven_at: None,
            updated_at: None,
        }
    }

    /// Stores a failure record; returns whether it was stored.
    pub async fn store_failure(&self, record: &FailureRecord) -> bool {
        match self.failures.record_failure(record).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(failure_id = %record.failure_id, error = %error, failure = %record.error,
                    "could not store a failure record");
                false
            }
        }
    }

    /// Sends an operational alert; a failure to send is logged, not raised.
    pub async fn send_alert(&self, mut alert: OperationalAlert, failure_id: Option<String>) {
        alert.failure_id = failure_id;
        let body = match serde_json::to_string(&alert) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(kind = %alert.kind, error = %error, "could not serialise an alert");
                return;
            }
        };
        let attributes = [("kind", alert.kind.clone()), ("dedupe_key", alert.dedupe_key.clone())];
        if let Err(error) = self.alerts.send(ALERTS_DESTINATION, &body, &attributes).await {
            tracing::error!(kind = %alert.kind, dedupe_key = %alert.dedupe_key, error = %error, "could not send an alert");
        }
    }
}

#[derive(Serialize)]
struct TimelineData<'a> {
    correlation_key: &'a str,
    channel: &'a str,
    filename: &'a str,
    size: u64,
    contact_id: i64,
    folder_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_id: Option<i64>,
    resolved_by: &'a str,
    found_by_lookup: bool,
}

/// Checks what RecordEngine would reject anyway: the type and an empty file.
pub(crate) fn check_file(filename: &str, size: u64) -> Result<(), String> {
    if !crate::recordengine::is_supported_filename(filename) {
        let found = extension(filename).map_or_else(|| "no extension".to_owned(), |extension| format!(".{extension}"));
        return Err(format!(
            "unsupported file type ({found}) for {filename:?}; RecordEngine accepts {}",
            SUPPORTED_EXTENSIONS.join(", ")
        ));
    }
    if size == 0 {
        return Err(format!("{filename:?} is empty (0 bytes)"));
    }
    Ok(())
}

/// Builds the `external_refs` text: the source's own object (object metadata
/// `external-refs`) with our entry under [`EXTERNAL_REFS_KEY`] added or replaced.
pub(crate) fn external_refs_text(supplied: Option<&str>, ours: BTreeMap<String, Node>) -> Result<String, String> {
    let mut refs = match supplied.map(str::trim).filter(|text| !text.is_empty()) {
        None => BTreeMap::new(),
        Some(text) => match Node::parse(text) {
            Ok(Node::Object(object)) => object,
            Ok(other) => {
                return Err(format!(
                    "object metadata external-refs is {}, expected a JSON object",
                    other.type_name()
                ));
            }
            Err(error) => return Err(format!("object metadata external-refs is not valid JSON: {error}")),
        },
    };
    if refs.contains_key(EXTERNAL_REFS_KEY) {
        tracing::warn!(
            "object metadata external-refs carries {EXTERNAL_REFS_KEY}; it is replaced by this bridge's entry"
        );
    }
    refs.insert(EXTERNAL_REFS_KEY.into(), Node::Object(ours));
    Ok(Node::Object(refs).to_canonical_string())
}

fn retry_infra(error: InfraError) -> UploadOutcome {
    UploadOutcome::Retry {
        after: None,
        error: error.to_string(),
    }
}

fn log_outcome(object: &ObjectRef, outcome: &UploadOutcome) {
    let (bucket, key, channel) = (&object.bucket, &object.key, object.channel.as_str());
    match outcome {
        UploadOutcome::Uploaded {
            document_id,
            correlation_key,
            found_by_lookup,
        } => tracing::info!(%bucket, %key, channel, document_id, %correlation_key, found_by_lookup, "uploaded"),
        UploadOutcome::AlreadyUploaded {
            document_id,
            correlation_key,
        } => tracing::info!(%bucket, %key, channel, ?document_id, %correlation_key, "already uploaded; nothing sent"),
        UploadOutcome::Skipped { reason } => tracing::info!(%bucket, %key, channel, %reason, "skipped"),
        UploadOutcome::Rejected { reason, failure_id } => {
            tracing::warn!(%bucket, %key, channel, %reason, ?failure_id, "rejected; not uploaded")
        }
        UploadOutcome::Failed {
            error_class,
            error,
            failure_id,
        } => tracing::error!(%bucket, %key, channel, error_class, %error, ?failure_id, "upload failed for good"),
        UploadOutcome::InProgress { after } => {
            tracing::info!(%bucket, %key, channel, retry_after_seconds = after.as_secs(), "another caller is uploading this version")
        }
        UploadOutcome::Retry { after, error } => {
            tracing::warn!(%bucket, %key, channel, retry_after_seconds = after.map(|after| after.as_secs()), %error, "upload will be retried")
        }
        UploadOutcome::LeftForOperator {
            correlation_key,
            reason,
            failure_id,
        } => tracing::error!(%bucket, %key, channel, %correlation_key, %reason, ?failure_id,
            "upload outcome unknown and could not be checked; left for an operator"),
    }
}

pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
