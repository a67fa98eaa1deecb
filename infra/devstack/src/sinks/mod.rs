//! Destination sinks: one HTTP server per destination kind, each responding like
//! the real API and recording what it received.
//!
//! Every sink has the same admin endpoints: `GET`/`DELETE /_requests`,
//! `GET`/`POST`/`DELETE /_faults` and `GET`/`DELETE /_stats` (see [`core`]).

pub mod core;
pub mod generic;
pub mod hubspot;
pub mod oauth;
pub mod quickbooks;
pub mod wecom;
pub mod xero;
