//! The scheduled upload function: one pass over the scheduled prefix per schedule tick.

pub mod config;
pub mod handler;
