//! The webhook function: `POST /webhooks/recordengine` and `GET /documents/{id}`.

pub mod config;
pub mod handler;
