//! `bridgectl dev`: the whole bundle on one machine, built with `sam build`
//! and deployed with `sam deploy` to a MiniStack emulator, with the
//! RecordEngine simulator and the destination sinks, all on 127.0.0.1.
//!
//! [`LocalStack`] is the library API; [`cli`] contains the subcommands.

pub mod cli;
pub mod cron;
pub mod down;
pub mod emulator;
pub mod endpoints;
pub mod init_check;
mod local_stack;
pub mod process;
pub mod safety;
pub mod sam;
pub mod schedule;
pub mod seed;
pub mod stack;
pub mod template;
pub mod wiring;
pub mod workarounds;

pub use endpoints::Endpoints;
pub use local_stack::{DEFAULT_STACK_NAME, LocalStack, StackOptions, StateLayout, free_port};
