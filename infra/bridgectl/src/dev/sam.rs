//! `sam build` and `sam deploy`, run from the SAM CLI virtual environment
//! exactly as users run them against AWS, but aimed at the emulator.
//!
//! Both run with a cleared environment. The SAM CLI gets telemetry switched
//! off, a configuration directory of its own (so its weekly version check
//! counts as done) and empty AWS configuration files, so that no profile
//! from the user's `~/.aws` applies. `sam deploy` also gets dummy
//! credentials, `AWS_ENDPOINT_URL` set to the emulator, and an HTTP proxy on
//! a closed 127.0.0.1 port for every host but 127.0.0.1, so that a request
//! the endpoint setting misses fails instead of leaving the machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bridge_shared::aws::is_loopback_url;

use super::emulator::{REGION, log_tail};

/// Variables passed through from bridgectl's environment to the SAM CLI:
/// the Rust toolchain's location and settings that `cargo lambda` reads.
const PASSED_THROUGH: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_JOBS",
    "CARGO_REGISTRIES_CRATES_IO_PROTOCOL",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// An address on which nothing listens (the discard port), used as the proxy
/// for every host but 127.0.0.1 while `sam deploy` runs.
const CLOSED_PROXY: &str = "http://127.0.0.1:9";

/// The SAM CLI of one local-stack run.
#[derive(Debug, Clone)]
pub struct SamCli {
    /// `.venv/sam/bin`, which also contains `cargo-lambda` and `cargo-zigbuild`.
    pub bin_dir: PathBuf,
    /// The workspace root, against which the template's `CodeUri: .` resolves.
    pub base_dir: PathBuf,
    /// SAM CLI configuration and empty AWS configuration files.
    pub config_dir: PathBuf,
    /// `sam-build.log` and `sam-deploy.log`.
    pub log_dir: PathBuf,
}

impl SamCli {
    pub fn sam_binary(&self) -> PathBuf {
        self.bin_dir.join("sam")
    }

    /// Checks that the SAM CLI and cargo-lambda are installed.
    pub fn check_installed(&self) -> Result<()> {
        for tool in ["sam", "cargo-lambda", "cargo-zigbuild"] {
            let path = self.bin_dir.join(tool);
            if !path.exists() {
                bail!(
                    "{tool} is not installed at {}: run `make venv` (it installs infra/requirements-sam.txt)",
                    path.display()
                );
            }
        }
        Ok(())
    }

    /// Runs `sam build` of `template` into `build_dir`.
    ///
    /// Every function is built with `cargo lambda build --release` into the
    /// workspace's target directory, where cargo skips work that is up to
    /// date, so a build with unchanged sources takes seconds.
    // NOTE: `--cached` is not used. With `CodeUri: .` SAM hashes the whole
    // workspace for it, target directory included, which takes longer than
    // cargo's own up-to-date check and never matches after a build.
    pub async fn build(&self, template: &Path, build_dir: &Path) -> Result<Duration> {
        let started = Instant::now();
        let _lock = self.lock_builds().await?;
        let log = self.log_dir.join("sam-build.log");
        let args = [
            "build".to_owned(),
            "--template-file".to_owned(),
            template.display().to_string(),
            "--build-dir".to_owned(),
            build_dir.display().to_string(),
            "--base-dir".to_owned(),
            self.base_dir.display().to_string(),
        ];
        self.run(&args, &BTreeMap::new(), &log)
            .await
            .context("sam build failed")?;
        Ok(started.elapsed())
    }

