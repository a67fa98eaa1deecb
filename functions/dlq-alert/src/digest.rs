//! Alert digests: a window budget in the document table, shared by every
//! concurrent invocation, that turns a storm of failures into a few messages.
//!
//! | pk | sk | item |
//! |---|---|---|
//! | `alertdigest#<scope>` | `digest` | [`DigestState`] |
//!
//! Each window allows `max_per_window` messages. The first failures of a
//! window are sent at once. Once the window's messages are spent, failures
//! wait in the item and are sent together as one digest when the window
//! ends, on the next invocation; the flush schedule invokes the function at
//! least once a minute. A window that ends with failures held is followed
//! by one twice as long, up to `max_window`, so that a storm lasting hours
//! sends a few digests an hour rather than a steady stream.

use std::time::Duration;

use bridge_shared::alerts::OperationalAlert;
use bridge_shared::dispatch::store::{VersionedStore, load_typed, store_typed};
use bridge_shared::ports::InfraError;
use serde::{Deserialize, Serialize};

/// Sort key of every digest item.
pub const DIGEST_SK: &str = "digest";

/// Digest items expire a week after their last change.
const DIGEST_TTL_SECONDS: i64 = 7 * 24 * 3600;

/// How many conditional writes are tried before giving up on a contended item.
const MAX_WRITE_RACES: usize = 16;

/// The budget of one alert scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestConfig {
    /// `failures` for dead letters, `alert-channel` for failed alerts.
    pub scope: String,
    /// Length of a calm window.
    pub window: Duration,
    /// Maximum window length during a storm.
    pub max_window: Duration,
    /// Messages allowed per window.
    pub max_per_window: u32,
    /// Failures listed in the item while held; more are only counted.
    pub max_held: usize,
    /// Failed sends after which a held failure is dropped from the digest.
    pub max_send_failures: u32,
}

impl DigestConfig {
    pub fn pk(&self) -> String {
        format!("alertdigest#{}", self.scope)
    }
}

/// A failure waiting to be named in an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAlert {
    pub failure_id: String,
    /// Its line in a digest.
    pub line: String,
    /// The alert sent when it is the only failure in a message.
    pub alert: OperationalAlert,
    /// Sends of a message naming it that failed.
    #[serde(default)]
    pub send_failures: u32,
}

/// The stored state of one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestState {
    pub pk: String,
    pub sk: String,
    /// Start of the current window (epoch milliseconds).
    pub window_started_ms: i64,
    pub window_ms: i64,
    pub sent_in_window: u32,
    /// Windows in a row that ended with failures held.
    pub saturated_windows: u32,
    pub held: Vec<HeldAlert>,
    /// Failures held beyond `max_held`: counted in the next digest, not listed.
    #[serde(default)]
    pub unlisted: u64,
    pub version: u64,
    pub expires_at: i64,
}

/// The decision of one invocation: what it sends now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing is waiting.
    Nothing,
    /// The window's messages are spent; the failures wait in the item.
    Hold,
    /// Send one message naming `alerts` and counting `unlisted` more.
    Send { alerts: Vec<HeldAlert>, unlisted: u64 },
}

/// Adds `incoming` to the state and decides what to send now: a pure
/// function of the stored state, so that the rule is tested without a table.
pub fn plan(
    state: Option<DigestState>,
    config: &DigestConfig,
    now_ms: i64,
    incoming: Vec<HeldAlert>,
) -> (DigestState, Plan) {
    let base_ms = config.window.as_millis() as i64;
    let max_ms = (config.max_window.as_millis() as i64).max(base_ms);
    let mut state = state.unwrap_or_else(|| DigestState {
        pk: config.pk(),
        sk: DIGEST_SK.to_owned(),
        window_started_ms: now_ms,
        window_ms: base_ms,
        sent_in_window: 0,
        saturated_windows: 0,
        held: Vec::new(),
        unlisted: 0,
        version: 0,
        expires_at: 0,
    });

    if now_ms >= state.window_started_ms + state.window_ms {
        if state.held.is_empty() && state.unlisted == 0 {
            state.saturated_windows = 0;
        } else {
            state.saturated_windows = state.saturated_windows.saturating_add(1);
        }
        let factor = 1_i64 << state.saturated_windows.min(20);
        state.window_ms = base_ms.saturating_mul(factor).min(max_ms);
        state.window_started_ms = now_ms;
        state.sent_in_window = 0;
    }

    for alert in incoming {
        if state.held.iter().any(|held| held.failure_id == alert.failure_id) {
            continue;
        }
        if state.held.len() < config.max_held {
            state.held.push(alert);
        } else {
            state.unlisted += 1;
        }
    }
    state.version += 1;
    state.expires_at = now_ms / 1000 + DIGEST_TTL_SECONDS;

    if state.held.is_empty() && state.unlisted == 0 {
        return (state, Plan::Nothing);
    }
    if state.sent_in_window >= config.max_per_window {
        return (state, Plan::Hold);
    }
    state.sent_in_window += 1;
    let alerts = std::mem::take(&mut state.held);
    let unlisted = std::mem::take(&mut state.unlisted);
    (state, Plan::Send { alerts, unlisted })
}

