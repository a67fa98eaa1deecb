//! Lambda entry point of the scheduled upload function: wiring only.

use std::sync::Arc;

use bridge_shared::aws::{self, Clients};
use bridge_shared::inbound::aws::{S3ObjectStore, SqsHandoff};
use bridge_shared::telemetry;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use scheduled_upload::config::Config;
use scheduled_upload::handler::{App, deadline_instant};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_tracing();

    // Configuration, the contact mapping and the CA bundle fail here, at init, naming what is wrong.
    let config = Config::from_env()?;
    let clients = Clients::new(&aws::load_config().await);
    let uploader = config.inbound.build_uploader(&clients, "scheduled-upload").await?;
    let app = Arc::new(App {
        uploader,
        objects: S3ObjectStore::new(clients.s3.clone()),
        handoff: SqsHandoff::new(clients.sqs.clone(), &config.inbox_queue_url),
        schedule: config.schedule.clone(),
    });

    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let app = Arc::clone(&app);
        async move {
            let deadline = deadline_instant(event.context.deadline);
            let summary = app.handle(deadline).await;
            Ok::<_, Error>(serde_json::json!({
                "uploaded": summary.uploaded,
                "skipped": summary.skipped,
                "failed": summary.failed,
                "handed_off": summary.handed_off,
                "left_for_next_run": summary.left_for_next_run,
            }))
        }
    }))
    .await
}
