//! The local stack as a library: start it, read its endpoints, stop it.
//! `bridgectl dev up` and the end-to-end tests both use [`LocalStack`].

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bridge_devstack::{Devstack, DevstackConfig, start_devstack};

use super::emulator::{Emulator, EmulatorDirs, REGION, emulator_environment};
use super::endpoints::{Endpoints, RunRecord, local_execute_api_url};
use super::init_check::{FunctionSettings, check_inits, function_settings};
use super::safety::{CheckedValue, check_loopback, names_a_host};
use super::sam::SamCli;
use super::schedule::{ScheduleTicker, StackSchedule, stack_schedules};
use super::seed::{LocalCredentials, SeedReport, seed_secrets};
use super::stack::{DeployedStack, LocalClients};
use super::template::TemplateSummary;
use super::wiring::{
    DestinationKinds, LocalServer, ResolvedParameter, ValueSource, Wiring, resolve_parameters, values_to_check,
};
use super::workarounds::restore_maximum_concurrency;
use crate::progress::Progress;

/// The stack name `bridgectl dev up` deploys by default.
pub const DEFAULT_STACK_NAME: &str = "recordengine-bridge-dev";

/// The files of one local stack under its state directory.
#[derive(Debug, Clone)]
pub struct StateLayout {
    pub dir: PathBuf,
}

impl StateLayout {
    pub fn new(dir: impl Into<PathBuf>) -> StateLayout {
        StateLayout { dir: dir.into() }
    }

    pub fn endpoints_file(&self) -> PathBuf {
        self.dir.join("endpoints.json")
    }

    pub fn run_file(&self) -> PathBuf {
        self.dir.join("run.json")
    }

    /// MiniStack's `tmp/`, `state/` and log.
    pub fn emulator_dir(&self) -> PathBuf {
        self.dir.join("ministack")
    }

    /// `sam build` output: the built template and one directory per function.
    pub fn sam_build_dir(&self) -> PathBuf {
        self.dir.join("sam").join("build")
    }

    pub fn sam_config_dir(&self) -> PathBuf {
        self.dir.join("sam").join("config")
    }

    /// `sam-build.log` and `sam-deploy.log`.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

/// Settings of [`LocalStack::start`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The workspace root: `CodeUri: .` in the template resolves against it.
    pub repo_root: PathBuf,
    /// The SAM template to build and deploy.
    pub template: PathBuf,
    /// Destination kinds, which select the sink for each destination: the
    /// settings file the dispatchers have built in.
    // NOTE: with DestinationsSource set, the dispatchers read other settings
    // at run time; the kinds here still come from this file.
    pub destinations: PathBuf,
    /// The directory for state, logs and `endpoints.json`.
    pub state_dir: PathBuf,
    /// Holds `ministack/` and `sam/` virtual environments (`make venv`).
    pub venv_dir: PathBuf,
    pub stack_name: String,
    /// Template parameter values that replace the local ones; each is checked like any other.
    pub parameter_overrides: BTreeMap<String, String>,
    /// Port of the emulator on 127.0.0.1; 0 picks a free one.
    pub emulator_port: u16,
    /// Whether bridgectl fires the cron schedules that the emulator would
    /// fire at the wrong time (see [`ScheduleTicker`]).
    pub fire_schedules: bool,
    pub progress: Progress,
}

