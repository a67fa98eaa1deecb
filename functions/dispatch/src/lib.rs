//! The dispatcher function: one binary for every destination queue. The
//! `DESTINATION` variable names the destination it serves.
//!
//! One binary keeps the four functions identical apart from their
//! configuration: the destination kind (QuickBooks, Xero, HubSpot, JSON
//! endpoint, alerts) comes from `infra/destinations.yaml`, so moving the
//! `accounting` destination from QuickBooks to Xero is a settings change,
//! not a new build.

pub mod config;
pub mod handler;
