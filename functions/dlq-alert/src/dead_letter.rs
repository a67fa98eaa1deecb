//! Reading one dead-lettered SQS message into a failure record and the alert
//! that informs a person.
//!
//! A dead-letter queue holds three kinds of body: a routed export (the
//! destination queues), an operational alert (the alerts queue) and an inbox
//! message (the upload path: an S3 event notification or an upload request).
//! Anything else is recorded as `unreadable`. The error and its class come,
//! in this order, from the message attributes a dispatcher sets when it
//! dead-letters a message itself, from the dispatch record of the message's
//! idempotency key, or from the upload record of its correlation key.

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::SqsMessage;
use bridge_shared::alerts::{OperationalAlert, kind};
use bridge_shared::dispatch::engine::attribute;
use bridge_shared::dispatch::inbound::alert_idempotency_key;
use bridge_shared::dispatch::record::DispatchRecord;
use bridge_shared::dispatch::store::{VersionedStore, get_dispatch};
use bridge_shared::failures::{FailureRecord, error_class, failure_status};
use bridge_shared::inbound::{InboundMessage, parse_message, s3_correlation_key};
use bridge_shared::message::RoutedMessage;
use bridge_shared::ports::DocumentStore;
use bridge_shared::records::{EXTERNAL_REFS_KEY, UploadRecord};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::failure_store::{StoredFailure, alert_state};

/// The component name written to `recorded_by`.
pub const RECORDED_BY: &str = "dlq-alert";

/// The destination name of failures from the upload path.
pub const UPLOAD_DESTINATION: &str = "upload";

/// The destination whose failures are alerted on their own, stricter budget:
/// when alerts themselves fail, the alert channel is the likely cause.
pub const ALERTS_DESTINATION: &str = "alerts";

/// Maximum body length stored in a record, in bytes. DynamoDB items hold at most 400 KB, and
/// the rest of the record needs room too.
pub const MAX_STORED_BODY_BYTES: usize = 350_000;

/// SQS system attribute naming the queue a message was moved from.
pub const SOURCE_ARN_ATTRIBUTE: &str = "DeadLetterQueueSourceArn";

/// The dead-letter queues and the queues their messages came from, by destination.
#[derive(Debug, Clone, Default)]
pub struct QueueMap {
    /// Destination name (`accounting`, …, `upload`) to its dead-letter queue ARN.
    pub dead_letter_queues: BTreeMap<String, String>,
    /// Destination name to the URL of the queue its messages are redriven to.
    pub source_queues: BTreeMap<String, String>,
}

impl QueueMap {
    /// Returns the destination whose dead-letter queue has this ARN or URL.
    pub fn destination_of_dead_letter_queue(&self, queue: &str) -> Option<&str> {
        let name = queue_name(queue);
        self.dead_letter_queues
            .iter()
            .find(|(_, arn)| arn.as_str() == queue || queue_name(arn) == name)
            .map(|(destination, _)| destination.as_str())
    }
}

/// Returns the queue name at the end of an ARN (`…:name`) or URL (`…/name`).
pub fn queue_name(queue: &str) -> &str {
    queue.rsplit([':', '/']).next().unwrap_or(queue)
}

/// The kind of body of a dead-lettered message.
#[derive(Debug, Clone)]
pub enum Content {
    Routed(Box<RoutedMessage>),
    Alert(OperationalAlert),
    Inbox(InboundMessage),
    Unreadable(String),
}

/// Reads a body. A body that cannot be read becomes [`Content::Unreadable`], so there is no error case.
pub fn read_content(body: Option<&str>) -> Content {
    let Some(body) = body.filter(|body| !body.trim().is_empty()) else {
        return Content::Unreadable("the message has no body".into());
    };
    let probe: serde_json::Value = match serde_json::from_str(body) {
        Ok(value) => value,
        Err(error) => return Content::Unreadable(format!("the body is not JSON: {error}")),
    };
    if probe.get("message_version").is_some() {
        return match serde_json::from_str::<RoutedMessage>(body) {
            Ok(message) => Content::Routed(Box::new(message)),
            Err(error) => Content::Unreadable(format!("invalid routed message: {error}")),
        };
    }
    if probe.get("alert_version").is_some() {
        return match serde_json::from_str::<OperationalAlert>(body) {
            Ok(alert) => Content::Alert(alert),
            Err(error) => Content::Unreadable(format!("invalid operational alert: {error}")),
        };
    }
    match parse_message(body) {
        Ok(message) => Content::Inbox(message),
        Err(_) => Content::Unreadable(
            "the body is JSON but neither a routed message, an operational alert nor an inbox message".into(),
        ),
    }
}