impl StackOptions {
    /// Defaults for the repository at `repo_root`: its `template.yaml`, state
    /// in `target/devstack`, the virtual environments of `make venv`
    /// (or `$BRIDGE_VENV`).
    pub fn new(repo_root: impl Into<PathBuf>) -> StackOptions {
        let repo_root = repo_root.into();
        let venv_dir = std::env::var_os("BRIDGE_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root.join(".venv"));
        StackOptions {
            template: repo_root.join("template.yaml"),
            destinations: repo_root.join("infra").join("destinations.yaml"),
            state_dir: repo_root.join("target").join("devstack"),
            venv_dir,
            stack_name: DEFAULT_STACK_NAME.to_owned(),
            parameter_overrides: BTreeMap::new(),
            emulator_port: 0,
            fire_schedules: true,
            progress: Progress::lines(),
            repo_root,
        }
    }

    /// Finds the repository root: the nearest directory at or above `start`
    /// that contains both `template.yaml` and `Cargo.toml`.
    pub fn find_repo_root(start: &Path) -> Result<PathBuf> {
        start
            .ancestors()
            .find(|dir| dir.join("template.yaml").is_file() && dir.join("Cargo.toml").is_file())
            .map(Path::to_path_buf)
            .with_context(|| {
                format!(
                    "no recordengine-bridge repository at or above {}: run bridgectl dev inside the \
                     repository (the directory with template.yaml and Cargo.toml)",
                    start.display()
                )
            })
    }

    pub fn layout(&self) -> StateLayout {
        StateLayout::new(&self.state_dir)
    }
}

/// A running local stack: MiniStack with the deployed template, the
/// RecordEngine simulator and the destination sinks, all on 127.0.0.1.
///
/// Dropping it stops everything too, but [`LocalStack::stop`] reports
/// whether anything was left behind.
pub struct LocalStack {
    layout: StateLayout,
    endpoints: Option<Endpoints>,
    emulator: Option<Emulator>,
    servers: Option<Devstack>,
    ticker: Option<ScheduleTicker>,
    clients: Option<LocalClients>,
    stack: Option<DeployedStack>,
    schedules: Vec<StackSchedule>,
    functions: Vec<FunctionSettings>,
    parameters: Vec<ResolvedParameter>,
    seeded: SeedReport,
    credentials: LocalCredentials,
}

impl LocalStack {
    /// Checks every URL, builds and deploys the template to a new emulator,
    /// seeds the secrets, checks that every function starts and writes
    /// `endpoints.json`.
    ///
    /// Nothing starts when a parameter, a function's environment or the AWS
    /// endpoint would send requests anywhere but 127.0.0.1. A function that
    /// fails during init fails the start, with the function's own error.
    pub async fn start(options: StackOptions) -> Result<LocalStack> {
        let progress = options.progress.clone();
        let result = Self::start_steps(options).await;
        match &result {
            Ok(_) => progress.finish(),
            Err(_) => progress.fail(),
        }
        result
    }

