//! Dispatch records: one per idempotency key in the document table, so that
//! every redelivery, redrive and concurrent copy of a message creates at most
//! one object at the destination.
//!
//! | pk | sk | item |
//! |---|---|---|
//! | `dispatch#<idempotency key>` | `dispatch` | [`DispatchRecord`] |
//!
//! The dead-letter consumer and `bridgectl` read a record with
//! [`DispatchStore::get_dispatch`](super::ports::DispatchStore::get_dispatch)
//! to explain a message: `last_error` and `error_class` hold the latest failure.

use serde::{Deserialize, Serialize};

/// Sort key of every dispatch record.
pub const DISPATCH_SK: &str = "dispatch";

/// Returns the partition key of the dispatch record for an idempotency key.
pub fn dispatch_pk(idempotency_key: &str) -> String {
    format!("dispatch#{idempotency_key}")
}

/// Dispatch record states.
pub mod dispatch_status {
    /// An attempt holds the lease until `lease_until`.
    pub const IN_PROGRESS: &str = "in_progress";
    /// Delivered; `remote_id` names the object at the destination.
    pub const DONE: &str = "done";
    /// The last attempt failed in a way a retry may fix; the message is still queued.
    pub const RETRY: &str = "retry";
    /// The last attempt failed permanently; the message went to the dead-letter queue.
    pub const FAILED: &str = "failed";
}

/// The state of one message's delivery to one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchRecord {
    pub pk: String,
    pub sk: String,
    pub idempotency_key: String,
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<i64>,
    /// One of [`dispatch_status`].
    pub status: String,
    /// The attempt holding the lease (random per attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Until when an `in_progress` lease holds (epoch seconds); afterwards another copy may take over.
    #[serde(default)]
    pub lease_until: i64,
    /// Failed attempts so far. Rate-limit waits are not counted.
    #[serde(default)]
    pub attempts: u32,
    /// The destination's id of the created or updated object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    /// The destination's result, in words (for example `Bill 146 created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_detail: Option<String>,
    /// The latest failure, in words; never a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Class of the latest failure, one of [`crate::failures::error_class`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// Set when an attempt may have reached the destination without a known
    /// outcome; the next attempt looks the object up before creating it.
    #[serde(default)]
    pub ambiguous: bool,
    /// Parts already delivered by a multi-part destination (the alert channels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts_done: Vec<String>,
    /// The SQS message id of the latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// Incremented by every write; writes are conditional on it.
    #[serde(default)]
    pub version: u64,
}

impl DispatchRecord {
    /// Creates the record of a key seen for the first time.
    pub fn new(idempotency_key: &str, destination: &str, document_id: Option<i64>, now: &str) -> Self {
        DispatchRecord {
            pk: dispatch_pk(idempotency_key),
            sk: DISPATCH_SK.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            destination: destination.to_owned(),
            document_id,
            status: dispatch_status::RETRY.to_owned(),
            owner: None,
            lease_until: 0,
            attempts: 0,
            remote_id: None,
            remote_detail: None,
            last_error: None,
            error_class: None,
            ambiguous: false,
            parts_done: Vec::new(),
            message_id: None,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            delivered_at: None,
            version: 0,
        }
    }
}

/// The outcome of trying to claim a key for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchClaim {
    /// This attempt holds the lease; the record as written.
    Claimed(DispatchRecord),
    /// Delivered before: a duplicate.
    Done(DispatchRecord),
    /// Another attempt holds an unexpired lease right now.
    Busy(DispatchRecord),
}

/// Decides a claim from the current record. This pure rule is shared by the
/// DynamoDB store and the in-memory fake.
///
/// A key is claimable when it is new, when its last attempt failed (`retry`,
/// or `failed` after a redrive), or when an `in_progress` lease ran out
/// because its attempt crashed or timed out. In the last case the crashed
/// attempt may have reached the destination, so the record is marked ambiguous.
pub fn decide_claim(
    existing: Option<&DispatchRecord>,
    fresh: DispatchRecord,
    owner: &str,
    lease_until: i64,
    now_epoch: i64,
) -> DispatchClaim {
    let mut claimed = match existing {
        None => fresh,
        Some(record) if record.status == dispatch_status::DONE => return DispatchClaim::Done(record.clone()),
        Some(record) if record.status == dispatch_status::IN_PROGRESS && record.lease_until >= now_epoch => {
            return DispatchClaim::Busy(record.clone());
        }
        Some(record) => {
            let mut next = record.clone();
            if record.status == dispatch_status::IN_PROGRESS {
                next.ambiguous = true;
                next.last_error = Some("an earlier attempt stopped without recording its outcome".into());
                next.error_class = Some(crate::failures::error_class::AMBIGUOUS.into());
            }
            next.message_id = fresh.message_id;
            next.updated_at = fresh.updated_at;
            next
        }
    };
    claimed.status = dispatch_status::IN_PROGRESS.to_owned();
    claimed.owner = Some(owner.to_owned());
    claimed.lease_until = lease_until;
    claimed.version += 1;
    DispatchClaim::Claimed(claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> DispatchRecord {
        DispatchRecord::new("k", "accounting", Some(1), "2026-12-04T08:00:00Z")
    }

    #[test]
    fn new_key_is_claimed() {
        let DispatchClaim::Claimed(record) = decide_claim(None, fresh(), "a", 200, 100) else {
            panic!("expected a claim");
        };

        assert_eq!(record.status, dispatch_status::IN_PROGRESS);
        assert_eq!(record.owner.as_deref(), Some("a"));
        assert_eq!(record.lease_until, 200);
        assert_eq!(record.version, 1);
        assert!(!record.ambiguous);
    }

    #[test]
    fn live_lease_is_busy_and_done_is_done() {
        let DispatchClaim::Claimed(held) = decide_claim(None, fresh(), "a", 200, 100) else {
            panic!("expected a claim");
        };

        assert!(matches!(
            decide_claim(Some(&held), fresh(), "b", 300, 150),
            DispatchClaim::Busy(_)
        ));

        let mut done = held.clone();
        done.status = dispatch_status::DONE.into();
        assert!(matches!(
            decide_claim(Some(&done), fresh(), "b", 300, 150),
            DispatchClaim::Done(_)
        ));
    }

    #[test]
    fn expired_lease_is_taken_over_as_ambiguous() {
        let DispatchClaim::Claimed(held) = decide_claim(None, fresh(), "a", 200, 100) else {
            panic!("expected a claim");
        };

        let DispatchClaim::Claimed(next) = decide_claim(Some(&held), fresh(), "b", 400, 201) else {
            panic!("expected a takeover");
        };

        assert_eq!(next.owner.as_deref(), Some("b"));
        assert!(next.ambiguous);
        assert_eq!(next.version, 2);
    }

    #[test]
    fn failed_and_retry_are_claimable() {
        for status in [dispatch_status::RETRY, dispatch_status::FAILED] {
            let mut record = fresh();
            record.status = status.into();
            record.attempts = 2;

            let DispatchClaim::Claimed(next) = decide_claim(Some(&record), fresh(), "b", 400, 201) else {
                panic!("expected a claim for {status}");
            };

            assert_eq!(next.attempts, 2, "attempts carry over for {status}");
            assert!(!next.ambiguous);
        }
    }
}
