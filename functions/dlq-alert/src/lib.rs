//! The dead-letter function: every message that lands in a dead-letter queue
//! becomes a failure record that `bridgectl dlq` lists, shows and redrives,
//! and a person hears of it through WeCom or email, in digests during a storm.

pub mod channels;
pub mod config;
pub mod dead_letter;
pub mod digest;
pub mod failure_store;
pub mod handler;