    async fn start_steps(mut options: StackOptions) -> Result<LocalStack> {
        // Child processes run in other directories, where relative paths would not resolve.
        for path in [
            &mut options.repo_root,
            &mut options.template,
            &mut options.destinations,
            &mut options.state_dir,
            &mut options.venv_dir,
        ] {
            *path = std::path::absolute(&*path).with_context(|| format!("invalid path {}", path.display()))?;
        }
        let progress = &options.progress;
        let layout = options.layout();

        progress.step("reading the template and checking every URL");
        let template = TemplateSummary::read(&options.template)?;
        let wiring = Wiring::from_template(&template, &DestinationKinds::read(&options.destinations)?)?;
        // The check runs before anything starts. The local servers' ports
        // are not known yet, so port 0 takes their place, because a port never
        // decides whether a URL leaves 127.0.0.1. The real values are
        // checked again once the servers listen.
        let placeholder_urls: BTreeMap<LocalServer, String> = LocalServer::ALL
            .iter()
            .map(|server| (*server, "http://127.0.0.1:0".to_owned()))
            .collect();
        let placeholder_endpoint = format!("http://127.0.0.1:{}", options.emulator_port);
        let parameters = resolve_parameters(&template, &wiring, &placeholder_urls, &options.parameter_overrides)?;
        check_loopback(&values_before_deploy(
            &template,
            &parameters,
            &placeholder_endpoint,
            &placeholder_urls,
        ))?;

        let ministack = options.venv_dir.join("ministack").join("bin").join("ministack");
        if !ministack.exists() {
            bail!(
                "MiniStack is not installed at {}: run `make venv` (it installs infra/requirements-ministack.txt)",
                ministack.display()
            );
        }
        let sam = SamCli {
            bin_dir: options.venv_dir.join("sam").join("bin"),
            base_dir: options.repo_root.clone(),
            config_dir: layout.sam_config_dir(),
            log_dir: layout.log_dir(),
        };
        sam.check_installed()?;
        std::fs::create_dir_all(&layout.dir).with_context(|| format!("cannot create {}", layout.dir.display()))?;

        progress.step(format!(
            "sam build (cargo lambda build --release; a first build takes minutes, see {})",
            layout.log_dir().join("sam-build.log").display()
        ));
        sam.build(&options.template, &layout.sam_build_dir()).await?;

        let credentials = LocalCredentials::generate();
        let mut stack = LocalStack {
            layout: layout.clone(),
            endpoints: None,
            emulator: None,
            servers: None,
            ticker: None,
            clients: None,
            stack: None,
            schedules: Vec::new(),
            functions: Vec::new(),
            parameters: Vec::new(),
            seeded: SeedReport::default(),
            credentials: credentials.clone(),
        };

        progress.step("starting the RecordEngine simulator and the destination sinks");
        let servers = start_servers(&credentials)
            .await
            .context("cannot start the local servers")?;
        let base_urls = server_urls(&servers);
        stack.servers = Some(servers);

        progress.step("starting MiniStack");
        let emulator_dirs = EmulatorDirs::under(&layout.emulator_dir());
        let emulator = start_emulator(&ministack, options.emulator_port, &emulator_dirs).await?;
        let emulator_port = emulator.port();
        let aws_endpoint = emulator.url();
        RunRecord {
            owner_pid: std::process::id() as i32,
            emulator_pid: emulator.pid(),
            emulator_port,
            emulator_dir: layout.emulator_dir(),
            stack_name: options.stack_name.clone(),
            started_at: chrono::Utc::now().to_rfc3339(),
        }
        .write(&layout.run_file())?;
        stack.emulator = Some(emulator);

        let parameters = resolve_parameters(&template, &wiring, &base_urls, &options.parameter_overrides)?;
        check_loopback(&values_before_deploy(&template, &parameters, &aws_endpoint, &base_urls))?;
        stack.parameters = parameters.clone();

        progress.step(format!("sam deploy of stack {}", options.stack_name));
        let overrides: BTreeMap<String, String> = parameters
            .iter()
            .filter(|parameter| parameter.source != ValueSource::TemplateDefault)
            .map(|parameter| (parameter.name.clone(), parameter.value.clone()))
            .collect();
        sam.deploy(
            &layout.sam_build_dir().join("template.yaml"),
            &options.stack_name,
            &overrides,
            &aws_endpoint,
        )
        .await?;

        progress.step("reading the deployed stack");
        let clients = LocalClients::new(&aws_endpoint)?;
        let deployed = DeployedStack::read(&clients, &options.stack_name).await?;
        let functions = function_settings(&clients, &deployed).await?;
        // The deployed environments are checked again: the emulator builds
        // queue and API URLs itself, and a template value can hide in an
        // intrinsic function that the first check cannot resolve.
        check_loopback(&deployed_environment_values(&functions))?;
        let restored = restore_maximum_concurrency(&clients, &deployed).await?;
        if !restored.is_empty() {
            progress.note(format!(
                "set ScalingConfig.MaximumConcurrency again as a number on {} event source mappings \
                 (MiniStack keeps it as text, which stops its SQS poller)",
                restored.len()
            ));
        }

        progress.step("seeding secrets");
        stack.seeded = seed_secrets(&clients, &deployed, &wiring, &credentials, &base_urls).await?;

        progress.step("checking that every function gets through init");
        let failures = check_inits(
            &functions,
            &layout.sam_build_dir(),
            &emulator_environment(emulator_port, &emulator_dirs),
            &aws_endpoint,
        )
        .await?;
        if !failures.is_empty() {
            bail!(
                "{} of the stack's functions failed during init:\n{}",
                failures.len(),
                failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
            );
        }

        progress.step("connecting the RecordEngine simulator to the webhook");
        let webhook_url = webhook_url(&deployed, &aws_endpoint)?;
        let path_secret = parameters
            .iter()
            .any(|parameter| parameter.name == "WebhookAuthMode" && parameter.value == "path-secret");
        let (delivery_url, delivery_token) = if path_secret {
            (format!("{webhook_url}/{}", credentials.webhook_token), String::new())
        } else {
            (webhook_url.clone(), credentials.webhook_token.clone())
        };
        let recordengine_url = base_urls[&LocalServer::RecordEngine].clone();
        configure_simulator(&recordengine_url, &delivery_url, &delivery_token).await?;

        progress.step("reading schedules");
        let schedules = stack_schedules(&clients, &deployed).await?;
        if options.fire_schedules {
            let ticker = ScheduleTicker::take_over(clients.clone(), &schedules).await?;
            for schedule in &ticker.schedules {
                progress.note(format!(
                    "bridgectl fires {} ({} in {}): the emulator would use UTC",
                    schedule.logical_id, schedule.expression, schedule.timezone
                ));
            }
            stack.ticker = Some(ticker);
        }

        let endpoints = Endpoints {
            stack_name: options.stack_name.clone(),
            region: REGION.to_owned(),
            aws_endpoint_url: aws_endpoint,
            webhook_url: if path_secret { delivery_url } else { webhook_url },
            webhook_token: credentials.webhook_token.clone(),
            recordengine_url,
            recordengine_api_token: credentials.recordengine_api_token.clone(),
            sinks: base_urls
                .iter()
                .filter(|(server, _)| **server != LocalServer::RecordEngine)
                .map(|(server, url)| (server.name().to_owned(), url.clone()))
                .collect(),
            outputs: deployed.outputs.clone(),
            functions: deployed
                .functions()
                .iter()
                .map(|function| (function.logical_id.clone(), function.physical_id.clone()))
                .collect(),
        };
        endpoints.write(&layout.endpoints_file())?;

        stack.endpoints = Some(endpoints);
        stack.clients = Some(clients);
        stack.stack = Some(deployed);
        stack.schedules = schedules;
        stack.functions = functions;
        Ok(stack)
    }