/// Puts failures back after a message naming them was not sent. `failed`
/// counts the attempt against each failure (the channel refused or broke);
/// otherwise the message only waited for a rate budget. Returns the failures
/// dropped because they reached `max_send_failures`.
pub fn put_back(
    mut state: DigestState,
    config: &DigestConfig,
    alerts: &[HeldAlert],
    unlisted: u64,
    failed: bool,
) -> (DigestState, Vec<HeldAlert>) {
    let mut dropped = Vec::new();
    for alert in alerts {
        let mut alert = alert.clone();
        if failed {
            alert.send_failures += 1;
        }
        if alert.send_failures >= config.max_send_failures {
            dropped.push(alert);
        } else if state.held.iter().any(|held| held.failure_id == alert.failure_id) {
            continue;
        } else if state.held.len() < config.max_held {
            state.held.push(alert);
        } else {
            state.unlisted += 1;
        }
    }
    state.unlisted += unlisted;
    state.version += 1;
    (state, dropped)
}

/// The digest item of one scope in the document table.
pub struct Digests<'a> {
    pub store: &'a dyn VersionedStore,
}

impl Digests<'_> {
    /// Adds failures to the scope and returns what this invocation must send.
    pub async fn admit(
        &self,
        config: &DigestConfig,
        incoming: &[HeldAlert],
        now_ms: impl Fn() -> i64,
    ) -> Result<Plan, InfraError> {
        for _ in 0..MAX_WRITE_RACES {
            let current: Option<DigestState> = load_typed(self.store, &config.pk(), DIGEST_SK).await?;
            let expected = current.as_ref().map(|state| state.version);
            let (next, decision) = plan(current, config, now_ms(), incoming.to_vec());
            if store_typed(self.store, &next, expected).await? {
                return Ok(decision);
            }
            pause().await;
        }
        Err(InfraError::new(
            "DynamoDB",
            "PutItem",
            format!("alert digest {} kept changing during an update", config.pk()),
        ))
    }

    /// See [`put_back`]; returns the failures dropped for good.
    pub async fn put_back(
        &self,
        config: &DigestConfig,
        alerts: &[HeldAlert],
        unlisted: u64,
        failed: bool,
    ) -> Result<Vec<HeldAlert>, InfraError> {
        for _ in 0..MAX_WRITE_RACES {
            let current: Option<DigestState> = load_typed(self.store, &config.pk(), DIGEST_SK).await?;
            let expected = current.as_ref().map(|state| state.version);
            // The item exists: `admit` wrote it before the send.
            let Some(current) = current else {
                return Ok(Vec::new());
            };
            let (next, dropped) = put_back(current, config, alerts, unlisted, failed);
            if store_typed(self.store, &next, expected).await? {
                return Ok(dropped);
            }
            pause().await;
        }
        Err(InfraError::new(
            "DynamoDB",
            "PutItem",
            format!("alert digest {} kept changing during an update", config.pk()),
        ))
    }
}

