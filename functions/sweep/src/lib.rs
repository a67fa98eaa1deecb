//! The sweep function: the reconciliation sweep of [`bridge_shared::sweep`]
//! on a schedule, with repairs on, one summary log line, EMF metrics, and an
//! operational alert for each item that stays stuck past its grace period.

pub mod config;
pub mod handler;
