//! `bridgectl dev down`: stops a local stack from its run record, for a run
//! whose bridgectl crashed or was killed before it could clean up.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::emulator::EmulatorDirs;
use super::endpoints::RunRecord;
use super::process::{command_line, group_is_running, is_running, processes_in_group, terminate_group};

/// How long a live `bridgectl dev up` gets to stop its stack after SIGTERM.
const OWNER_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The action `dev down` took on one run record.
#[derive(Debug, Clone, Serialize)]
pub struct DownOutcome {
    pub run_file: PathBuf,
    pub stack_name: String,
    pub emulator_port: u16,
    /// `stopped`, `already stopped`, `asked bridgectl to stop`, or `skipped: <reason>`.
    pub action: String,
}

/// Finds run records: `state_dir/run.json`, and with `nested` also those of
/// directories below it (stacks that tests started), up to three levels down.
pub fn find_run_files(state_dir: &Path, nested: bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    collect_run_files(state_dir, if nested { 3 } else { 0 }, &mut found);
    found.sort();
    found
}

fn collect_run_files(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    let run_file = dir.join("run.json");
    if run_file.is_file() {
        found.push(run_file);
    }
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // MiniStack's own directories hold no run records and can be large.
        if path.is_dir() && entry.file_name() != "ministack" && entry.file_name() != "sam" {
            collect_run_files(&path, depth - 1, found);
        }
    }
}

/// Stops the stack of one run record and deletes its temporary files.
///
/// A live `bridgectl` that owns the stack is sent SIGTERM and stops it
/// itself. A stack owned by another live process (an end-to-end test) is
/// left alone. Otherwise the emulator's process group is stopped, after
/// checking that its processes belong to this MiniStack run.
pub fn stop_run(run_file: &Path) -> Result<DownOutcome> {
    let record = RunRecord::read(run_file)?;
    let mut outcome = DownOutcome {
        run_file: run_file.to_path_buf(),
        stack_name: record.stack_name.clone(),
        emulator_port: record.emulator_port,
        action: String::new(),
    };
    let own_pid = std::process::id() as i32;

    if record.owner_pid != own_pid && is_running(record.owner_pid) {
        if !command_line(record.owner_pid).contains("bridgectl") {
            outcome.action = format!(
                "skipped: its owner, process {} ({}), is still running",
                record.owner_pid,
                command_line(record.owner_pid)
            );
            return Ok(outcome);
        }
        // SAFETY: sends SIGTERM to the bridgectl process named in the run record, checked above.
        unsafe {
            libc::kill(record.owner_pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + OWNER_STOP_TIMEOUT;
        while Instant::now() < deadline && is_running(record.owner_pid) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !is_running(record.owner_pid) && !group_is_running(record.emulator_pid) {
            outcome.action = "asked bridgectl to stop".to_owned();
            remove_leftovers(run_file, &record)?;
            return Ok(outcome);
        }
    }

    if group_is_running(record.emulator_pid) {
        let emulator_dir = record.emulator_dir.display().to_string();
        let members = processes_in_group(record.emulator_pid);
        let belongs = members
            .iter()
            .any(|process| process.command_line.contains("ministack") || process.command_line.contains(&emulator_dir));
        if !belongs {
            outcome.action = format!(
                "skipped: process group {} does not look like this run's MiniStack: {members:?}",
                record.emulator_pid
            );
            return Ok(outcome);
        }
        terminate_group(record.emulator_pid, Duration::from_secs(5));
        outcome.action = "stopped".to_owned();
    } else {
        outcome.action = "already stopped".to_owned();
    }
    remove_leftovers(run_file, &record)?;
    Ok(outcome)
}

fn remove_leftovers(run_file: &Path, record: &RunRecord) -> Result<()> {
    EmulatorDirs::under(&record.emulator_dir)
        .remove_temporary()
        .with_context(|| {
            format!(
                "cannot delete the emulator files under {}",
                record.emulator_dir.display()
            )
        })?;
    if let Some(dir) = run_file.parent() {
        let endpoints = dir.join("endpoints.json");
        if endpoints.exists() {
            std::fs::remove_file(&endpoints).with_context(|| format!("cannot delete {}", endpoints.display()))?;
        }
    }
    std::fs::remove_file(run_file).with_context(|| format!("cannot delete {}", run_file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn stale_run_is_stopped_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let emulator_dir = dir.path().join("ministack");
        std::fs::create_dir_all(emulator_dir.join("tmp")).unwrap();
        // A stand-in for MiniStack whose command line names the run's directory.
        let marker = emulator_dir.join("tmp").join("ministack-stand-in");
        std::fs::write(&marker, "").unwrap();
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30; echo \"$0\"", &marker.display().to_string()])
            .process_group(0)
            .spawn()
            .unwrap();
        let run_file = dir.path().join("run.json");
        RunRecord {
            owner_pid: i32::MAX,
            emulator_pid: child.id() as i32,
            emulator_port: 1,
            emulator_dir: emulator_dir.clone(),
            stack_name: "stale".to_owned(),
            started_at: String::new(),
        }
        .write(&run_file)
        .unwrap();
        std::fs::write(dir.path().join("endpoints.json"), "{}").unwrap();

        let outcome = stop_run(&run_file).unwrap();
        child.wait().unwrap();

        assert_eq!(outcome.action, "stopped");
        assert!(!group_is_running(child.id() as i32));
        assert!(!run_file.exists());
        assert!(!dir.path().join("endpoints.json").exists());
        assert!(!emulator_dir.join("tmp").exists());
    }

    #[test]
    fn unrelated_group_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        let run_file = dir.path().join("run.json");
        RunRecord {
            owner_pid: i32::MAX,
            emulator_pid: child.id() as i32,
            emulator_port: 1,
            emulator_dir: dir.path().join("ministack"),
            stack_name: "other".to_owned(),
            started_at: String::new(),
        }
        .write(&run_file)
        .unwrap();

        let outcome = stop_run(&run_file).unwrap();

        assert!(outcome.action.starts_with("skipped"), "{}", outcome.action);
        assert!(group_is_running(child.id() as i32));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn nested_run_files_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tests/a")).unwrap();
        std::fs::write(dir.path().join("run.json"), "{}").unwrap();
        std::fs::write(dir.path().join("tests/a/run.json"), "{}").unwrap();

        assert_eq!(find_run_files(dir.path(), false).len(), 1);
        assert_eq!(find_run_files(dir.path(), true).len(), 2);
    }
}