async fn pause() {
    let millis = 5 + u64::from(chrono::Utc::now().timestamp_subsec_micros() % 40);
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_shared::alerts::kind;

    fn config() -> DigestConfig {
        DigestConfig {
            scope: "failures".into(),
            window: Duration::from_secs(60),
            max_window: Duration::from_secs(900),
            max_per_window: 2,
            max_held: 100,
            max_send_failures: 3,
        }
    }

    fn held(index: usize) -> HeldAlert {
        HeldAlert {
            failure_id: format!("dlq-{index}"),
            line: format!("line {index}"),
            alert: OperationalAlert::new(kind::DISPATCH_FAILED, "error", format!("dlq-{index}")),
            send_failures: 0,
        }
    }

    const START: i64 = 1_796_371_200_000;

    #[test]
    fn storm_in_one_minute_sends_three_messages() {
        let config = config();
        let mut state = None;
        let mut messages = Vec::new();

        // 50 failures in batches of 5, one every second.
        for batch in 0..10 {
            let incoming = (0..5).map(|index| held(batch * 5 + index)).collect();
            let (next, decision) = plan(state, &config, START + batch as i64 * 1000, incoming);
            state = Some(next);
            if let Plan::Send { alerts, unlisted } = decision {
                messages.push(alerts.len() as u64 + unlisted);
            }
        }
        assert_eq!(messages.len(), 2, "two messages in the window: {messages:?}");

        let (next, decision) = plan(state, &config, START + 61_000, Vec::new());
        let Plan::Send { alerts, unlisted } = decision else {
            panic!("the flush after the window sends the rest: {decision:?}");
        };
        messages.push(alerts.len() as u64 + unlisted);

        assert_eq!(
            messages.iter().sum::<u64>(),
            50,
            "every failure is named once: {messages:?}"
        );
        assert_eq!(next.window_ms, 120_000, "the next window is twice as long");
    }

    #[test]
    fn calm_window_resets_the_length() {
        let config = config();
        let (state, _) = plan(None, &config, START, vec![held(1)]);
        let (state, _) = plan(Some(state), &config, START + 1, vec![held(2)]);
        let (state, decision) = plan(Some(state), &config, START + 2, vec![held(3)]);
        assert_eq!(decision, Plan::Hold);
        let (state, _) = plan(Some(state), &config, START + 60_000, Vec::new());
        assert_eq!(state.window_ms, 120_000);

        let (state, decision) = plan(Some(state), &config, START + 200_000, Vec::new());

        assert_eq!(decision, Plan::Nothing);
        assert_eq!(state.window_ms, 60_000);
        assert_eq!(state.saturated_windows, 0);
    }

    #[test]
    fn window_never_exceeds_the_maximum() {
        let config = config();
        let mut state = None;
        let mut now = START;
        for index in 0..12 {
            // Three failures per window keep every window saturated.
            for offset in 0..3 {
                let (next, _) = plan(state, &config, now + offset, vec![held(index * 3 + offset as usize)]);
                state = Some(next);
            }
            now += state.as_ref().unwrap().window_ms;
        }

        assert_eq!(state.unwrap().window_ms, 900_000);
    }

    #[test]
    fn held_failures_beyond_the_list_are_counted() {
        let mut config = config();
        config.max_held = 3;
        config.max_per_window = 0;

        let (state, decision) = plan(None, &config, START, (0..5).map(held).collect());

        assert_eq!(decision, Plan::Hold);
        assert_eq!(state.held.len(), 3);
        assert_eq!(state.unlisted, 2);
    }

    #[test]
    fn duplicates_are_held_once() {
        let mut config = config();
        config.max_per_window = 0;

        let (state, _) = plan(None, &config, START, vec![held(1)]);
        let (state, _) = plan(Some(state), &config, START + 1, vec![held(1)]);

        assert_eq!(state.held.len(), 1);
    }

    #[test]
    fn failed_sends_are_retried_then_dropped() {
        let config = config();
        let (state, decision) = plan(None, &config, START, vec![held(1)]);
        let Plan::Send { alerts, unlisted } = decision else {
            panic!("first failure is sent at once");
        };

        let (state, dropped) = put_back(state, &config, &alerts, unlisted, true);
        assert!(dropped.is_empty());
        assert_eq!(state.held[0].send_failures, 1);

        let (state, dropped) = put_back(state.clone(), &config, &[state.held[0].clone()], 0, false);
        assert!(dropped.is_empty(), "waiting for a rate budget is not a failure");

        let mut alert = state.held[0].clone();
        alert.send_failures = 2;
        let (_, dropped) = put_back(
            DigestState {
                held: Vec::new(),
                ..state
            },
            &config,
            &[alert],
            0,
            true,
        );
        assert_eq!(dropped.len(), 1);
    }
}
