//! Delivery of routed messages to their destinations.
//!
//! [`engine::Engine`] consumes one destination queue. It claims each
//! message's idempotency key in a dispatch record ([`record`]) and waits for
//! the account's shared rate budget ([`budget`]). Then it calls the
//! destination adapter and turns the outcome into an SQS action; the engine's
//! documentation describes the failure classes.

pub mod backoff;
pub mod budget;
pub mod destination;
pub mod engine;
pub mod error;
pub mod fakes;
pub mod inbound;
pub mod ports;
pub mod record;
pub mod store;

pub use destination::{Delivered, Delivery, DeliveryItem, Destination};
pub use engine::{BatchReport, Disposition, Engine, EngineConfig};
pub use error::DispatchError;

pub mod alert_channels;
pub mod alert_text;
pub mod aws;
pub mod body;
#[cfg(test)]
mod engine_tests;
pub mod generic_http;
pub mod http;
pub mod hubspot;
pub mod lock;
pub mod oauth;
pub mod quickbooks;
pub mod settings;
pub mod wecom;
pub mod xero;
