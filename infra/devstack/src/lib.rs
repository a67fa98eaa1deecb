//! Local stand-ins for the systems around the bridge: a RecordEngine simulator
//! and one sink per destination API (QuickBooks Online, Xero, HubSpot, a
//! generic JSON endpoint and the WeCom group robot).
//!
//! Every server binds `127.0.0.1` only. Each `start_*` function starts one
//! server on the current tokio runtime and returns a [`ServerHandle`] with
//! its base URL; [`start_devstack`] starts them all. `docs/local-stack.md`
//! describes the endpoints, the admin endpoints and fault injection.

pub mod faults;
pub mod json;
pub mod recordengine;
pub mod scenario;
pub mod server;
pub mod sinks;
mod util;

use std::io;

pub use recordengine::{SimulatorConfig, start_recordengine};
pub use scenario::{Scenario, Scenarios};
pub use server::ServerHandle;
pub use sinks::generic::{GenericConfig, start_generic};
pub use sinks::hubspot::{HubSpotConfig, start_hubspot};
pub use sinks::quickbooks::{QuickBooksConfig, start_quickbooks};
pub use sinks::wecom::{WeComConfig, start_wecom};
pub use sinks::xero::{XeroConfig, start_xero};

/// Settings of every server of [`start_devstack`].
#[derive(Debug, Clone, Default)]
pub struct DevstackConfig {
    pub recordengine: SimulatorConfig,
    pub quickbooks: QuickBooksConfig,
    pub xero: XeroConfig,
    pub hubspot: HubSpotConfig,
    pub generic: GenericConfig,
    pub wecom: WeComConfig,
}

/// All servers, started together.
#[derive(Debug)]
pub struct Devstack {
    pub recordengine: ServerHandle,
    pub quickbooks: ServerHandle,
    pub xero: ServerHandle,
    pub hubspot: ServerHandle,
    pub generic: ServerHandle,
    pub wecom: ServerHandle,
}

/// Starts the simulator and every sink on the current tokio runtime.
pub async fn start_devstack(config: DevstackConfig) -> io::Result<Devstack> {
    Ok(Devstack {
        recordengine: start_recordengine(config.recordengine).await?,
        quickbooks: start_quickbooks(config.quickbooks).await?,
        xero: start_xero(config.xero).await?,
        hubspot: start_hubspot(config.hubspot).await?,
        generic: start_generic(config.generic).await?,
        wecom: start_wecom(config.wecom).await?,
    })
}

impl Devstack {
    fn handles(&self) -> [&ServerHandle; 6] {
        [
            &self.recordengine,
            &self.quickbooks,
            &self.xero,
            &self.hubspot,
            &self.generic,
            &self.wecom,
        ]
    }

    /// Returns the base URLs as one JSON object line, keyed by server name:
    /// `{"recordengine":"http://127.0.0.1:…","quickbooks":…,"xero":…,"hubspot":…,"generic":…,"wecom":…}`.
    pub fn urls_json(&self) -> String {
        json::Json::object(
            self.handles()
                .map(|handle| (handle.name(), json::Json::from(handle.base_url()))),
        )
        .to_compact_string()
    }

    /// Stops every server.
    pub async fn shutdown(self) -> io::Result<()> {
        let Devstack {
            recordengine,
            quickbooks,
            xero,
            hubspot,
            generic,
            wecom,
        } = self;
        for handle in [recordengine, quickbooks, xero, hubspot, generic, wecom] {
            handle.shutdown().await?;
        }
        Ok(())
    }
}