    pub fn endpoints(&self) -> &Endpoints {
        self.endpoints
            .as_ref()
            .expect("a LocalStack is returned only once its endpoints are known")
    }

    /// Returns the deployed stack: outputs, resources and the processed template.
    pub fn stack(&self) -> &DeployedStack {
        self.stack
            .as_ref()
            .expect("a LocalStack is returned only after the stack is read")
    }

    /// SDK clients aimed at the emulator, each refusing any host but 127.0.0.1.
    pub fn clients(&self) -> &LocalClients {
        self.clients
            .as_ref()
            .expect("a LocalStack is returned only after its clients exist")
    }

    /// AWS configuration aimed at the emulator, with dummy credentials. Add
    /// [`bridge_shared::aws::LoopbackGuard`] to clients built from it, or use
    /// [`bridge_shared::aws::Clients::new_guarded`].
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        super::stack::local_sdk_config(&self.endpoints().aws_endpoint_url)
    }

    pub fn schedules(&self) -> &[StackSchedule] {
        &self.schedules
    }

    pub fn parameters(&self) -> &[ResolvedParameter] {
        &self.parameters
    }

    /// The deployed configuration of each function.
    pub fn functions(&self) -> &[FunctionSettings] {
        &self.functions
    }

    pub fn seeded_secrets(&self) -> &SeedReport {
        &self.seeded
    }

    pub fn credentials(&self) -> &LocalCredentials {
        &self.credentials
    }

    /// Returns the emulator's process id, which is also its process group id.
    pub fn emulator_pid(&self) -> Option<i32> {
        self.emulator.as_ref().map(Emulator::pid)
    }

    pub fn layout(&self) -> &StateLayout {
        &self.layout
    }

    /// Stops the schedule ticker, MiniStack with every function process it
    /// started, and the local servers; deletes MiniStack's temporary files,
    /// `endpoints.json` and `run.json`. Fails if a process of the emulator's
    /// group is still running afterwards.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(ticker) = self.ticker.take() {
            ticker.stop().await;
        }
        let emulator_result = match self.emulator.take() {
            Some(mut emulator) => tokio::task::spawn_blocking(move || emulator.stop())
                .await
                .context("the emulator's stop task panicked")?,
            None => Ok(()),
        };
        let servers_result = match self.servers.take() {
            Some(servers) => servers.shutdown().await.context("cannot stop the local servers"),
            None => Ok(()),
        };
        self.remove_state_files();
        emulator_result?;
        servers_result
    }

    fn remove_state_files(&self) {
        for file in [self.layout.endpoints_file(), self.layout.run_file()] {
            if let Err(error) = std::fs::remove_file(&file)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %file.display(), %error, "cannot delete a state file");
            }
        }
    }
}

impl Drop for LocalStack {
    /// Stops whatever is still running, for a start that failed half-way or
    /// a stack that was not stopped with [`LocalStack::stop`].
    fn drop(&mut self) {
        if self.emulator.is_none() && self.servers.is_none() && self.ticker.is_none() {
            return;
        }
        drop(self.ticker.take());
        if let Some(mut emulator) = self.emulator.take()
            && let Err(error) = emulator.stop()
        {
            tracing::warn!(%error, "stopping the emulator left something behind");
        }
        // Dropping the servers' handles stops them.
        drop(self.servers.take());
        self.remove_state_files();
    }
}

/// Every value to check before anything starts: URL parameters, URLs in
/// function environments, the AWS endpoint and the local servers.
fn values_before_deploy(
    template: &TemplateSummary,
    parameters: &[ResolvedParameter],
    aws_endpoint: &str,
    base_urls: &BTreeMap<LocalServer, String>,
) -> Vec<CheckedValue> {
    let mut values = values_to_check(parameters);
    values.extend(
        template
            .environment_urls
            .iter()
            .filter(|url| names_a_host(&url.value))
            .map(|url| {
                CheckedValue::new(
                    format!("{} environment variable {}", url.function, url.variable),
                    &url.value,
                )
            }),
    );
    values.push(CheckedValue::new("the AWS endpoint (AWS_ENDPOINT_URL)", aws_endpoint));
    values.extend(
        base_urls
            .iter()
            .map(|(server, url)| CheckedValue::new(format!("the local {} server", server.name()), url)),
    );
    values
}

