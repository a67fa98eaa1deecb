//! Shared library of the recordengine-bridge Lambda functions.
//!
//! The payload model ([`payload`], [`json`], [`money`]), routing rules
//! ([`rules`]), the webhook intake ([`intake`]), ports to AWS ([`ports`]) with
//! SDK adapters ([`aws`]) and in-memory fakes ([`fakes`]).

pub mod alerts;
pub mod auth;
pub mod aws;
pub mod bill;
pub mod config;
pub mod dispatch;
pub mod failures;
pub mod fakes;
pub mod inbound;
pub mod intake;
pub mod json;
pub mod message;
pub mod money;
pub mod payload;
pub mod ports;
pub mod recordengine;
pub mod records;
pub mod rules;
pub mod sweep;
pub mod telemetry;
