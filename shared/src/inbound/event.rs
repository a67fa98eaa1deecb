//! Reading inbox-queue messages: S3 event notifications, `s3:TestEvent`, the
//! same wrapped in an SNS envelope, and upload requests that the scheduled run
//! hands over when it runs out of time.

use serde::{Deserialize, Serialize};

use super::{Channel, ObjectRef};

/// What one inbox-queue message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundMessage {
    /// S3's `s3:TestEvent`, sent when a notification is configured: nothing to do.
    TestEvent,
    /// Objects to upload, in the order of the message's records.
    Objects(Vec<ObjectRef>),
    /// A message with nothing to upload (for example `ObjectRemoved`); the reason says why.
    Ignored(String),
}

/// A message body that is not one of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable inbox message: {0}")]
pub struct EventError(pub String);

/// An upload request the scheduled run leaves on the inbox queue. Unlike S3
/// events, its key is the plain key, not URL-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRequestMessage {
    /// Always [`UPLOAD_REQUEST_VERSION`]; tells this form apart from S3 events.
    pub bridge_upload_request: u32,
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `schedule` for a scheduled run's continuation.
    pub channel: String,
}

pub const UPLOAD_REQUEST_VERSION: u32 = 1;

impl UploadRequestMessage {
    pub fn new(object: &ObjectRef) -> Self {
        UploadRequestMessage {
            bridge_upload_request: UPLOAD_REQUEST_VERSION,
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: object.version_id.clone(),
            etag: object.etag.clone(),
            size: object.size,
            channel: object.channel.as_str().to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "Records")]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventSource", default)]
    event_source: Option<String>,
    #[serde(rename = "eventName", default)]
    event_name: Option<String>,
    s3: Option<RecordS3>,
}

#[derive(Deserialize)]
struct RecordS3 {
    bucket: RecordBucket,
    object: RecordObject,
}

#[derive(Deserialize)]
struct RecordBucket {
    name: String,
}

#[derive(Deserialize)]
struct RecordObject {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(rename = "eTag", default)]
    etag: Option<String>,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
}

/// Decodes an object key as S3 writes it in event notifications: form URL
/// encoding, where `+` is a space and `%XX` are the bytes of UTF-8, decoded
/// exactly once (`%2B` is a literal `+`, `%2F` and `/` are both `/`).
pub fn decode_event_key(encoded: &str) -> Result<String, EventError> {
    let spaced = encoded.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| EventError(format!("object key {encoded:?} does not decode to UTF-8")))
}

/// Reads one inbox-queue message body.
pub fn parse_message(body: &str) -> Result<InboundMessage, EventError> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|error| EventError(format!("the body is not JSON: {error}")))?;
    parse_value(&value, 0)
}

fn parse_value(value: &serde_json::Value, depth: u8) -> Result<InboundMessage, EventError> {
    if value.get("Event").and_then(|event| event.as_str()) == Some("s3:TestEvent") {
        return Ok(InboundMessage::TestEvent);
    }
    if value.get("bridge_upload_request").is_some() {
        return parse_upload_request(value);
    }
    if value.get("Records").is_some() {
        return parse_notification(value);
    }
    // An SNS topic between S3 and the queue wraps the event in an envelope.
    if depth == 0
        && value.get("Type").and_then(|kind| kind.as_str()) == Some("Notification")
        && let Some(message) = value.get("Message").and_then(|message| message.as_str())
    {
        let inner: serde_json::Value = serde_json::from_str(message)
            .map_err(|error| EventError(format!("the SNS Message is not JSON: {error}")))?;
        return parse_value(&inner, depth + 1);
    }
    Err(EventError(
        "expected an S3 event notification (Records), an s3:TestEvent or an upload request".into(),
    ))
}

