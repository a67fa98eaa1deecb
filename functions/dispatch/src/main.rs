//! Lambda entry point of the dispatcher functions: wiring only.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bridge_shared::aws::{self, Clients};
use bridge_shared::telemetry;
use dispatch::config::{Config, load_destinations};
use dispatch::handler::{build_engine, handle};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_tracing();

    // Configuration and settings fail here, at init, naming what is wrong.
    let config = Config::from_env()?;
    let clients = Clients::new(&aws::load_config().await);
    let destinations = load_destinations(config.destinations_source.as_deref(), &clients).await?;
    let engine = Arc::new(build_engine(&config, &clients, &destinations)?);
    tracing::info!(
        destination = %config.destination,
        kind = engine.destination.kind(),
        settings_version = %destinations.version,
        "dispatcher ready"
    );

    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let engine = Arc::clone(&engine);
        async move {
            let response: SqsBatchResponse = handle(&engine, &event.payload, event.context.deadline).await;
            Ok::<_, Error>(response)
        }
    }))
    .await
}
