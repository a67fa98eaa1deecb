//! Process groups: finding their members through `/proc` and stopping them.

use std::path::Path;
use std::time::{Duration, Instant};

/// One live process: its id, state letter (`R`, `S`, `Z`, …) and command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    pub state: char,
    pub command_line: String,
}

/// Lists the processes whose process group is `pgid`, zombies included.
pub fn processes_in_group(pgid: i32) -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        let Some((state, group)) = read_state_and_group(pid) else {
            continue;
        };
        if group == pgid {
            found.push(ProcessInfo {
                pid,
                state,
                command_line: command_line(pid),
            });
        }
    }
    found.sort_by_key(|process| process.pid);
    found
}

/// Reads the state and process group from `/proc/<pid>/stat`.
fn read_state_and_group(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or
    // parentheses, so the fields after it start at the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

/// Returns the command line of a process with arguments separated by spaces, or empty if it is gone.
pub fn command_line(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|byte| *byte == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Returns whether any process of the group is still running (zombies do not count).
pub fn group_is_running(pgid: i32) -> bool {
    processes_in_group(pgid).iter().any(|process| process.state != 'Z')
}

/// Sends SIGTERM to a process group, waits up to `grace` for its members to
/// exit, then sends SIGKILL to whatever is left.
///
/// The caller must not have reaped the group leader yet: an unreaped leader
/// keeps its id, so the group id cannot be reused by an unrelated process
/// while this runs.
pub fn terminate_group(pgid: i32, grace: Duration) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative id signals a process group this crate started.
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && group_is_running(pgid) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above; SIGKILL stops members that ignored SIGTERM.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Returns whether a process of group `pgid` owns the socket listening on
/// 127.0.0.1:`port` (or on all IPv4 addresses), read from `/proc/net/tcp`.
pub fn group_listens_on(pgid: i32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let wanted = [format!("0100007F:{port:04X}"), format!("00000000:{port:04X}")];
    // Columns: sl, local_address, rem_address, st, …, inode (the tenth).
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let listening = columns.get(3) == Some(&"0A");
            let local = columns.get(1)?;
            (listening && wanted.iter().any(|address| address == local))
                .then(|| columns.get(9).map(|inode| (*inode).to_owned()))?
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    processes_in_group(pgid).iter().any(|process| {
        let Ok(descriptors) = std::fs::read_dir(format!("/proc/{}/fd", process.pid)) else {
            return false;
        };
        descriptors.flatten().any(|descriptor| {
            std::fs::read_link(descriptor.path()).is_ok_and(|target| {
                let target = target.to_string_lossy();
                inodes.iter().any(|inode| target == format!("socket:[{inode}]"))
            })
        })
    })
}

/// Returns whether a process with this id exists and is not a zombie.
pub fn is_running(pid: i32) -> bool {
    read_state_and_group(pid).is_some_and(|(state, _)| state != 'Z')
}

/// Removes a directory tree, treating "already gone" as success.
pub fn remove_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn group_members_found_and_stopped() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        // Bounded wait for the shell to start both sleeps.
        for _ in 0..100 {
            if processes_in_group(pgid).len() >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(processes_in_group(pgid).len() >= 3, "{:?}", processes_in_group(pgid));

        terminate_group(pgid, Duration::from_secs(2));
        child.wait().unwrap();

        assert!(!group_is_running(pgid), "{:?}", processes_in_group(pgid));
    }

    #[test]
    fn listening_socket_owner_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // SAFETY: getpgrp has no preconditions.
        let own_group = unsafe { libc::getpgrp() };

        assert!(group_listens_on(own_group, port));
        drop(listener);
        assert!(!group_listens_on(own_group, port));
    }

    #[test]
    fn own_process_is_running() {
        assert!(is_running(std::process::id() as i32));
        assert!(command_line(std::process::id() as i32).contains("bridgectl"));
    }
}
