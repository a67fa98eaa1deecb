//! Checks that every function of the deployed stack gets through its init
//! phase, and reports the function's own error when it does not.
//!
//! The functions read their configuration at init and fail there, naming a
//! missing or invalid environment variable. The emulator only starts a
//! function when something invokes it, and invoking one to find out would
//! run its handler, with side effects for functions that take any payload
//! (a scheduled upload, say). So this module starts each built bootstrap
//! itself, with the environment the emulator would give it: the emulator's
//! own environment, the deployed function's variables and a Runtime API
//! endpoint. That Runtime API never hands out an event, and a request to
//! `GET /runtime/invocation/next` means init succeeded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use bridge_shared::aws::sdk_error_text;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

use super::stack::{DeployedStack, LocalClients};

/// Lambda's limit on the init phase.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The deployed configuration of one function.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionSettings {
    pub logical_id: String,
    pub function_name: String,
    pub handler: String,
    pub memory_mb: i32,
    pub environment: BTreeMap<String, String>,
}

/// Reads every function's deployed configuration from the emulator.
pub async fn function_settings(clients: &LocalClients, stack: &DeployedStack) -> Result<Vec<FunctionSettings>> {
    let mut settings = Vec::new();
    for function in stack.functions() {
        let configuration = clients
            .lambda
            .get_function_configuration()
            .function_name(&function.physical_id)
            .send()
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "GetFunctionConfiguration {}: {}",
                    function.physical_id,
                    sdk_error_text(&error)
                )
            })?;
        settings.push(FunctionSettings {
            logical_id: function.logical_id.clone(),
            function_name: function.physical_id.clone(),
            handler: configuration.handler().unwrap_or("bootstrap").to_owned(),
            memory_mb: configuration.memory_size().unwrap_or(128),
            environment: configuration
                .environment()
                .and_then(|environment| environment.variables())
                .map(|variables| variables.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        });
    }
    Ok(settings)
}

/// A function that did not finish init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitFailure {
    pub logical_id: String,
    pub function_name: String,
    /// The function's own error: its `/runtime/init/error` report or the end of its output.
    pub error: String,
}

impl std::fmt::Display for InitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "function {} ({}) failed during init: {}",
            self.logical_id, self.function_name, self.error
        )
    }
}

/// Starts each function's bootstrap from `build_dir/<logical id>/` and
/// returns those that fail during init. A function without a built
/// bootstrap is skipped with a warning.
pub async fn check_inits(
    functions: &[FunctionSettings],
    build_dir: &Path,
    base_environment: &[(String, String)],
    aws_endpoint: &str,
) -> Result<Vec<InitFailure>> {
    let checks = functions.iter().map(|function| async move {
        let bootstrap = build_dir.join(&function.logical_id).join("bootstrap");
        if !bootstrap.exists() {
            tracing::warn!(
                function = %function.logical_id,
                path = %bootstrap.display(),
                "no built bootstrap for this function; its init is not checked"
            );
            return Ok(None);
        }
        check_one(function, &bootstrap, base_environment, aws_endpoint).await
    });
    let results = futures::future::join_all(checks).await;
    let mut failures = Vec::new();
    for result in results {
        if let Some(failure) = result? {
            failures.push(failure);
        }
    }
    Ok(failures)
}

#[derive(Default)]
struct RuntimeApiState {
    reached_next: Notify,
    init_error: Mutex<Option<String>>,
    init_error_posted: Notify,
}