/// Collects every URL in the deployed functions' environments.
fn deployed_environment_values(functions: &[FunctionSettings]) -> Vec<CheckedValue> {
    functions
        .iter()
        .flat_map(|function| {
            function
                .environment
                .iter()
                .filter(|(_, value)| names_a_host(value))
                .map(|(variable, value)| {
                    CheckedValue::new(
                        format!("deployed {} environment variable {variable}", function.logical_id),
                        value,
                    )
                })
        })
        .collect()
}

/// Returns the webhook's URL on the emulator, from the stack output that
/// contains an execute-api URL (`WebhookUrl`, or else the first such output).
fn webhook_url(stack: &DeployedStack, endpoint: &str) -> Result<String> {
    let preferred = stack.outputs.get("WebhookUrl").into_iter();
    let others = stack.outputs.values();
    preferred
        .chain(others)
        .find_map(|value| local_execute_api_url(value, endpoint))
        .with_context(|| {
            format!(
                "stack {} has no output with an execute-api URL (such as WebhookUrl), so the webhook \
                 cannot be located; outputs: {:?}",
                stack.name, stack.outputs
            )
        })
}

/// Starts the simulator and the sinks, each on a port the system assigns.
async fn start_servers(credentials: &LocalCredentials) -> Result<Devstack> {
    let mut config = DevstackConfig::default();
    config.recordengine.api_token = Some(credentials.recordengine_api_token.clone());
    config.wecom.keys = Some(vec![credentials.wecom_key.clone()]);
    Ok(start_devstack(config).await?)
}

fn server_urls(servers: &Devstack) -> BTreeMap<LocalServer, String> {
    BTreeMap::from([
        (LocalServer::RecordEngine, servers.recordengine.base_url().to_owned()),
        (LocalServer::QuickBooks, servers.quickbooks.base_url().to_owned()),
        (LocalServer::Xero, servers.xero.base_url().to_owned()),
        (LocalServer::HubSpot, servers.hubspot.base_url().to_owned()),
        (LocalServer::Generic, servers.generic.base_url().to_owned()),
        (LocalServer::WeCom, servers.wecom.base_url().to_owned()),
    ])
}

/// How many ports to try when MiniStack's port is chosen here and another
/// process takes it before MiniStack binds it.
const EMULATOR_START_ATTEMPTS: usize = 3;

/// Starts MiniStack and waits until it responds. With `port` 0 a free port
/// is chosen, and a start that fails is tried again on another port.
async fn start_emulator(binary: &Path, port: u16, dirs: &EmulatorDirs) -> Result<Emulator> {
    let attempts = if port == 0 { EMULATOR_START_ATTEMPTS } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        dirs.remove_temporary()
            .context("cannot clear the emulator's directories of an earlier run")?;
        let chosen = if port == 0 { free_port()? } else { port };
        let mut emulator = Emulator::spawn(binary, chosen, dirs.clone())?;
        match emulator.wait_until_ready().await {
            Ok(()) => return Ok(emulator),
            Err(error) => {
                tracing::warn!(port = chosen, %error, "MiniStack did not start");
                if let Err(stop_error) = emulator.stop() {
                    tracing::warn!(%stop_error, "stopping the failed emulator left something behind");
                }
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("MiniStack did not start")))
}

/// Points the simulator's export webhook at the deployed webhook.
async fn configure_simulator(recordengine_url: &str, webhook_url: &str, token: &str) -> Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build an HTTP client")?;
    let url = format!("{recordengine_url}/_config");
    let response = client
        .put(&url)
        .json(&serde_json::json!({ "webhook_url": webhook_url, "webhook_token": token }))
        .send()
        .await
        .with_context(|| format!("PUT {url} failed"))?;
    if !response.status().is_success() {
        bail!(
            "PUT {url} returned {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Returns a TCP port on 127.0.0.1 that is free at the time of the call.
// NOTE: another process can take the port before MiniStack binds it;
// `start_emulator` then tries another port.
pub fn free_port() -> Result<u16> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .context("cannot find a free port on 127.0.0.1")
}
