//! Starts the RecordEngine simulator and the destination sinks on 127.0.0.1,
//! prints their base URLs as one JSON line on stdout and runs until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bridge_devstack::{DevstackConfig, Scenarios, start_devstack};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Port of the RecordEngine simulator (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    recordengine_port: u16,
    /// Port of the QuickBooks Online sink (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    quickbooks_port: u16,
    /// Port of the Xero sink (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    xero_port: u16,
    /// Port of the HubSpot sink (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    hubspot_port: u16,
    /// Port of the generic JSON sink (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    generic_port: u16,
    /// Port of the WeCom robot sink (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    wecom_port: u16,

    /// API token the simulator requires on uploads; without it any bearer token is accepted.
    #[arg(long, env = "DEVSTACK_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Id of the first uploaded document.
    #[arg(long, default_value_t = 1001)]
    first_document_id: i64,
    /// URL the simulator posts export webhooks to (can also be set later with PUT /_config).
    #[arg(long)]
    webhook_url: Option<String>,
    /// Bearer token sent on export webhooks; empty sends no Authorization header.
    #[arg(long, env = "DEVSTACK_WEBHOOK_TOKEN", hide_env_values = true, default_value = "")]
    webhook_token: String,
    /// Milliseconds from upload to automatic export; 0 exports only on POST /_export/{id}.
    #[arg(long, default_value_t = 2000)]
    export_delay_ms: u64,
    /// Scenario file (JSON) mapping file names to extraction values; defaults to the bundled invoices.
    #[arg(long)]
    scenarios: Option<PathBuf>,
    /// Largest upload request the simulator accepts, in MiB.
    #[arg(long, default_value_t = 1024)]
    max_upload_mib: usize,

    /// WeCom robot key to accept; repeat for several. Without it any key is accepted.
    #[arg(long = "wecom-key")]
    wecom_keys: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let scenarios = match &args.scenarios {
        Some(path) => Scenarios::load(path)?,
        None => Scenarios::builtin(),
    };
    let mut config = DevstackConfig::default();
    config.recordengine.port = args.recordengine_port;
    config.recordengine.api_token = args.api_token;
    config.recordengine.first_document_id = args.first_document_id;
    config.recordengine.webhook_url = args.webhook_url;
    config.recordengine.webhook_token = args.webhook_token;
    config.recordengine.export_delay = Duration::from_millis(args.export_delay_ms);
    config.recordengine.scenarios = scenarios;
    config.recordengine.max_upload_bytes = args
        .max_upload_mib
        .checked_mul(1024 * 1024)
        .context("--max-upload-mib is too large")?;
    config.quickbooks.port = args.quickbooks_port;
    config.xero.port = args.xero_port;
    config.hubspot.port = args.hubspot_port;
    config.generic.port = args.generic_port;
    config.wecom.port = args.wecom_port;
    config.wecom.keys = (!args.wecom_keys.is_empty()).then_some(args.wecom_keys);

    let devstack = start_devstack(config).await.context("failed to start the servers")?;
    println!("{}", devstack.urls_json());

    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping");
    devstack.shutdown().await?;
    Ok(())
}