/// Derives the failure id of a dead-lettered message: `dlq-` and 24 hex
/// digits of SHA-256 over a message id. That is the id the message had on its
/// source queue when a dispatcher dead-lettered it itself (an attribute),
/// else its own SQS message id. A redelivery of the same dead letter gets the same id; a
/// message that fails again after a redrive is a new SQS message and gets a new one.
pub fn failure_id(message: &SqsMessage) -> String {
    failure_id_for(
        message.message_id.as_deref().unwrap_or_default(),
        string_attribute(message, attribute::SOURCE_MESSAGE_ID),
    )
}

/// Derives the failure id from a message id and the `source_message_id`
/// attribute, for callers that read the queue with the SQS API.
pub fn failure_id_for(message_id: &str, source_message_id: Option<&str>) -> String {
    let origin = source_message_id.filter(|id| !id.is_empty()).unwrap_or(message_id);
    let digest = Sha256::digest(format!("recordengine-bridge/dead-letter/v1|{origin}"));
    format!("dlq-{}", &hex::encode(digest)[..24])
}

fn string_attribute<'a>(message: &'a SqsMessage, name: &str) -> Option<&'a str> {
    message
        .message_attributes
        .get(name)
        .and_then(|value| value.string_value.as_deref())
        .filter(|value| !value.is_empty())
}

/// A dead letter read into its record and alert.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub failure: StoredFailure,
    /// The alert for this failure alone; digests list it in one line.
    pub alert: OperationalAlert,
    /// One line for a digest.
    pub line: String,
}

/// The stores a dead letter is explained from.
pub struct Lookups<'a> {
    pub versioned: &'a dyn VersionedStore,
    pub documents: &'a dyn DocumentStore,
}

