//! Short leases on a name in the document table, so that one invocation at a
//! time does something that must not run twice at once (an OAuth refresh).
//!
//! | pk | sk | item |
//! |---|---|---|
//! | `lock#<name>` | `lock` | [`LockRecord`] |

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::store::{VersionedStore, load_typed, store_typed};
use crate::ports::InfraError;

pub const LOCK_SK: &str = "lock";

/// One lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub pk: String,
    pub sk: String,
    /// The holder's random id; empty when released.
    pub owner: String,
    /// Until when the holder has the lock (epoch milliseconds).
    pub until_ms: i64,
    pub version: u64,
    pub expires_at: i64,
}

pub fn lock_pk(name: &str) -> String {
    format!("lock#{name}")
}

/// Takes the lock for `lease` unless another owner has it. Returns whether `owner` has the lock now.
pub async fn try_lock(
    store: &dyn VersionedStore,
    name: &str,
    owner: &str,
    lease: Duration,
) -> Result<bool, InfraError> {
    let pk = lock_pk(name);
    let now_ms = Utc::now().timestamp_millis();
    let current: Option<LockRecord> = load_typed(store, &pk, LOCK_SK).await?;
    if let Some(current) = &current
        && current.owner != owner
        && !current.owner.is_empty()
        && current.until_ms > now_ms
    {
        return Ok(false);
    }
    let expected = current.as_ref().map(|record| record.version);
    let record = LockRecord {
        pk,
        sk: LOCK_SK.to_owned(),
        owner: owner.to_owned(),
        until_ms: now_ms + lease.as_millis() as i64,
        version: expected.unwrap_or(0) + 1,
        expires_at: now_ms / 1000 + 24 * 3600,
    };
    store_typed(store, &record, expected).await
}

/// Releases the lock if `owner` still holds it.
pub async fn unlock(store: &dyn VersionedStore, name: &str, owner: &str) -> Result<(), InfraError> {
    let pk = lock_pk(name);
    let Some(current) = load_typed::<LockRecord>(store, &pk, LOCK_SK).await? else {
        return Ok(());
    };
    if current.owner != owner {
        return Ok(());
    }
    let released = LockRecord {
        owner: String::new(),
        until_ms: 0,
        version: current.version + 1,
        ..current.clone()
    };
    // Losing this race means the lease had expired and another owner took it: nothing to release.
    store_typed(store, &released, Some(current.version)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::FakeStore;

    #[tokio::test]
    async fn one_owner_at_a_time() {
        let store = FakeStore::default();
        let lease = Duration::from_secs(30);

        assert!(try_lock(&store, "oauth#xero", "a", lease).await.unwrap());
        assert!(!try_lock(&store, "oauth#xero", "b", lease).await.unwrap());
        assert!(try_lock(&store, "oauth#other", "b", lease).await.unwrap());

        unlock(&store, "oauth#xero", "b").await.unwrap();
        assert!(
            !try_lock(&store, "oauth#xero", "b", lease).await.unwrap(),
            "only the owner releases"
        );

        unlock(&store, "oauth#xero", "a").await.unwrap();
        assert!(try_lock(&store, "oauth#xero", "b", lease).await.unwrap());
    }

    #[tokio::test]
    async fn expired_lease_can_be_taken() {
        let store = FakeStore::default();

        assert!(try_lock(&store, "n", "a", Duration::from_millis(1)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;

        assert!(try_lock(&store, "n", "b", Duration::from_secs(30)).await.unwrap());
    }
}
