//! The interface every destination adapter implements, and what it receives.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::budget::{BudgetScope, Budgets};
use super::error::DispatchError;
use super::store::VersionedStore;
use crate::alerts::OperationalAlert;
use crate::message::RoutedMessage;
use crate::payload::ExportDocument;

/// The work one message requests of a destination.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryItem {
    /// A routed export with its parsed payload.
    Routed {
        message: Box<RoutedMessage>,
        document: Box<ExportDocument>,
    },
    /// A failure in the bundle, for the alerts destination.
    Operational(OperationalAlert),
}

/// One attempt at one message.
pub struct Delivery {
    /// Travels to the destination (QuickBooks `requestid`, `Idempotency-Key`).
    pub idempotency_key: String,
    pub destination: String,
    pub item: DeliveryItem,
    /// 1 for the first attempt; rate-limit waits do not count.
    pub attempt: u32,
    /// An earlier attempt may have reached the destination: look the object
    /// up before creating it again.
    pub previous_ambiguous: bool,
    parts_done: Mutex<BTreeSet<String>>,
    gate: Option<(Arc<dyn VersionedStore>, BudgetScope)>,
    requests: AtomicU32,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("idempotency_key", &self.idempotency_key)
            .field("destination", &self.destination)
            .field("attempt", &self.attempt)
            .field("previous_ambiguous", &self.previous_ambiguous)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub fn new(idempotency_key: impl Into<String>, destination: impl Into<String>, item: DeliveryItem) -> Self {
        Delivery {
            idempotency_key: idempotency_key.into(),
            destination: destination.into(),
            item,
            attempt: 1,
            previous_ambiguous: false,
            parts_done: Mutex::new(BTreeSet::new()),
            gate: None,
            requests: AtomicU32::new(0),
        }
    }

    /// Sets what earlier attempts left behind.
    pub fn with_history(mut self, attempt: u32, previous_ambiguous: bool, parts_done: &[String]) -> Self {
        self.attempt = attempt;
        self.previous_ambiguous = previous_ambiguous;
        self.parts_done = Mutex::new(parts_done.iter().cloned().collect());
        self
    }

    /// Lets [`Delivery::spend_request`] draw on a shared rate budget.
    pub fn with_budget(mut self, store: Arc<dyn VersionedStore>, scope: BudgetScope) -> Self {
        self.gate = Some((store, scope));
        self
    }

    pub fn message(&self) -> Option<&RoutedMessage> {
        match &self.item {
            DeliveryItem::Routed { message, .. } => Some(message),
            DeliveryItem::Operational(_) => None,
        }
    }

    pub fn document(&self) -> Option<&ExportDocument> {
        match &self.item {
            DeliveryItem::Routed { document, .. } => Some(document),
            DeliveryItem::Operational(_) => None,
        }
    }

    /// Returns the routed message and its document, or a permanent error for
    /// an operational alert sent to a destination that only books exports.
    pub fn routed(&self) -> Result<(&RoutedMessage, &ExportDocument), DispatchError> {
        match &self.item {
            DeliveryItem::Routed { message, document } => Ok((message, document)),
            DeliveryItem::Operational(alert) => Err(DispatchError::permanent(format!(
                "destination {} books exports, but the message is an operational alert of kind {}",
                self.destination, alert.kind
            ))),
        }
    }

    /// Returns whether an earlier attempt already delivered `part` (for example one alert channel).
    pub fn part_done(&self, part: &str) -> bool {
        self.parts_done
            .lock()
            .map(|parts| parts.contains(part))
            .unwrap_or(false)
    }

    pub fn mark_part_done(&self, part: &str) {
        if let Ok(mut parts) = self.parts_done.lock() {
            parts.insert(part.to_owned());
        }
    }

    pub fn parts_done(&self) -> Vec<String> {
        self.parts_done
            .lock()
            .map(|parts| parts.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes one request from the account's rate budget. Adapters call it
    /// before every API request. The first call of an attempt is free,
    /// because the engine took that request before the delivery started.
    /// Without a budget it does nothing.
    pub async fn spend_request(&self) -> Result<(), DispatchError> {
        let Some((store, scope)) = &self.gate else {
            return Ok(());
        };
        if self.requests.fetch_add(1, Ordering::SeqCst) == 0 {
            return Ok(());
        }
        match (Budgets { store: store.as_ref() }).acquire(scope, None).await? {
            Ok(()) => Ok(()),
            Err((wait, reason)) => Err(DispatchError::throttled(reason, wait)),
        }
    }
}

/// The destination's result of a successful delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The destination's id of the object (Bill id, InvoiceID, HubSpot record id, WeCom/SES message).
    pub remote_id: String,
    /// In words, for the timeline: `Bill 146 created`, `found Bill 146 by DocNumber`.
    pub detail: String,
}

/// One destination system.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Returns a short name for logs and budget keys: `quickbooks`, `xero`, `wecom`, …
    fn kind(&self) -> &'static str;

    /// Returns the rate budget of the account this destination writes to, if it has one.
    async fn budget(&self) -> Result<Option<BudgetScope>, DispatchError>;

    /// Delivers one message. Errors carry their class; see [`DispatchError`].
    async fn deliver(&self, delivery: &Delivery) -> Result<Delivered, DispatchError>;
}