    /// Waits for exclusive use of the workspace's `cargo lambda` output.
    ///
    /// `cargo lambda build` moves each binary to `target/lambda/<binary>/bootstrap`
    /// in place, so two builds of one workspace at once (two tests, or a test
    /// beside `dev up`) fail to move it or copy a half-written file. Every
    /// `sam build` of bridgectl takes this lock first; a `cargo lambda build`
    /// started by hand does not.
    async fn lock_builds(&self) -> Result<std::fs::File> {
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.base_dir.join("target"));
        std::fs::create_dir_all(&target_dir).with_context(|| format!("cannot create {}", target_dir.display()))?;
        let path = target_dir.join("bridgectl-sam-build.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the build lock {}", path.display()))?;
        if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
            return Ok(file);
        }
        tracing::info!(lock = %path.display(), "waiting for another sam build of this workspace to finish");
        tokio::task::spawn_blocking(move || flock(&file, libc::LOCK_EX).map(|()| file))
            .await
            .context("the build lock task panicked")?
            .with_context(|| format!("cannot lock {}", path.display()))
    }

    /// Runs `sam deploy` of a built template to the emulator at `endpoint`.
    pub async fn deploy(
        &self,
        built_template: &Path,
        stack_name: &str,
        parameters: &BTreeMap<String, String>,
        endpoint: &str,
    ) -> Result<Duration> {
        if !is_loopback_url(endpoint) {
            bail!("refusing to run sam deploy against {endpoint}: the local stack deploys only to 127.0.0.1");
        }
        let started = Instant::now();
        std::fs::create_dir_all(&self.config_dir)
            .with_context(|| format!("cannot create {}", self.config_dir.display()))?;

        // A file avoids quoting: SAM splits --parameter-overrides text on spaces.
        let overrides_file = self.config_dir.join(format!("{stack_name}-parameters.yaml"));
        let overrides = serde_json::to_string_pretty(parameters).context("cannot encode the parameter overrides")?;
        std::fs::write(&overrides_file, overrides)
            .with_context(|| format!("cannot write {}", overrides_file.display()))?;

        let environment = BTreeMap::from([
            ("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned()),
            ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
            ("AWS_DEFAULT_REGION".to_owned(), REGION.to_owned()),
            ("AWS_REGION".to_owned(), REGION.to_owned()),
            ("HTTP_PROXY".to_owned(), CLOSED_PROXY.to_owned()),
            ("HTTPS_PROXY".to_owned(), CLOSED_PROXY.to_owned()),
            ("NO_PROXY".to_owned(), "127.0.0.1".to_owned()),
        ]);
        let mut args = vec![
            "deploy".to_owned(),
            "--template-file".to_owned(),
            built_template.display().to_string(),
            "--stack-name".to_owned(),
            stack_name.to_owned(),
            "--resolve-s3".to_owned(),
            "--no-confirm-changeset".to_owned(),
            "--no-fail-on-empty-changeset".to_owned(),
            "--no-progressbar".to_owned(),
            "--region".to_owned(),
            REGION.to_owned(),
            "--capabilities".to_owned(),
            "CAPABILITY_IAM".to_owned(),
            "CAPABILITY_AUTO_EXPAND".to_owned(),
        ];
        if !parameters.is_empty() {
            args.push("--parameter-overrides".to_owned());
            args.push(format!("file://{}", overrides_file.display()));
        }
        let log = self.log_dir.join("sam-deploy.log");
        self.run(&args, &environment, &log).await.context("sam deploy failed")?;
        Ok(started.elapsed())
    }

    /// Runs the SAM CLI in its own process group, logging to `log`. The group
    /// is killed if this future is dropped, so an interrupted `dev up` leaves
    /// no build running.
    async fn run(&self, args: &[String], extra: &BTreeMap<String, String>, log: &Path) -> Result<()> {
        std::fs::create_dir_all(&self.log_dir).with_context(|| format!("cannot create {}", self.log_dir.display()))?;
        self.write_sam_config()?;
        let log_file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;

        let mut command = tokio::process::Command::new(self.sam_binary());
        command
            .args(args)
            .current_dir(&self.base_dir)
            .env_clear()
            .envs(self.environment())
            .envs(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("cannot duplicate a log handle")?)
            .stderr(log_file)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; SIGTERM reaches the SAM CLI if
        // the thread that started it exits without waiting for it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.sam_binary().display()))?;
        let group = GroupGuard(child.id().map(|pid| pid as i32));

        let status = child.wait().await.context("cannot wait for the SAM CLI")?;
        group.disarm();
        if !status.success() {
            bail!(
                "`sam {}` exited with {status}; last lines of {}:\n{}",
                args.first().map(String::as_str).unwrap_or_default(),
                log.display(),
                log_tail(log, 40)
            );
        }
        Ok(())
    }

    fn environment(&self) -> BTreeMap<String, String> {
        let mut environment: BTreeMap<String, String> = PASSED_THROUGH
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| ((*name).to_owned(), value)))
            .collect();
        let path = environment.remove("PATH").unwrap_or_default();
        environment.insert("PATH".to_owned(), format!("{}:{path}", self.bin_dir.display()));
        environment.insert("LANG".to_owned(), "C.UTF-8".to_owned());
        environment.insert("SAM_CLI_TELEMETRY".to_owned(), "0".to_owned());
        environment.insert(
            "__SAM_CLI_APP_DIR".to_owned(),
            self.config_dir.join("sam-app").display().to_string(),
        );
        let empty = self.config_dir.join("aws-empty-config").display().to_string();
        environment.insert("AWS_CONFIG_FILE".to_owned(), empty.clone());
        environment.insert("AWS_SHARED_CREDENTIALS_FILE".to_owned(), empty);
        environment.insert("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned());
        environment
    }

    /// Writes the SAM CLI's settings: telemetry off and a version check
    /// stamped now, so that it sends no request to pypi.org.
    fn write_sam_config(&self) -> Result<()> {
        let app_dir = self.config_dir.join("sam-app");
        std::fs::create_dir_all(&app_dir).with_context(|| format!("cannot create {}", app_dir.display()))?;
        let settings = serde_json::json!({
            "telemetryEnabled": false,
            "lastVersionCheck": chrono::Utc::now().timestamp(),
        });
        std::fs::write(app_dir.join("metadata.json"), settings.to_string())
            .with_context(|| format!("cannot write the SAM CLI settings in {}", app_dir.display()))?;
        std::fs::write(self.config_dir.join("aws-empty-config"), "")
            .with_context(|| format!("cannot write {}", self.config_dir.display()))?;
        Ok(())
    }
}

/// Applies flock(2) to a file; the lock lasts until the file is closed.
fn flock(file: &std::fs::File, operation: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Kills a process group when dropped, unless disarmed.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.filter(|pgid| *pgid > 1) {
            // SAFETY: signals the process group of a SAM CLI this module started and has not reaped.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}