/// Builds the failure record and alert of one message. Lookups that fail
/// are logged and leave their fields empty: the record is stored anyway.
pub async fn read_dead_letter(
    message: &SqsMessage,
    queues: &QueueMap,
    lookups: &Lookups<'_>,
    now: DateTime<Utc>,
    retention_days: i64,
) -> DeadLetter {
    let failure_id = failure_id(message);
    let message_id = message.message_id.clone().unwrap_or_default();
    let content = read_content(message.body.as_deref());
    let from_queue = message
        .event_source_arn
        .as_deref()
        .and_then(|arn| queues.destination_of_dead_letter_queue(arn));
    let recorded_by = string_attribute(message, attribute::RECORDED_BY);

    let mut record = FailureRecord {
        failure_id: failure_id.clone(),
        created_at: rfc3339(now),
        recorded_by: RECORDED_BY.into(),
        destination: String::new(),
        error_class: String::new(),
        error: String::new(),
        status: failure_status::OPEN.into(),
        attempts: receive_count(message),
        document_id: None,
        idempotency_key: None,
        correlation_key: None,
        external_refs: None,
        source_queue: None,
        body: None,
        attributes: Some(attributes_json(message)),
        s3_bucket: None,
        s3_key: None,
        s3_version_id: None,
        redriven_at: None,
        updated_at: None,
    };
    store_body(&mut record, message.body.as_deref());

    let mut dispatch: Option<DispatchRecord> = None;
    let mut upload: Option<UploadRecord> = None;
    let mut unreadable: Option<String> = None;
    match &content {
        Content::Routed(routed) => {
            record.destination = routed.destination.clone();
            record.document_id = Some(routed.document_id);
            record.idempotency_key = Some(routed.idempotency_key.clone());
            record.correlation_key = routed.origin.as_ref().map(|origin| origin.correlation_key.clone());
            record.external_refs = routed
                .payload
                .as_ref()
                .and_then(|payload| payload.get("external_refs"))
                .map(|refs| refs.to_canonical_string());
            dispatch = lookup_dispatch(lookups, &routed.idempotency_key).await;
        }
        Content::Alert(alert) => {
            record.destination = ALERTS_DESTINATION.into();
            record.document_id = alert.document_id;
            let key = alert_idempotency_key(&alert.dedupe_key);
            dispatch = lookup_dispatch(lookups, &key).await;
            record.idempotency_key = Some(key);
        }
        Content::Inbox(InboundMessage::Objects(objects)) if !objects.is_empty() => {
            let object = &objects[0];
            record.destination = UPLOAD_DESTINATION.into();
            record.s3_bucket = Some(object.bucket.clone());
            record.s3_key = Some(object.key.clone());
            record.s3_version_id = object.version_id.clone();
            let key = s3_correlation_key(
                &object.bucket,
                &object.key,
                object.version_id.as_deref(),
                object.etag.as_deref(),
            );
            upload = match lookups.documents.get_upload(&key).await {
                Ok(upload) => upload,
                Err(error) => {
                    tracing::warn!(failure_id, error = %error, "could not read the upload record");
                    None
                }
            };
            record.correlation_key = Some(key);
        }
        Content::Inbox(_) => {
            record.destination = UPLOAD_DESTINATION.into();
        }
        Content::Unreadable(reason) => unreadable = Some(reason.clone()),
    }

    if record.destination.is_empty() {
        record.destination = from_queue
            .map(str::to_owned)
            .or_else(|| {
                recorded_by
                    .and_then(|name| name.strip_prefix("dispatch-"))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".into());
    }
    record.source_queue = Some(source_queue(message, queues, &record.destination, recorded_by));

    explain(
        &mut record,
        message,
        dispatch.as_ref(),
        upload.as_ref(),
        unreadable.as_deref(),
    );
    if record.external_refs.is_none() {
        record.external_refs = upload.as_ref().and_then(|upload| upload.external_refs_sent.clone());
    }
    if record.document_id.is_none() {
        record.document_id = dispatch
            .as_ref()
            .and_then(|dispatch| dispatch.document_id)
            .or(upload.as_ref().and_then(|upload| upload.document_id));
    }
    if record.external_refs.is_none()
        && let Some(document_id) = record.document_id
    {
        record.external_refs = match lookups.documents.get_document(document_id).await {
            Ok(document) => document.and_then(|document| document.external_refs_sent),
            Err(error) => {
                tracing::warn!(failure_id, document_id, error = %error, "could not read the document record");
                None
            }
        };
    }

    let alert = alert_for(&record, &message_id, unreadable.is_some());
    let line = digest_line(&record);
    DeadLetter {
        failure: StoredFailure {
            record,
            expires_at: Some(now.timestamp() + retention_days * 24 * 3600),
            alert_state: Some(alert_state::PENDING.into()),
        },
        alert,
        line,
    }
}

async fn lookup_dispatch(lookups: &Lookups<'_>, key: &str) -> Option<DispatchRecord> {
    match get_dispatch(lookups.versioned, key).await {
        Ok(record) => record,
        Err(error) => {
            tracing::warn!(idempotency_key = key, error = %error, "could not read the dispatch record");
            None
        }
    }
}

/// `ApproximateReceiveCount`: SQS keeps counting when it moves a message to
/// the dead-letter queue, so this includes the receives on the source queue.
fn receive_count(message: &SqsMessage) -> i64 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

/// Returns the queue a dead letter came from. That is SQS's
/// `DeadLetterQueueSourceArn` when set, else the queue of the message's
/// destination (each dead-letter queue of the stack serves one queue), else
/// the component that dead-lettered it, else `unknown`.
// NOTE: the SQS events that MiniStack 1.5.33's event source mappings deliver
// lack DeadLetterQueueSourceArn, so on the local stack the destination's queue
// is what is recorded.
fn source_queue(message: &SqsMessage, queues: &QueueMap, destination: &str, recorded_by: Option<&str>) -> String {
    if let Some(arn) = message
        .attributes
        .get(SOURCE_ARN_ATTRIBUTE)
        .filter(|arn| !arn.is_empty())
    {
        return arn.clone();
    }
    if let Some(url) = queues.source_queues.get(destination) {
        return url.clone();
    }
    recorded_by.map(str::to_owned).unwrap_or_else(|| "unknown".into())
}

fn explain(
    record: &mut FailureRecord,
    message: &SqsMessage,
    dispatch: Option<&DispatchRecord>,
    upload: Option<&UploadRecord>,
    unreadable: Option<&str>,
) {
    let attribute_error = string_attribute(message, attribute::ERROR);
    let attribute_class = string_attribute(message, attribute::ERROR_CLASS);

    record.error = if let Some(reason) = unreadable {
        match attribute_error {
            Some(error) => format!("{reason}; the dispatcher reported: {error}"),
            None => reason.to_owned(),
        }
    } else if let Some(error) = attribute_error {
        error.to_owned()
    } else if let Some(error) = dispatch.and_then(|dispatch| dispatch.last_error.as_deref()) {
        error.to_owned()
    } else if let Some(error) = upload.and_then(|upload| upload.last_error.as_deref()) {
        error.to_owned()
    } else {
        format!(
            "the message was received {} times without success and no error was recorded",
            record.attempts
        )
    };

    record.error_class = if unreadable.is_some() {
        error_class::UNREADABLE.into()
    } else if let Some(class) = attribute_class {
        class.to_owned()
    } else if let Some(class) = dispatch.and_then(|dispatch| dispatch.error_class.as_deref()) {
        class.to_owned()
    } else {
        // Moved by the redrive policy: every receive failed, so retries ran out.
        error_class::RETRYABLE.into()
    };

    if let Some(dispatch) = dispatch
        && dispatch.attempts > 0
    {
        record.attempts = i64::from(dispatch.attempts);
    }
}

/// Message and system attributes as JSON text, with the dead-letter queue,
/// so that a redrive can send the message again as it was.
fn attributes_json(message: &SqsMessage) -> String {
    let message_attributes: BTreeMap<&str, &str> = message
        .message_attributes
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.string_value.as_deref()?)))
        .collect();
    let system: BTreeMap<&str, &str> = message
        .attributes
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    serde_json::json!({
        "message_id": message.message_id,
        "dead_letter_queue": message.event_source_arn,
        "message_attributes": message_attributes,
        "system_attributes": system,
    })
    .to_string()
}

