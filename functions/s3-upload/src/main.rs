//! Lambda entry point of the S3 upload function: wiring only.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use bridge_shared::aws::{self, Clients};
use bridge_shared::inbound::aws::S3ObjectStore;
use bridge_shared::telemetry;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use s3_upload::config::Config;
use s3_upload::handler::{App, SqsVisibility, deadline_instant};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_tracing();

    // Configuration, the contact mapping and the CA bundle fail here, at init, naming what is wrong.
    let config = Config::from_env()?;
    let clients = Clients::new(&aws::load_config().await);
    let uploader = config.inbound.build_uploader(&clients, "s3-upload").await?;
    let app = Arc::new(App {
        uploader,
        objects: S3ObjectStore::new(clients.s3.clone()),
        visibility: SqsVisibility::new(clients.sqs.clone(), &config.inbox_queue_url),
        config: config.handler.clone(),
    });

    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = Arc::clone(&app);
        async move {
            let deadline = deadline_instant(event.context.deadline);
            Ok::<_, Error>(app.handle(event.payload, deadline).await)
        }
    }))
    .await
}