fn parse_upload_request(value: &serde_json::Value) -> Result<InboundMessage, EventError> {
    let request: UploadRequestMessage = serde_json::from_value(value.clone())
        .map_err(|error| EventError(format!("invalid upload request: {error}")))?;
    if request.bridge_upload_request != UPLOAD_REQUEST_VERSION {
        return Err(EventError(format!(
            "upload request version {} is not supported; this function reads version {UPLOAD_REQUEST_VERSION}",
            request.bridge_upload_request
        )));
    }
    let channel: Channel = request.channel.parse().map_err(EventError)?;
    if request.bucket.is_empty() || request.key.is_empty() {
        return Err(EventError("the upload request has an empty bucket or key".into()));
    }
    Ok(InboundMessage::Objects(vec![ObjectRef {
        bucket: request.bucket,
        key: request.key,
        version_id: request.version_id,
        etag: request.etag,
        size: request.size,
        channel,
    }]))
}

fn parse_notification(value: &serde_json::Value) -> Result<InboundMessage, EventError> {
    let notification: Notification = serde_json::from_value(value.clone())
        .map_err(|error| EventError(format!("invalid S3 event notification: {error}")))?;

    let mut objects = Vec::new();
    let mut ignored = Vec::new();
    for record in notification.records {
        let event_name = record.event_name.unwrap_or_default();
        if record.event_source.as_deref().is_some_and(|source| source != "aws:s3") {
            ignored.push(format!("event source {:?}", record.event_source.unwrap_or_default()));
            continue;
        }
        // S3 writes `ObjectCreated:Put`; EventBridge-style names carry an `s3:` prefix.
        if !event_name.trim_start_matches("s3:").starts_with("ObjectCreated:") {
            ignored.push(format!("event {event_name:?}"));
            continue;
        }
        let Some(s3) = record.s3 else {
            return Err(EventError(format!("the {event_name} record has no s3 member")));
        };
        objects.push(ObjectRef {
            bucket: s3.bucket.name,
            key: decode_event_key(&s3.object.key)?,
            version_id: s3
                .object
                .version_id
                .filter(|version| !version.is_empty() && version != "null"),
            etag: s3
                .object
                .etag
                .map(|etag| etag.trim_matches('"').to_owned())
                .filter(|etag| !etag.is_empty()),
            size: s3.object.size,
            channel: Channel::S3,
        });
    }

    if objects.is_empty() {
        let reason = if ignored.is_empty() {
            "the notification has no records".to_owned()
        } else {
            format!("nothing to upload: {}", ignored.join(", "))
        };
        return Ok(InboundMessage::Ignored(reason));
    }
    Ok(InboundMessage::Objects(objects))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(key: &str, event: &str) -> String {
        serde_json::json!({
            "Records": [{
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "ap-east-1",
                "eventTime": "2026-12-04T08:00:00.000Z",
                "eventName": event,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": "inbox-bucket", "arn": "arn:aws:s3:::inbox-bucket"},
                    "object": {"key": key, "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "versionId": "v1", "sequencer": "0A1B"}
                }
            }]
        })
        .to_string()
    }

    fn objects(message: InboundMessage) -> Vec<ObjectRef> {
        match message {
            InboundMessage::Objects(objects) => objects,
            other => panic!("expected objects, got {other:?}"),
        }
    }

    #[test]
    fn keys_decode_as_s3_encodes_them() {
        let cases = [
            ("inbox/this+im+%2B+age+blah.txt", "inbox/this im + age blah.txt"),
            (
                "%E5%8F%91%E7%A5%A8/2024%E5%B9%B4+%E5%8F%91%E7%A5%A8.pdf",
                "发票/2024年 发票.pdf",
            ),
            ("inbox%2F5%2F12%2Fa.pdf", "inbox/5/12/a.pdf"),
            ("inbox/5/12/100%25.pdf", "inbox/5/12/100%.pdf"),
            ("inbox/5/12/%2525.pdf", "inbox/5/12/%25.pdf"),
            ("plain.pdf", "plain.pdf"),
        ];
        for (encoded, expected) in cases {
            assert_eq!(decode_event_key(encoded).unwrap(), expected, "{encoded}");
        }
    }

    #[test]
    fn invalid_utf8_key_is_an_error() {
        let error = decode_event_key("inbox/%FF.pdf").unwrap_err();

        assert!(error.to_string().contains("does not decode to UTF-8"), "{error}");
    }

    #[test]
    fn notification_gives_decoded_object() {
        let message = parse_message(&notification("inbox/this+im+%2B+age+blah.txt", "ObjectCreated:Put")).unwrap();

        let objects = objects(message);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].bucket, "inbox-bucket");
        assert_eq!(objects[0].key, "inbox/this im + age blah.txt");
        assert_eq!(objects[0].version_id.as_deref(), Some("v1"));
        assert_eq!(objects[0].etag.as_deref(), Some("d41d8cd98f00b204e9800998ecf8427e"));
        assert_eq!(objects[0].size, Some(1024));
        assert_eq!(objects[0].channel, Channel::S3);
    }

    #[test]
    fn test_event_is_recognised() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-04T08:00:00.000Z","Bucket":"inbox-bucket","RequestId":"R","HostId":"H"}"#;

        assert_eq!(parse_message(body).unwrap(), InboundMessage::TestEvent);
    }

    #[test]
    fn removal_events_are_ignored() {
        let message = parse_message(&notification("inbox/a.pdf", "ObjectRemoved:Delete")).unwrap();

        assert!(matches!(message, InboundMessage::Ignored(reason) if reason.contains("ObjectRemoved:Delete")));
    }

    #[test]
    fn sns_envelope_is_unwrapped() {
        let envelope = serde_json::json!({
            "Type": "Notification",
            "MessageId": "m",
            "Message": notification("inbox/5/12/a+b.pdf", "ObjectCreated:CompleteMultipartUpload"),
        })
        .to_string();

        let objects = objects(parse_message(&envelope).unwrap());

        assert_eq!(objects[0].key, "inbox/5/12/a b.pdf");
    }

    #[test]
    fn upload_request_round_trips() {
        let object = ObjectRef {
            bucket: "b".into(),
            key: "scheduled/5/12/2024年 发票 +.pdf".into(),
            version_id: None,
            etag: Some("abc".into()),
            size: Some(3),
            channel: Channel::Schedule,
        };
        let body = serde_json::to_string(&UploadRequestMessage::new(&object)).unwrap();

        let parsed = objects(parse_message(&body).unwrap());

        assert_eq!(parsed, vec![object], "the key is not decoded again");
    }

    #[test]
    fn unreadable_bodies_are_errors() {
        let cases = [
            ("not json", "not JSON"),
            (r#"{"hello": 1}"#, "expected an S3 event notification"),
            (r#"{"Records": "x"}"#, "invalid S3 event notification"),
            (
                r#"{"bridge_upload_request": 2, "bucket": "b", "key": "k", "channel": "schedule"}"#,
                "version 2 is not supported",
            ),
            (
                r#"{"bridge_upload_request": 1, "bucket": "b", "key": "k", "channel": "fax"}"#,
                "channel",
            ),
            (
                r#"{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}"#,
                "no s3 member",
            ),
        ];
        for (body, expected) in cases {
            let error = parse_message(body).unwrap_err();
            assert!(error.to_string().contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn empty_version_and_quoted_etag_are_normalised() {
        let body = notification("a.pdf", "ObjectCreated:Put")
            .replace("\"v1\"", "\"null\"")
            .replace("\"d41d8cd98f00b204e9800998ecf8427e\"", "\"\\\"abc\\\"\"");

        let objects = objects(parse_message(&body).unwrap());

        assert_eq!(objects[0].version_id, None);
        assert_eq!(objects[0].etag.as_deref(), Some("abc"));
    }
}
