//! The MiniStack AWS emulator as a child process.
//!
//! MiniStack runs with a cleared environment holding only dummy credentials,
//! `AWS_ENDPOINT_URL` pointing at itself and the loopback guard switch.
//! Functions it runs inherit that environment, so neither the emulator nor a
//! function can reach a real AWS endpoint. It runs in its own process group,
//! which also contains the function processes it starts, so stopping the group
//! stops them all. A parent-death signal stops it if bridgectl dies without
//! cleaning up.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::process::{group_listens_on, processes_in_group, remove_dir, terminate_group};

/// Region of every emulated resource.
pub const REGION: &str = "us-east-1";

/// The account id MiniStack uses.
pub const ACCOUNT_ID: &str = "000000000000";

/// How long the emulator may take to respond to its health check.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long members of the group get to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Files of one emulator run under the state directory.
#[derive(Debug, Clone)]
pub struct EmulatorDirs {
    /// `TMPDIR` of the emulator, where it unpacks function code.
    pub tmp: PathBuf,
    /// `STATE_DIR` of the emulator.
    pub state: PathBuf,
    pub log: PathBuf,
}

impl EmulatorDirs {
    pub fn under(dir: &Path) -> EmulatorDirs {
        EmulatorDirs {
            tmp: dir.join("tmp"),
            state: dir.join("state"),
            log: dir.join("ministack.log"),
        }
    }

    /// Deletes the temporary and state directories. The log stays, for debugging.
    pub fn remove_temporary(&self) -> std::io::Result<()> {
        remove_dir(&self.tmp)?;
        remove_dir(&self.state)
    }
}

/// The environment of the emulator and of every function it runs.
pub fn emulator_environment(port: u16, dirs: &EmulatorDirs) -> Vec<(String, String)> {
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut environment = vec![
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".to_owned(), dirs.state.display().to_string()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ("BIND_HOST".to_owned(), "127.0.0.1".to_owned()),
        ("GATEWAY_PORT".to_owned(), port.to_string()),
        // MiniStack's CloudFormation provisioner builds queue and API URLs
        // from this name. Its default, localhost, is a name that a resolver
        // could send elsewhere.
        ("MINISTACK_HOST".to_owned(), "127.0.0.1".to_owned()),
        ("AWS_ENDPOINT_URL".to_owned(), endpoint),
        ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
        ("AWS_DEFAULT_REGION".to_owned(), REGION.to_owned()),
        ("AWS_REGION".to_owned(), REGION.to_owned()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        (bridge_shared::aws::LOOPBACK_ONLY_VAR.to_owned(), "1".to_owned()),
        ("TMPDIR".to_owned(), dirs.tmp.display().to_string()),
        ("STATE_DIR".to_owned(), dirs.state.display().to_string()),
        ("LOG_LEVEL".to_owned(), "INFO".to_owned()),
    ];
    environment.sort();
    environment
}

/// A running MiniStack process.
#[derive(Debug)]
pub struct Emulator {
    port: u16,
    pid: i32,
    dirs: EmulatorDirs,
    stop: Option<mpsc::Sender<()>>,
    parent: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Starts MiniStack on `port` of 127.0.0.1 and returns once the process
    /// exists; call [`Emulator::wait_until_ready`] before using it.
    ///
    /// A dedicated thread starts the child and lives until [`Emulator::stop`]:
    /// the parent-death signal follows the thread that forked, not the process.
    pub fn spawn(binary: &Path, port: u16, dirs: EmulatorDirs) -> Result<Emulator> {
        std::fs::create_dir_all(&dirs.tmp)
            .with_context(|| format!("cannot create the emulator directory {}", dirs.tmp.display()))?;
        std::fs::create_dir_all(&dirs.state)
            .with_context(|| format!("cannot create the emulator directory {}", dirs.state.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&dirs.log)
            .with_context(|| format!("cannot open the emulator log {}", dirs.log.display()))?;

        let mut command = Command::new(binary);
        command
            .env_clear()
            .envs(emulator_environment(port, &dirs))
            .current_dir(&dirs.state)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot duplicate the emulator log handle")?)
            .stderr(log)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; it only sets the signal the
        // kernel sends this child when the forking thread exits.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }

        let (started_sender, started) = mpsc::channel();
        let (stop, stop_requested) = mpsc::channel::<()>();
        let binary_text = binary.display().to_string();
        let parent = std::thread::Builder::new()
            .name(format!("ministack-{port}"))
            .spawn(move || {
                let mut child = match command.spawn() {
                    Ok(child) => child,
                    Err(error) => {
                        let _ = started_sender.send(Err(format!("cannot start {binary_text}: {error}")));
                        return;
                    }
                };
                let pid = child.id() as i32;
                let _ = started_sender.send(Ok(pid));
                // Returns on a stop request and when the Emulator is dropped.
                let _ = stop_requested.recv();
                terminate_group(pid, STOP_GRACE);
                let _ = child.wait();
            })
            .context("cannot start the emulator's parent thread")?;

        let pid = match started.recv() {
            Ok(Ok(pid)) => pid,
            Ok(Err(message)) => {
                let _ = parent.join();
                bail!("{message}");
            }
            Err(_) => bail!("the emulator's parent thread ended before starting MiniStack"),
        };
        Ok(Emulator {
            port,
            pid,
            dirs,
            stop: Some(stop),
            parent: Some(parent),
        })
    }

    /// Waits until `GET /_ministack/health` returns 200.
    pub async fn wait_until_ready(&self) -> Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .context("cannot build an HTTP client")?;
        let url = format!("{}/_ministack/health", self.url());
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            // Another process may have taken the port before MiniStack
            // bound it, so the response counts only once this group listens.
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
                && group_listens_on(self.pid, self.port)
            {
                return Ok(());
            }
            if processes_in_group(self.pid).is_empty() {
                bail!(
                    "MiniStack exited during start-up; see {}:\n{}",
                    self.dirs.log.display(),
                    log_tail(&self.dirs.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "MiniStack did not respond to {url} within {} s; see {}",
            READY_TIMEOUT.as_secs(),
            self.dirs.log.display()
        )
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the process id, which is also the id of its process group.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn dirs(&self) -> &EmulatorDirs {
        &self.dirs
    }

    /// Stops MiniStack and every process in its group, then deletes its
    /// temporary files. Blocks for up to five seconds.
    pub fn stop(&mut self) -> Result<()> {
        let Some(stop) = self.stop.take() else {
            return Ok(());
        };
        let _ = stop.send(());
        if let Some(parent) = self.parent.take() {
            let _ = parent.join();
        }
        let left: Vec<_> = processes_in_group(self.pid)
            .into_iter()
            .filter(|process| process.state != 'Z')
            .collect();
        if !left.is_empty() {
            bail!(
                "processes of the emulator's group {} are still running: {left:?}",
                self.pid
            );
        }
        self.dirs.remove_temporary().with_context(|| {
            format!(
                "cannot delete the emulator's temporary files under {}",
                self.dirs.tmp.display()
            )
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!(%error, "stopping the emulator left something behind");
        }
    }
}

/// Returns the last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