async fn check_one(
    function: &FunctionSettings,
    bootstrap: &Path,
    base_environment: &[(String, String)],
    aws_endpoint: &str,
) -> Result<Option<InitFailure>> {
    let state = Arc::new(RuntimeApiState::default());
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("cannot bind a Runtime API port on 127.0.0.1")?;
    let runtime_api = listener.local_addr().context("Runtime API address")?;
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    // The child runs in the task root, where a relative path would no longer resolve.
    let bootstrap = std::path::absolute(bootstrap).with_context(|| format!("invalid path {}", bootstrap.display()))?;
    let bootstrap = bootstrap.as_path();
    let task_root: PathBuf = bootstrap.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut command = tokio::process::Command::new(bootstrap);
    command
        .env_clear()
        .envs(base_environment.iter().cloned())
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", &function.function_name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", function.memory_mb.to_string())
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("LAMBDA_TASK_ROOT", &task_root)
        .env("_HANDLER", &function.handler)
        .envs(&function.environment)
        // As in the emulator: the AWS endpoint wins over the function's variables.
        .env("AWS_ENDPOINT_URL", aws_endpoint)
        .current_dir(&task_root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", bootstrap.display()))?;
    let mut stdout = child.stdout.take().context("bootstrap stdout")?;
    let mut stderr = child.stderr.take().context("bootstrap stderr")?;
    let output = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text).await;
        let _ = stderr.read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).into_owned()
    });

    let failure = tokio::select! {
        _ = state.reached_next.notified() => None,
        _ = state.init_error_posted.notified() => Some(
            state.init_error.lock().map(|error| error.clone().unwrap_or_default()).unwrap_or_default(),
        ),
        status = child.wait() => Some(match status {
            Ok(status) => format!("the bootstrap exited with {status} before asking for an event"),
            Err(error) => format!("cannot wait for the bootstrap: {error}"),
        }),
        _ = tokio::time::sleep(INIT_TIMEOUT) => Some(format!(
            "the bootstrap did not ask for an event within {} s",
            INIT_TIMEOUT.as_secs()
        )),
    };

    if let Some(pid) = child.id() {
        // SAFETY: signals the process group of the bootstrap started above, which is not yet reaped.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
    }
    let _ = child.wait().await;
    server.abort();
    let output = tokio::time::timeout(Duration::from_secs(5), output)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();

    Ok(failure.map(|reason| InitFailure {
        logical_id: function.logical_id.clone(),
        function_name: function.function_name.clone(),
        error: describe_failure(&reason, &output),
    }))
}

/// Combines the reason with the last lines the function wrote, where its error is.
fn describe_failure(reason: &str, output: &str) -> String {
    let lines: Vec<&str> = output.lines().filter(|line| !line.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("\n    ");
    if tail.is_empty() {
        reason.to_owned()
    } else {
        format!("{reason}; its output ends with:\n    {tail}")
    }
}

async fn next_invocation(State(state): State<Arc<RuntimeApiState>>) -> &'static str {
    state.reached_next.notify_one();
    // Never hand out an event: the check ends here and kills the process.
    std::future::pending::<()>().await;
    ""
}

async fn init_error(State(state): State<Arc<RuntimeApiState>>, body: Bytes) -> axum::http::StatusCode {
    if let Ok(mut error) = state.init_error.lock() {
        *error = Some(String::from_utf8_lossy(&body).into_owned());
    }
    state.init_error_posted.notify_one();
    axum::http::StatusCode::ACCEPTED
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(environment: &[(&str, &str)]) -> FunctionSettings {
        FunctionSettings {
            logical_id: "ShellFunction".to_owned(),
            function_name: "stack-ShellFunction".to_owned(),
            handler: "bootstrap".to_owned(),
            memory_mb: 128,
            environment: environment
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    /// Writes a shell bootstrap that fails without `REQUIRED` and otherwise
    /// polls the Runtime API with bash's /dev/tcp.
    fn shell_bootstrap(dir: &Path) {
        let function_dir = dir.join("ShellFunction");
        std::fs::create_dir_all(&function_dir).unwrap();
        let script = r#"#!/bin/bash
if [ -z "$REQUIRED" ]; then echo "environment variable REQUIRED is not set" >&2; exit 1; fi
host=${AWS_LAMBDA_RUNTIME_API%:*}; port=${AWS_LAMBDA_RUNTIME_API#*:}
exec 3<>/dev/tcp/$host/$port
printf 'GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n' >&3
sleep 30
"#;
        let path = function_dir.join("bootstrap");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn missing_variable_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        shell_bootstrap(dir.path());
        let base = vec![("PATH".to_owned(), std::env::var("PATH").unwrap_or_default())];

        let failures = check_inits(&[settings(&[])], dir.path(), &base, "http://127.0.0.1:9")
            .await
            .unwrap();

        assert_eq!(failures.len(), 1);
        let message = failures[0].to_string();
        assert!(
            message.contains("function ShellFunction (stack-ShellFunction)"),
            "{message}"
        );
        assert!(message.contains("REQUIRED is not set"), "{message}");
    }

    #[tokio::test]
    async fn reaching_next_passes() {
        let dir = tempfile::tempdir().unwrap();
        shell_bootstrap(dir.path());
        let base = vec![("PATH".to_owned(), std::env::var("PATH").unwrap_or_default())];

        let failures = check_inits(
            &[settings(&[("REQUIRED", "yes")])],
            dir.path(),
            &base,
            "http://127.0.0.1:9",
        )
        .await
        .unwrap();

        assert_eq!(failures, []);
    }

    #[tokio::test]
    async fn missing_bootstrap_is_skipped() {
        let dir = tempfile::tempdir().unwrap();

        let failures = check_inits(&[settings(&[])], dir.path(), &[], "http://127.0.0.1:9")
            .await
            .unwrap();

        assert_eq!(failures, []);
    }
}