/// Keeps the body, cut at [`MAX_STORED_BODY_BYTES`] on a character boundary.
fn store_body(record: &mut FailureRecord, body: Option<&str>) {
    let Some(body) = body else {
        return;
    };
    if body.len() <= MAX_STORED_BODY_BYTES {
        record.body = Some(body.to_owned());
        return;
    }
    let mut end = MAX_STORED_BODY_BYTES;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    record.body = Some(body[..end].to_owned());
    // NOTE: a cut body cannot be replayed; `bridgectl dlq redrive` refuses such a record.
    if let Some(attributes) = &record.attributes
        && let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str::<serde_json::Value>(attributes)
    {
        object.insert("body_truncated_from_bytes".into(), body.len().into());
        record.attributes = Some(serde_json::Value::Object(object).to_string());
    }
}

/// Returns the correlation key this bundle stored in `external_refs`, if the refs carry one.
pub fn bridge_record_id(external_refs: &str) -> Option<String> {
    let refs: serde_json::Value = serde_json::from_str(external_refs).ok()?;
    refs.get(EXTERNAL_REFS_KEY)?
        .get("record_id")?
        .as_str()
        .map(str::to_owned)
}

fn alert_for(record: &FailureRecord, message_id: &str, unreadable: bool) -> OperationalAlert {
    let mut alert = if unreadable {
        OperationalAlert::new(kind::UNREADABLE_MESSAGE, "error", record.failure_id.clone())
            .param("source_queue", record.source_queue.clone().unwrap_or_default())
            .param("message_id", message_id)
            .param("error", record.error.clone())
    } else if record.destination == UPLOAD_DESTINATION {
        OperationalAlert::new(kind::UPLOAD_FAILED, "error", record.failure_id.clone())
            .param("bucket", record.s3_bucket.clone().unwrap_or_default())
            .param("key", record.s3_key.clone().unwrap_or_default())
            .param("error", record.error.clone())
    } else {
        OperationalAlert::new(kind::DISPATCH_FAILED, "error", record.failure_id.clone())
            .param("destination", record.destination.clone())
            .param(
                "document_id",
                record
                    .document_id
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| "-".into()),
            )
            .param("error_class", record.error_class.clone())
            .param("error", record.error.clone())
    };
    alert.failure_id = Some(record.failure_id.clone());
    alert.document_id = record.document_id;
    alert
}

