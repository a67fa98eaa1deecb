//! bridgectl, the operators' CLI of recordengine-bridge, as a library: the
//! binary parses arguments and calls into it, and end-to-end tests start the
//! local stack through [`dev::LocalStack`].

pub mod age;
pub mod aws;
pub mod demo;
pub mod dev;
pub mod dlq;
pub mod doc;
pub mod output;
pub mod progress;
pub mod resources;
pub mod rules;
pub mod sweep;
pub mod upload;
