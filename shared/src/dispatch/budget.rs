//! Rate budgets per destination account, shared by every concurrent
//! invocation through one item in the document table.
//!
//! | pk | sk | item |
//! |---|---|---|
//! | `budget#<destination kind>#<account>` | `budget` | [`BudgetState`] |
//!
//! Each budget combines a token bucket (requests per window), concurrency
//! leases (calls in flight) and an optional daily count. The bucket contains a
//! burst of a tenth of the window's allowance and refills the rest evenly
//! over the window, so that no window of that length ever sees more than
//! `requests` calls from this bundle: burst + refill = requests.
//!
//! Lambda's `MaximumConcurrency` cannot go below 2 and counts invocations, not
//! accounts, so these budgets are what keeps QuickBooks, Xero, WeCom and
//! HubSpot under their published limits.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::store::{VersionedStore, load_typed, race_pause, store_typed};
use crate::ports::InfraError;

/// Sort key of every budget item.
pub const BUDGET_SK: &str = "budget";

/// Budget items expire two days after their last use.
const BUDGET_TTL_SECONDS: i64 = 2 * 24 * 3600;

/// Milli-tokens per request.
const TOKEN: i64 = 1000;

/// A destination's published limits for one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// Window length in seconds.
    pub window_seconds: u32,
    /// Calls allowed in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<u32>,
    /// Requests allowed per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
}

impl RateLimit {
    /// QuickBooks Online: 500 requests per minute and 10 concurrent per company.
    pub const QUICKBOOKS: RateLimit = RateLimit {
        requests: 500,
        window_seconds: 60,
        concurrent: Some(10),
        daily: None,
    };
    /// Xero: 60 calls per minute, 5 concurrent and 5,000 per day per organisation.
    pub const XERO: RateLimit = RateLimit {
        requests: 60,
        window_seconds: 60,
        concurrent: Some(5),
        daily: Some(5000),
    };
    /// WeCom group robot: 20 messages per minute.
    pub const WECOM: RateLimit = RateLimit {
        requests: 20,
        window_seconds: 60,
        concurrent: None,
        daily: None,
    };
    /// HubSpot: 100 requests per 10 seconds per app and account.
    pub const HUBSPOT: RateLimit = RateLimit {
        requests: 100,
        window_seconds: 10,
        concurrent: None,
        daily: None,
    };

    fn burst(&self) -> i64 {
        i64::from((self.requests / 10).max(1))
    }

    /// Tokens added over one window: the allowance minus the burst.
    fn refill_per_window(&self) -> i64 {
        (i64::from(self.requests) - self.burst()).max(1)
    }

    fn window_ms(&self) -> i64 {
        i64::from(self.window_seconds.max(1)) * 1000
    }
}

/// One budget: the account it covers and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetScope {
    /// `<destination kind>#<account>`, for example `quickbooks#9130355377`.
    pub key: String,
    pub limit: RateLimit,
}

impl BudgetScope {
    pub fn new(kind: &str, account: &str, limit: RateLimit) -> Self {
        BudgetScope {
            key: format!("{kind}#{account}"),
            limit,
        }
    }

    pub fn pk(&self) -> String {
        format!("budget#{}", self.key)
    }
}

/// The stored state of one budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetState {
    pub pk: String,
    pub sk: String,
    /// Milli-tokens left in the bucket.
    pub tokens_milli: i64,
    /// When the bucket was last refilled (epoch milliseconds).
    pub refilled_at_ms: i64,
    /// The UTC day `day_count` counts, `YYYY-MM-DD`.
    #[serde(default)]
    pub day: String,
    #[serde(default)]
    pub day_count: u32,
    /// Calls in flight: lease id to expiry (epoch milliseconds).
    #[serde(default)]
    pub leases: BTreeMap<String, i64>,
    /// No request before this time (epoch milliseconds). Set when the destination returns 429.
    #[serde(default)]
    pub blocked_until_ms: i64,
    pub version: u64,
    pub expires_at: i64,
}

/// The result of asking a budget for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetDecision {
    Granted(BudgetState),
    /// Try again after `wait`; `reason` names the limit.
    Denied {
        wait: Duration,
        reason: String,
    },
}

