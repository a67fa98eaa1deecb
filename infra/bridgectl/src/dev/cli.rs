//! The `bridgectl dev` subcommands: argument definitions and what each one does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

use super::down::{find_run_files, stop_run};
use super::endpoints::{Endpoints, RunRecord};
use super::local_stack::{DEFAULT_STACK_NAME, LocalStack, StackOptions, StateLayout};
use super::process::{command_line, is_running, processes_in_group};
use super::schedule::{StackSchedule, invoke, stack_schedules};
use super::stack::{DeployedStack, LocalClients};
use crate::output::{Format, print_json, table};
use crate::progress::Progress;

/// `bridgectl dev …`
#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Builds the functions with `sam build`, deploys template.yaml with `sam deploy` to a local AWS
    /// emulator (MiniStack) on 127.0.0.1, starts the RecordEngine simulator and the destination
    /// sinks, writes target/devstack/endpoints.json and runs until Ctrl-C.
    Up(UpArgs),
    /// Stops a local stack whose `dev up` crashed or was killed, from its run record.
    Down(DownArgs),
    /// Invokes a function of the running local stack with the payload its schedule sends.
    Fire(FireArgs),
    /// Prints the endpoints of the running local stack.
    Status(StateArgs),
    /// Runs the main job on the bundled invoices on a local stack of its own. It drops them into
    /// S3, fires the scheduled upload, fails one delivery into the dead-letter queue and redrives
    /// it. It prints one row per document and writes target/demo/report.json, and exits 0 only
    /// when every document reached its destinations exactly once.
    Demo(crate::demo::DemoArgs),
}

/// The state directory option shared by the `dev` subcommands.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// Directory of the local stack's state, logs and endpoints.json [default: target/devstack in the repository].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Name of the CloudFormation stack to deploy to the emulator.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_STACK_NAME)]
    pub stack_name: String,
    /// Sets a template parameter, as NAME=VALUE; repeat for several. URLs must point at 127.0.0.1,
    /// or nothing starts.
    #[arg(long = "parameter", value_name = "NAME=VALUE", value_parser = parse_parameter)]
    pub parameters: Vec<(String, String)>,
    /// TCP port of the emulator on 127.0.0.1 (0 picks a free port).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub port: u16,
    /// SAM template to build and deploy [default: template.yaml in the repository].
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Leaves cron schedules with a time zone to the emulator, which fires them as if the zone
    /// were UTC, instead of firing them from bridgectl at their local time.
    #[arg(long)]
    pub no_schedules: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// Also stops stacks recorded in directories below the state directory (those end-to-end tests start).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Clone, Args)]
