//! The inbound path: files from the S3 inbox, the scheduled prefix and local
//! disks uploaded to RecordEngine, each object version once.
//!
//! Every channel goes through [`Uploader`]:
//!
//! - the `s3-upload` function reads inbox-queue messages ([`event`]) and calls
//!   [`Uploader::upload_object`];
//! - the `scheduled-upload` function calls [`run_scheduled`], which lists the
//!   scheduled prefix and calls the same method with bounded concurrency;
//! - `bridgectl upload` calls [`upload_local_files`].
//!
//! The upload record (`ref#<correlation key>`) is claimed with a conditional
//! write before any byte goes to RecordEngine, and finished with the document
//! id afterwards, so a redelivered event or a second scheduled run finds the
//! version uploaded and sends nothing.

pub mod aws;
pub mod event;
pub mod fakes;
pub mod local;
pub mod mapping;
pub mod ports;
pub mod schedule;
pub mod settings;
pub mod uploader;
#[cfg(test)]
mod uploader_tests;

use sha2::{Digest, Sha256};

pub use event::{InboundMessage, UploadRequestMessage, decode_event_key, parse_message};
pub use local::{LocalUpload, upload_local_files};
pub use mapping::{ContactMapping, MappingRules, Target};
pub use ports::{FailureLog, Handoff, ObjectInfo, ObjectStore, UploadClaim, UploadLedger};
pub use schedule::{RunSummary, ScheduleConfig, run_scheduled};
pub use settings::{AwsUploader, InboundSettings};
pub use uploader::{UploadOutcome, Uploader, UploaderConfig};

/// Channel through which a file reached the bridge; stored as `origin.channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// An S3 event notification for the inbox.
    S3,
    /// The scheduled run over the scheduled prefix.
    Schedule,
    /// A manual upload with `bridgectl upload`.
    Bridgectl,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::S3 => "s3",
            Channel::Schedule => "schedule",
            Channel::Bridgectl => "bridgectl",
        }
    }
}

impl std::str::FromStr for Channel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "s3" => Ok(Channel::S3),
            "schedule" => Ok(Channel::Schedule),
            "bridgectl" => Ok(Channel::Bridgectl),
            other => Err(format!("unknown channel {other:?}: expected s3, schedule or bridgectl")),
        }
    }
}

/// An S3 object to upload, as an event or a listing names it. The key is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    /// Without quotes.
    pub etag: Option<String>,
    pub size: Option<u64>,
    pub channel: Channel,
}

/// The correlation key of an S3 object version: `s3-` and 40 hex digits of
/// SHA-256 over bucket, key and version id, or the ETag in a bucket without
/// versioning. The same version always gives the same key, whichever channel
/// reports it.
pub fn s3_correlation_key(bucket: &str, key: &str, version_id: Option<&str>, etag: Option<&str>) -> String {
    let version = match (version_id, etag) {
        (Some(version), _) => format!("version:{version}"),
        (None, Some(etag)) => format!("etag:{}", etag.trim_matches('"')),
        (None, None) => "unversioned".to_owned(),
    };
    let digest = Sha256::digest(format!("{bucket}\n{key}\n{version}").as_bytes());
    format!("s3-{}", &hex::encode(digest)[..40])
}

/// The file name RecordEngine gets: the last segment of the key.
pub fn filename_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_key_is_deterministic() {
        let first = s3_correlation_key("inbox", "发票/a.pdf", Some("v1"), Some("e"));
        let again = s3_correlation_key("inbox", "发票/a.pdf", Some("v1"), Some("other etag"));

        assert_eq!(first, again, "the version id decides when present");
        assert!(first.starts_with("s3-"));
        assert_eq!(first.len(), 43);
        assert_ne!(first, s3_correlation_key("inbox", "发票/a.pdf", Some("v2"), None));
        assert_ne!(first, s3_correlation_key("inbox2", "发票/a.pdf", Some("v1"), None));
        assert_eq!(
            s3_correlation_key("b", "k", None, Some("\"abc\"")),
            s3_correlation_key("b", "k", None, Some("abc")),
            "quotes around the ETag do not matter"
        );
    }

    #[test]
    fn filename_is_last_segment() {
        assert_eq!(filename_of("发票/2024年 发票.pdf"), "2024年 发票.pdf");
        assert_eq!(filename_of("a.pdf"), "a.pdf");
        assert_eq!(filename_of("inbox/5/12/"), "");
    }

    #[test]
    fn channel_names_round_trip() {
        for channel in [Channel::S3, Channel::Schedule, Channel::Bridgectl] {
            assert_eq!(channel.as_str().parse::<Channel>(), Ok(channel));
        }
        assert!("fax".parse::<Channel>().is_err());
    }
}