fn utc_day(now_ms: i64) -> String {
    Utc.timestamp_millis_opt(now_ms)
        .single()
        .map(|time| time.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn next_utc_midnight_ms(now_ms: i64) -> i64 {
    let day_ms = 24 * 3600 * 1000;
    (now_ms.div_euclid(day_ms) + 1) * day_ms
}

fn millis(value: i64) -> Duration {
    Duration::from_millis(value.max(0) as u64)
}

/// Takes one request from a budget, and a concurrency lease when `lease` is
/// given (lease id, expiry in epoch milliseconds). A pure function of the
/// stored state, so that the rule is tested without a table.
pub fn take(
    state: Option<BudgetState>,
    scope: &BudgetScope,
    now_ms: i64,
    lease: Option<(&str, i64)>,
) -> BudgetDecision {
    let limit = scope.limit;
    let capacity = limit.burst() * TOKEN;
    let mut state = state.unwrap_or_else(|| BudgetState {
        pk: scope.pk(),
        sk: BUDGET_SK.to_owned(),
        tokens_milli: capacity,
        refilled_at_ms: now_ms,
        day: utc_day(now_ms),
        day_count: 0,
        leases: BTreeMap::new(),
        blocked_until_ms: 0,
        version: 0,
        expires_at: 0,
    });

    if state.blocked_until_ms > now_ms {
        return BudgetDecision::Denied {
            wait: millis(state.blocked_until_ms - now_ms),
            reason: format!("{} returned 429 recently; waiting for its Retry-After", scope.key),
        };
    }

    // Refill for the time since the last refill, in integer milli-tokens.
    let elapsed = (now_ms - state.refilled_at_ms).max(0);
    let added = i128::from(elapsed) * i128::from(limit.refill_per_window() * TOKEN) / i128::from(limit.window_ms());
    state.tokens_milli = (i128::from(state.tokens_milli) + added).min(i128::from(capacity)) as i64;
    state.refilled_at_ms = now_ms;

    let today = utc_day(now_ms);
    if state.day != today {
        state.day = today;
        state.day_count = 0;
    }
    if let Some(daily) = limit.daily
        && state.day_count >= daily
    {
        return BudgetDecision::Denied {
            wait: millis(next_utc_midnight_ms(now_ms) - now_ms),
            reason: format!("{} used its {daily} requests for the UTC day", scope.key),
        };
    }

    state.leases.retain(|_, expiry| *expiry > now_ms);
    if let (Some(concurrent), Some(_)) = (limit.concurrent, lease)
        && state.leases.len() >= concurrent as usize
    {
        let earliest = state.leases.values().min().copied().unwrap_or(now_ms);
        return BudgetDecision::Denied {
            wait: millis((earliest - now_ms).clamp(1000, 5000)),
            reason: format!("{} has {concurrent} calls in flight", scope.key),
        };
    }

    if state.tokens_milli < TOKEN {
        let missing = TOKEN - state.tokens_milli;
        let per_window = limit.refill_per_window() * TOKEN;
        let numerator = i128::from(missing) * i128::from(limit.window_ms());
        let wait_ms = ((numerator + i128::from(per_window) - 1) / i128::from(per_window)) as i64;
        return BudgetDecision::Denied {
            wait: millis(wait_ms),
            reason: format!(
                "{} is at its limit of {} requests per {} s",
                scope.key, limit.requests, limit.window_seconds
            ),
        };
    }

    state.tokens_milli -= TOKEN;
    state.day_count += 1;
    if let Some((id, expiry)) = lease {
        state.leases.insert(id.to_owned(), expiry);
    }
    state.version += 1;
    state.expires_at = now_ms / 1000 + BUDGET_TTL_SECONDS;
    BudgetDecision::Granted(state)
}

/// Shared budget operations against the document table.
pub struct Budgets<'a> {
    pub store: &'a dyn VersionedStore,
}

impl Budgets<'_> {
    /// Takes one request (and a lease when given) or returns how long to wait.
    pub async fn acquire(
        &self,
        scope: &BudgetScope,
        lease: Option<(&str, Duration)>,
    ) -> Result<Result<(), (Duration, String)>, InfraError> {
        for _ in 0..8 {
            let now_ms = Utc::now().timestamp_millis();
            let current: Option<BudgetState> = load_typed(self.store, &scope.pk(), BUDGET_SK).await?;
            let expected = current.as_ref().map(|state| state.version);
            let lease = lease.map(|(id, ttl)| (id, now_ms + ttl.as_millis() as i64));
            match take(current, scope, now_ms, lease) {
                BudgetDecision::Denied { wait, reason } => return Ok(Err((wait, reason))),
                BudgetDecision::Granted(next) => {
                    if store_typed(self.store, &next, expected).await? {
                        return Ok(Ok(()));
                    }
                }
            }
            race_pause().await;
        }
        Ok(Err((
            Duration::from_secs(1),
            format!("{} is contended by many invocations", scope.key),
        )))
    }

    /// Returns a concurrency lease. A lease that cannot be returned expires on its own.
    pub async fn release(&self, scope: &BudgetScope, lease_id: &str) -> Result<(), InfraError> {
        self.update(scope, |state| state.leases.remove(lease_id).is_some())
            .await
    }

    /// Stops every invocation from calling this account until `until_ms`,
    /// after the destination returned 429.
    pub async fn block_until(&self, scope: &BudgetScope, until_ms: i64) -> Result<(), InfraError> {
        self.update(scope, |state| {
            if state.blocked_until_ms >= until_ms {
                return false;
            }
            state.blocked_until_ms = until_ms;
            state.tokens_milli = 0;
            true
        })
        .await
    }

    async fn update(&self, scope: &BudgetScope, change: impl Fn(&mut BudgetState) -> bool) -> Result<(), InfraError> {
        for _ in 0..8 {
            let current: Option<BudgetState> = load_typed(self.store, &scope.pk(), BUDGET_SK).await?;
            let expected = current.as_ref().map(|state| state.version);
            let mut state = match current {
                Some(state) => state,
                None => match take(None, scope, Utc::now().timestamp_millis(), None) {
                    BudgetDecision::Granted(mut state) => {
                        // A fresh state with its full bucket; `take` spent one token.
                        state.tokens_milli += TOKEN;
                        state.day_count = 0;
                        state
                    }
                    BudgetDecision::Denied { .. } => return Ok(()),
                },
            };
            if !change(&mut state) {
                return Ok(());
            }
            state.version = expected.unwrap_or(0) + 1;
            if store_typed(self.store, &state, expected).await? {
                return Ok(());
            }
            race_pause().await;
        }
        Err(InfraError::new(
            "DynamoDB",
            "PutItem",
            format!("budget {} kept changing during an update", scope.key),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(limit: RateLimit) -> BudgetScope {
        BudgetScope::new("test", "acct", limit)
    }

    fn granted(decision: BudgetDecision) -> BudgetState {
        match decision {
            BudgetDecision::Granted(state) => state,
            BudgetDecision::Denied { reason, .. } => panic!("expected a grant, got a denial: {reason}"),
        }
    }

    /// Counts grants over `duration_ms`, asking every `step_ms`.
    fn grants_within(limit: RateLimit, duration_ms: i64, step_ms: i64) -> u32 {
        let scope = scope(limit);
        let mut state = None;
        let mut count = 0;
        let start = 1_796_371_200_000;
        let mut now = start;
        while now < start + duration_ms {
            if let BudgetDecision::Granted(next) = take(state.clone(), &scope, now, None) {
                state = Some(next);
                count += 1;
            }
            now += step_ms;
        }
        count
    }

    #[test]
    fn never_more_than_the_limit_per_window() {
        // The bucket starts full, so the first window is the busiest one.
        let cases = [
            (RateLimit::WECOM, 10),
            (RateLimit::XERO, 10),
            (RateLimit::HUBSPOT, 1),
            (RateLimit::QUICKBOOKS, 1),
        ];
        for (limit, step_ms) in cases {
            let window_ms = i64::from(limit.window_seconds) * 1000;
            let count = grants_within(limit, window_ms, step_ms);

            assert!(count <= limit.requests, "{limit:?}: {count} grants in one window");
            assert!(
                count + 1 >= limit.requests,
                "{limit:?}: only {count} grants in one window"
            );
        }
    }

    #[test]
    fn denial_names_the_wait() {
        let scope = scope(RateLimit::WECOM);
        let now = 1_796_371_200_000;
        let mut state = None;
        for _ in 0..2 {
            state = Some(granted(take(state, &scope, now, None)));
        }

        let BudgetDecision::Denied { wait, reason } = take(state, &scope, now, None) else {
            panic!("the burst of two is spent");
        };

        // 18 tokens per 60 s: one token takes 3.34 s.
        assert_eq!(wait, Duration::from_millis(3334));
        assert!(reason.contains("20 requests per 60 s"), "{reason}");
    }

    #[test]
    fn concurrency_leases_limit_calls_in_flight() {
        let scope = scope(RateLimit::XERO);
        let now = 1_796_371_200_000;
        let mut state = None;
        for index in 0..5 {
            let id = format!("lease-{index}");
            state = Some(granted(take(state, &scope, now + index, Some((&id, now + 30_000)))));
        }

        let denied = take(state.clone(), &scope, now + 10, Some(("lease-6", now + 30_000)));
        assert!(matches!(denied, BudgetDecision::Denied { .. }), "{denied:?}");

        // Expired leases no longer count.
        let later = now + 30_001 + 60_000;
        granted(take(state, &scope, later, Some(("lease-6", later + 30_000))));
    }

    #[test]
    fn daily_limit_waits_until_midnight() {
        let limit = RateLimit {
            requests: 1000,
            window_seconds: 1,
            concurrent: None,
            daily: Some(3),
        };
        let scope = scope(limit);
        // 2026-12-04T23:00:00Z
        let now = 1_796_425_200_000;
        let mut state = None;
        for step in 0..3 {
            state = Some(granted(take(state, &scope, now + step * 1000, None)));
        }

        let BudgetDecision::Denied { wait, .. } = take(state.clone(), &scope, now + 5000, None) else {
            panic!("the day's allowance is spent");
        };
        assert_eq!(wait, Duration::from_millis(3_600_000 - 5000));

        granted(take(state, &scope, now + 3_600_000, None));
    }

    #[test]
    fn block_after_429_denies_until_it_ends() {
        let scope = scope(RateLimit::QUICKBOOKS);
        let now = 1_796_371_200_000;
        let mut state = granted(take(None, &scope, now, None));
        state.blocked_until_ms = now + 37_000;

        let BudgetDecision::Denied { wait, .. } = take(Some(state.clone()), &scope, now + 1000, None) else {
            panic!("blocked");
        };
        assert_eq!(wait, Duration::from_secs(36));
        granted(take(Some(state), &scope, now + 37_001, None));
    }
}