pub struct FireArgs {
    /// The function: its logical id in the template (such as ScheduledUploadFunction) or its deployed name.
    #[arg(value_name = "FUNCTION")]
    pub function: String,
    /// Logical id of the schedule to fire, when the function has several.
    #[arg(long, value_name = "LOGICAL_ID")]
    pub schedule: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

fn parse_parameter(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// Runs one `dev` subcommand. Returns the process exit code.
pub async fn run(command: DevCommand, format: Format) -> Result<i32> {
    match command {
        DevCommand::Up(args) => up(args, format).await,
        DevCommand::Down(args) => down(args, format),
        DevCommand::Fire(args) => fire(args, format).await,
        DevCommand::Status(args) => status(args, format),
        DevCommand::Demo(args) => crate::demo::run(args, format).await,
    }
}

fn state_layout(state: &StateArgs, repo_root: &Path) -> StateLayout {
    let dir = state
        .state_dir
        .clone()
        .unwrap_or_else(|| repo_root.join("target").join("devstack"));
    // Absolute, so that paths in run.json and endpoints.json hold from any directory.
    StateLayout::new(std::path::absolute(&dir).unwrap_or(dir))
}

fn current_repo_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    StackOptions::find_repo_root(&cwd)
}

async fn up(args: UpArgs, format: Format) -> Result<i32> {
    let repo_root = current_repo_root()?;
    let layout = state_layout(&args.state, &repo_root);
    reject_if_running(&layout)?;

    let mut options = StackOptions::new(&repo_root);
    options.state_dir = layout.dir.clone();
    if let Some(template) = &args.template {
        options.template =
            std::path::absolute(template).with_context(|| format!("invalid template path {}", template.display()))?;
    }
    options.stack_name = args.stack_name.clone();
    options.parameter_overrides = args.parameters.iter().cloned().collect::<BTreeMap<_, _>>();
    options.emulator_port = args.port;
    options.fire_schedules = !args.no_schedules;
    options.progress = Progress::for_terminal();

    // Signals are caught from the start, so that Ctrl-C during the build or
    // the deploy also stops whatever has started by then.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;

    let stack = tokio::select! {
        started = LocalStack::start(options) => started?,
        _ = interrupt.recv() => {
            eprintln!("interrupted; stopped everything that had started");
            return Ok(130);
        }
        _ = terminate.recv() => {
            eprintln!("terminated; stopped everything that had started");
            return Ok(143);
        }
    };

    print_endpoints(stack.endpoints(), &layout, format);
    for schedule in stack.schedules() {
        tracing::info!(
            schedule = %schedule.logical_id,
            function = %schedule.function_name,
            expression = %schedule.expression,
            timezone = %schedule.timezone,
            "schedule deployed"
        );
    }
    if format == Format::Table {
        eprintln!("The local stack is running. Press Ctrl-C to stop it.");
    }

    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("stopping the local stack…");
    stack.stop().await?;
    eprintln!("stopped; MiniStack's temporary files are deleted");
    Ok(0)
}

/// Fails if the state directory's run record names a bridgectl or a
/// MiniStack that is still running.
fn reject_if_running(layout: &StateLayout) -> Result<()> {
    let run_file = layout.run_file();
    let Ok(record) = RunRecord::read(&run_file) else {
        return Ok(());
    };
    let owner_running = is_running(record.owner_pid) && command_line(record.owner_pid).contains("bridgectl");
    let emulator_running = processes_in_group(record.emulator_pid)
        .iter()
        .any(|process| process.state != 'Z' && process.command_line.contains("ministack"));
    if owner_running || emulator_running {
        bail!(
            "a local stack already uses {} (bridgectl process {}, emulator on port {}); stop it with \
             Ctrl-C where it runs or with `bridgectl dev down`, or pass another --state-dir",
            layout.dir.display(),
            record.owner_pid,
            record.emulator_port
        );
    }
    Ok(())
}

fn print_endpoints(endpoints: &Endpoints, layout: &StateLayout, format: Format) {
    match format {
        Format::Json => print_json(endpoints),
        Format::Table => {
            let mut rows = vec![
                vec!["stack".to_owned(), endpoints.stack_name.clone()],
                vec!["AWS endpoint".to_owned(), endpoints.aws_endpoint_url.clone()],
                vec!["webhook URL".to_owned(), endpoints.webhook_url.clone()],
                vec!["webhook token".to_owned(), endpoints.webhook_token.clone()],
                vec!["RecordEngine simulator".to_owned(), endpoints.recordengine_url.clone()],
                vec![
                    "RecordEngine API token".to_owned(),
                    endpoints.recordengine_api_token.clone(),
                ],
            ];
            for (name, url) in &endpoints.sinks {
                rows.push(vec![format!("{name} sink"), url.clone()]);
            }
            rows.push(vec![
                "endpoints file".to_owned(),
                layout.endpoints_file().display().to_string(),
            ]);
            println!("{}", table(&["", "local stack"], rows));
        }
    }
}

fn status(args: StateArgs, format: Format) -> Result<i32> {
    let repo_root = current_repo_root()?;
    let layout = state_layout(&args, &repo_root);
    let endpoints = Endpoints::read(&layout.endpoints_file())?;
    let record = RunRecord::read(&layout.run_file())?;
    if !is_running(record.emulator_pid) {
        bail!(
            "the local stack recorded in {} is not running (its emulator, process {}, has exited); \
             clean up with `bridgectl dev down`",
            layout.dir.display(),
            record.emulator_pid
        );
    }
    print_endpoints(&endpoints, &layout, format);
    Ok(0)
}

fn down(args: DownArgs, format: Format) -> Result<i32> {
    let repo_root = current_repo_root()?;
    let layout = state_layout(&args.state, &repo_root);
    let run_files = find_run_files(&layout.dir, args.all);
    let mut outcomes = Vec::new();
    for run_file in &run_files {
        outcomes.push(stop_run(run_file)?);
    }
    match format {
        Format::Json => print_json(&outcomes),
        Format::Table if outcomes.is_empty() => {
            println!("no local stack recorded under {}", layout.dir.display());
        }
        Format::Table => {
            let rows = outcomes
                .iter()
                .map(|outcome| {
                    vec![
                        outcome.stack_name.clone(),
                        outcome.emulator_port.to_string(),
                        outcome.action.clone(),
                        outcome.run_file.display().to_string(),
                    ]
                })
                .collect();
            println!("{}", table(&["stack", "emulator port", "action", "run record"], rows));
        }
    }
    Ok(0)
}

async fn fire(args: FireArgs, format: Format) -> Result<i32> {
    let repo_root = current_repo_root()?;
    let layout = state_layout(&args.state, &repo_root);
    let endpoints = Endpoints::read(&layout.endpoints_file())?;
    let clients = LocalClients::new(&endpoints.aws_endpoint_url)?;
    let stack = DeployedStack::read(&clients, &endpoints.stack_name)
        .await
        .with_context(|| {
            format!(
                "cannot read stack {}; is `bridgectl dev up` still running?",
                endpoints.stack_name
            )
        })?;
    let function = stack.find_function(&args.function)?;
    let schedules = stack_schedules(&clients, &stack).await?;
    let logical_ids: BTreeMap<String, String> = stack
        .functions()
        .iter()
        .map(|function| (function.physical_id.clone(), function.logical_id.clone()))
        .collect();
    let schedule = select_schedule(
        &schedules,
        &logical_ids,
        &function.physical_id,
        args.schedule.as_deref(),
    )?;

    let payload = schedule.payload(chrono::Utc::now())?;
    let invocation = invoke(&clients, &function.physical_id, &payload).await?;
    match format {
        Format::Json => print_json(&serde_json::json!({
            "function": function.logical_id,
            "schedule": schedule.logical_id,
            "payload": payload,
            "invocation": invocation,
        })),
        Format::Table => {
            let mut rows = vec![
                vec![
                    "function".to_owned(),
                    format!("{} ({})", function.logical_id, function.physical_id),
                ],
                vec![
                    "schedule".to_owned(),
                    format!(
                        "{} ({}, {})",
                        schedule.logical_id, schedule.expression, schedule.timezone
                    ),
                ],
                vec!["payload".to_owned(), payload],
                vec!["status".to_owned(), invocation.status_code.to_string()],
                vec![
                    "function error".to_owned(),
                    invocation.function_error.clone().unwrap_or_else(|| "none".to_owned()),
                ],
                vec!["response".to_owned(), invocation.response.clone()],
            ];
            if let Some(log) = &invocation.log_tail {
                rows.push(vec!["log tail".to_owned(), log.clone()]);
            }
            println!("{}", table(&["", "fired"], rows));
        }
    }
    Ok(if invocation.function_error.is_some() { 1 } else { 0 })
}

/// Picks the schedule to fire for a function, or explains which ones exist.
/// `logical_ids` maps deployed function names to logical ids, for messages.
fn select_schedule<'a>(
    schedules: &'a [StackSchedule],
    logical_ids: &BTreeMap<String, String>,
    function_name: &str,
    wanted: Option<&str>,
) -> Result<&'a StackSchedule> {
    let logical_id = |name: &str| logical_ids.get(name).cloned().unwrap_or_else(|| name.to_owned());
    let function_logical_id = logical_id(function_name);
    let of_function: Vec<&StackSchedule> = schedules
        .iter()
        .filter(|schedule| schedule.function_name == function_name)
        .collect();
    if of_function.is_empty() {
        let scheduled: Vec<String> = schedules
            .iter()
            .map(|schedule| {
                format!(
                    "{} (schedule {})",
                    logical_id(&schedule.function_name),
                    schedule.logical_id
                )
            })
            .collect();
        bail!(
            "function {function_logical_id} has no schedule in the stack; scheduled functions: {}",
            if scheduled.is_empty() {
                "none".to_owned()
            } else {
                scheduled.join(", ")
            }
        );
    }
    match wanted {
        Some(wanted) => of_function
            .iter()
            .find(|schedule| schedule.logical_id.eq_ignore_ascii_case(wanted))
            .copied()
            .with_context(|| {
                format!(
                    "function {function_logical_id} has no schedule {wanted:?}; its schedules: {}",
                    names(&of_function)
                )
            }),
        None if of_function.len() == 1 => Ok(of_function[0]),
        None => bail!(
            "function {function_logical_id} has several schedules ({}); choose one with --schedule",
            names(&of_function)
        ),
    }
}

