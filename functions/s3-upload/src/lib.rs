//! The S3 upload function: inbox-queue messages in, RecordEngine uploads out.

pub mod config;
pub mod handler;