/// Builds one digest line: failure id, destination, what failed, class and error.
fn digest_line(record: &FailureRecord) -> String {
    let subject = match (&record.document_id, &record.s3_key) {
        (Some(id), _) => format!("#{id}"),
        (None, Some(key)) => key.clone(),
        (None, None) => "-".into(),
    };
    let error: String = record.error.chars().take(100).collect();
    let ellipsis = if record.error.chars().count() > 100 { "…" } else { "" };
    format!(
        "{} {} {subject} {}: {error}{ellipsis}",
        record.failure_id, record.destination, record.error_class
    )
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_classified() {
        assert!(matches!(read_content(None), Content::Unreadable(_)));
        assert!(matches!(read_content(Some("{")), Content::Unreadable(reason) if reason.contains("not JSON")));
        assert!(matches!(
            read_content(Some(r#"{"message_version": 1}"#)),
            Content::Unreadable(reason) if reason.contains("invalid routed message")
        ));
        assert!(matches!(
            read_content(Some(r#"{"hello": "world"}"#)),
            Content::Unreadable(reason) if reason.contains("neither")
        ));
        let alert = serde_json::to_string(&OperationalAlert::new(kind::UPLOAD_FAILED, "error", "d")).unwrap();
        assert!(matches!(read_content(Some(&alert)), Content::Alert(_)));
        let upload = r#"{"bridge_upload_request": 1, "bucket": "b", "key": "inbox/5/12/a.pdf", "channel": "schedule"}"#;
        assert!(matches!(
            read_content(Some(upload)),
            Content::Inbox(InboundMessage::Objects(objects)) if objects[0].key == "inbox/5/12/a.pdf"
        ));
    }

    #[test]
    fn failure_id_prefers_the_source_message_id() {
        let mut message = SqsMessage::default();
        message.message_id = Some("dlq-copy".into());
        let own = failure_id(&message);

        let mut attribute_value = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
        attribute_value.string_value = Some("original".into());
        message
            .message_attributes
            .insert(attribute::SOURCE_MESSAGE_ID.into(), attribute_value);
        let from_source = failure_id(&message);

        message.message_id = Some("another-copy".into());
        assert_eq!(
            failure_id(&message),
            from_source,
            "two copies of one dead letter share an id"
        );
        assert_ne!(own, from_source);
        assert!(own.starts_with("dlq-"), "{own}");
        assert_eq!(own.len(), 28, "{own}");
    }

    #[test]
    fn source_queue_fallbacks() {
        let queues = QueueMap {
            dead_letter_queues: BTreeMap::new(),
            source_queues: BTreeMap::from([(
                "accounting".to_owned(),
                "http://127.0.0.1:4566/000000000000/stack-AccountingQueue-1".to_owned(),
            )]),
        };
        let mut message = SqsMessage::default();

        assert_eq!(
            source_queue(&message, &queues, "accounting", None),
            "http://127.0.0.1:4566/000000000000/stack-AccountingQueue-1"
        );
        assert_eq!(source_queue(&message, &queues, "crm", None), "unknown");
        assert_eq!(
            source_queue(&message, &queues, "crm", Some("dispatch-crm")),
            "dispatch-crm"
        );

        message.attributes.insert(
            SOURCE_ARN_ATTRIBUTE.to_owned(),
            "arn:aws:sqs:us-east-1:000000000000:stack-AccountingQueue-1".to_owned(),
        );
        assert_eq!(
            source_queue(&message, &queues, "accounting", None),
            "arn:aws:sqs:us-east-1:000000000000:stack-AccountingQueue-1"
        );
    }

    #[test]
    fn queue_names_match_arns_and_urls() {
        let queues = QueueMap {
            dead_letter_queues: BTreeMap::from([(
                "accounting".to_owned(),
                "arn:aws:sqs:us-east-1:000000000000:stack-AccountingDeadLetterQueue-1".to_owned(),
            )]),
            source_queues: BTreeMap::new(),
        };

        assert_eq!(
            queues.destination_of_dead_letter_queue(
                "http://127.0.0.1:4566/000000000000/stack-AccountingDeadLetterQueue-1"
            ),
            Some("accounting")
        );
        assert_eq!(queues.destination_of_dead_letter_queue("arn:aws:sqs:x:y:other"), None);
    }

    #[test]
    fn long_bodies_are_cut_and_flagged() {
        let mut record = FailureRecord {
            failure_id: "f".into(),
            created_at: String::new(),
            recorded_by: String::new(),
            destination: String::new(),
            error_class: String::new(),
            error: String::new(),
            status: String::new(),
            attempts: 0,
            document_id: None,
            idempotency_key: None,
            correlation_key: None,
            external_refs: None,
            source_queue: None,
            body: None,
            attributes: Some("{}".into()),
            s3_bucket: None,
            s3_key: None,
            s3_version_id: None,
            redriven_at: None,
            updated_at: None,
        };
        let body = "发".repeat(MAX_STORED_BODY_BYTES);

        store_body(&mut record, Some(&body));

        assert!(record.body.as_ref().unwrap().len() <= MAX_STORED_BODY_BYTES);
        assert!(record.attributes.unwrap().contains("body_truncated_from_bytes"));
    }
}
