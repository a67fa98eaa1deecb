//! The document-table operations the dispatch engine needs: a versioned item
//! store with conditional writes, and the typed records on top of it
//! (dispatch records, rate budgets, locks).

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::record::{DISPATCH_SK, DispatchClaim, DispatchRecord, decide_claim, dispatch_pk};
use crate::ports::InfraError;

/// Items that carry a `version` number and are only written when the stored
/// version is the one read, so that concurrent invocations never lose an update.
#[async_trait]
pub trait VersionedStore: Send + Sync {
    /// Reads an item with a strongly consistent read.
    async fn load(&self, pk: &str, sk: &str) -> Result<Option<serde_json::Value>, InfraError>;

    /// Writes `item` when the stored `version` equals `expected`, or when no
    /// item exists and `expected` is `None`. Returns `false` when another
    /// writer got there first.
    async fn store(&self, item: serde_json::Value, expected: Option<u64>) -> Result<bool, InfraError>;
}

/// Reads a typed item.
pub async fn load_typed<T: DeserializeOwned>(
    store: &dyn VersionedStore,
    pk: &str,
    sk: &str,
) -> Result<Option<T>, InfraError> {
    match store.load(pk, sk).await? {
        None => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|error| InfraError::new("DynamoDB", "GetItem", format!("item {pk}/{sk} is unreadable: {error}"))),
    }
}

/// Writes a typed item conditionally; see [`VersionedStore::store`].
pub async fn store_typed<T: Serialize>(
    store: &dyn VersionedStore,
    item: &T,
    expected: Option<u64>,
) -> Result<bool, InfraError> {
    let value = serde_json::to_value(item)
        .map_err(|error| InfraError::new("DynamoDB", "PutItem", format!("item does not serialise: {error}")))?;
    store.store(value, expected).await
}

/// How many times a conditional write is retried after losing a race.
const MAX_WRITE_RACES: usize = 8;

/// Reads the dispatch record of an idempotency key: the entry point for the
/// dead-letter consumer and `bridgectl`.
pub async fn get_dispatch(
    store: &dyn VersionedStore,
    idempotency_key: &str,
) -> Result<Option<DispatchRecord>, InfraError> {
    load_typed(store, &dispatch_pk(idempotency_key), DISPATCH_SK).await
}

/// Claims a key for one attempt; see [`decide_claim`] for the rule.
pub async fn claim_dispatch(
    store: &dyn VersionedStore,
    fresh: DispatchRecord,
    owner: &str,
    lease_until: i64,
    now_epoch: i64,
) -> Result<DispatchClaim, InfraError> {
    for _ in 0..MAX_WRITE_RACES {
        let existing: Option<DispatchRecord> = load_typed(store, &fresh.pk, &fresh.sk).await?;
        let expected = existing.as_ref().map(|record| record.version);
        let claim = decide_claim(existing.as_ref(), fresh.clone(), owner, lease_until, now_epoch);
        let DispatchClaim::Claimed(record) = &claim else {
            return Ok(claim);
        };
        if store_typed(store, record, expected).await? {
            return Ok(claim);
        }
        // Another copy wrote in between: decide again on what it wrote.
        race_pause().await;
    }
    Err(InfraError::new(
        "DynamoDB",
        "PutItem",
        format!("dispatch record {} kept changing during the claim", fresh.pk),
    ))
}

/// Writes the outcome of an attempt if `owner` still holds the record's lease.
/// Returns `false` when the lease was lost to another copy.
pub async fn finish_dispatch(
    store: &dyn VersionedStore,
    record: &DispatchRecord,
    owner: &str,
) -> Result<bool, InfraError> {
    for _ in 0..MAX_WRITE_RACES {
        let current: Option<DispatchRecord> = load_typed(store, &record.pk, &record.sk).await?;
        let Some(current) = current else {
            return Ok(false);
        };
        if current.owner.as_deref() != Some(owner) {
            return Ok(false);
        }
        let mut next = record.clone();
        next.version = current.version + 1;
        if store_typed(store, &next, Some(current.version)).await? {
            return Ok(true);
        }
        race_pause().await;
    }
    Ok(false)
}

/// Waits a few random milliseconds before retrying a lost race, so that
/// writers that collided do not collide again.
pub(crate) async fn race_pause() {
    let millis: u64 = rand::random_range(5..40);
    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
}