fn names(schedules: &[&StackSchedule]) -> String {
    schedules
        .iter()
        .map(|schedule| schedule.logical_id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::schedule::ScheduleService;

    fn schedule(logical_id: &str, function_name: &str) -> StackSchedule {
        StackSchedule {
            logical_id: logical_id.to_owned(),
            name: logical_id.to_owned(),
            arn: String::new(),
            service: ScheduleService::Scheduler,
            expression: "rate(1 hour)".to_owned(),
            timezone: "UTC".to_owned(),
            enabled: true,
            function_name: function_name.to_owned(),
            input: None,
            input_path: None,
            uses_input_transformer: false,
        }
    }

    #[test]
    fn schedule_selection() {
        let schedules = [
            schedule("Nightly", "stack-Upload"),
            schedule("Hourly", "stack-Upload"),
            schedule("Sweep", "stack-Sweep"),
        ];
        let logical_ids = BTreeMap::from([
            ("stack-Upload".to_owned(), "UploadFunction".to_owned()),
            ("stack-Sweep".to_owned(), "SweepFunction".to_owned()),
            ("stack-Webhook".to_owned(), "WebhookFunction".to_owned()),
        ]);

        let sweep = select_schedule(&schedules, &logical_ids, "stack-Sweep", None).unwrap();
        assert_eq!(sweep.logical_id, "Sweep");
        let hourly = select_schedule(&schedules, &logical_ids, "stack-Upload", Some("hourly")).unwrap();
        assert_eq!(hourly.logical_id, "Hourly");
        let several = select_schedule(&schedules, &logical_ids, "stack-Upload", None).unwrap_err();
        assert!(
            several
                .to_string()
                .contains("UploadFunction has several schedules (Nightly, Hourly)"),
            "{several}"
        );
        let none = select_schedule(&schedules, &logical_ids, "stack-Webhook", None).unwrap_err();
        assert!(none.to_string().contains("WebhookFunction has no schedule"), "{none}");
        assert!(none.to_string().contains("SweepFunction (schedule Sweep)"), "{none}");
    }

    #[test]
    fn parameter_syntax() {
        assert_eq!(
            parse_parameter("LogLevel=debug").unwrap(),
            ("LogLevel".to_owned(), "debug".to_owned())
        );
        assert_eq!(
            parse_parameter("Url=http://127.0.0.1:1/?a=b").unwrap().1,
            "http://127.0.0.1:1/?a=b"
        );
        assert!(parse_parameter("LogLevel").is_err());
        assert!(parse_parameter("=x").is_err());
    }
}
