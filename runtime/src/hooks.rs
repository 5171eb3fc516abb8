//! OCI hooks. `create` runs prestart, createRuntime and createContainer once the monitor has
//! its namespaces and before it wires the network and builds the VM (docker's libnetwork-setkey
//! prestart hook moves the container interface into the namespace then); `start` runs poststart
//! and `delete` runs poststop (failures of those two are warnings, as the spec says).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::ContainerError;

/// One hook.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Absolute path of the program.
    pub path: PathBuf,
    /// argv, including argv[0].
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment, `KEY=VALUE`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds before the hook is killed.
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// The hooks of a bundle, by phase.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    /// Deprecated but what docker uses.
    #[serde(default)]
    pub prestart: Vec<Hook>,
    /// After namespaces exist, in the runtime's namespace.
    #[serde(default)]
    pub create_runtime: Vec<Hook>,
    /// After namespaces exist (run from the runtime's namespace: a unikernel has no container
    /// mount namespace to enter).
    #[serde(default)]
    pub create_container: Vec<Hook>,
    /// After start.
    #[serde(default)]
    pub poststart: Vec<Hook>,
    /// After delete.
    #[serde(default)]
    pub poststop: Vec<Hook>,
}

impl Hooks {
    /// From the bundle's `hooks`; a timeout that is not a positive number of seconds (the
    /// runtime specification's rule) is an error.
    pub fn from_spec(hooks: Option<&oci_spec::runtime::Hooks>) -> Result<Hooks, String> {
        let Some(h) = hooks else { return Ok(Hooks::default()) };
        let convert = |list: &Option<Vec<oci_spec::runtime::Hook>>| -> Result<Vec<Hook>, String> {
            list.iter()
                .flatten()
                .map(|hook| {
                    let timeout =
                        match hook.timeout() {
                            None => None,
                            Some(t) => Some(u64::try_from(t).ok().filter(|t| *t > 0).ok_or_else(|| {
                                format!("hook {}: timeout {t} is not a positive number of seconds", hook.path().display())
                            })?),
                        };
                    Ok(Hook {
                        path: hook.path().clone(),
                        args: hook.args().clone().unwrap_or_default(),
                        env: hook.env().clone().unwrap_or_default(),
                        timeout,
                    })
                })
                .collect()
        };
        #[allow(deprecated)]
        let prestart = convert(h.prestart())?;
        Ok(Hooks {
            prestart,
            create_runtime: convert(h.create_runtime())?,
            create_container: convert(h.create_container())?,
            poststart: convert(h.poststart())?,
            poststop: convert(h.poststop())?,
        })
    }
}

/// Reads `pipe` to its end, keeping the last 4 KiB (as text) for an error message.
fn tail(mut pipe: impl std::io::Read) -> String {
    const KEEP: usize = 4096;
    let (mut kept, mut buf) = (Vec::new(), [0u8; 8192]);
    while let Ok(n @ 1..) = pipe.read(&mut buf) {
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > KEEP {
            kept.drain(..kept.len() - KEEP);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Runs `hooks` in order with the container state on stdin; the first failure is returned.
pub fn run(phase: &str, hooks: &[Hook], state_json: &[u8]) -> Result<(), ContainerError> {
    for hook in hooks {
        log::debug!("running {phase} hook {} {:?}", hook.path.display(), hook.args);
        let fail = |reason: String| ContainerError::Hook {
            phase: phase.to_string(),
            path: hook.path.clone(),
            reason,
        };
        let mut cmd = Command::new(&hook.path);
        if let Some((argv0, rest)) = hook.args.split_first() {
            std::os::unix::process::CommandExt::arg0(&mut cmd, argv0);
            cmd.args(rest);
        }
        cmd.env_clear();
        for kv in &hook.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        let deadline = hook.timeout.map(|t| Instant::now() + Duration::from_secs(t));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        // Stdin is fed and stderr drained on their own threads: a hook that reads slowly or
        // writes a lot must not stall us, and the timeout counts from the start.
        let stdin = child.stdin.take().map(|mut pipe| {
            let state = state_json.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&state);
            })
        });
        let (err_tx, err_rx) = std::sync::mpsc::channel();
        if let Some(pipe) = child.stderr.take() {
            std::thread::spawn(move || err_tx.send(tail(pipe)));
        }
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| fail(e.to_string()))? {
                break Some(status);
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // Stderr ends with the hook, unless something it started keeps it open: not waited for
        // long then (nor are the detached pipe threads).
        let err = match status {
            Some(_) => err_rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default(),
            None => String::new(),
        };
        drop(stdin);
        let Some(status) = status else {
            return Err(fail(format!("timed out after {}s", hook.timeout.unwrap_or(0))));
        };
        if !status.success() {
            return Err(fail(format!("{status}: {}", err.trim())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Option<u64>) -> Hook {
        Hook {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["X=1".into()],
            timeout,
        }
    }

    #[test]
    fn test_hooks_get_state_on_stdin_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!("cat > {0}; echo \" $X\" >> {0}", out.display());
        run("prestart", &[sh(&script, None)], br#"{"id":"c"}"#).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"c\"} 1\n");
    }

    #[test]
    fn test_failures_and_timeouts_are_errors() {
        let err = run("prestart", &[sh("echo boom >&2; exit 3", None)], b"{}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prestart hook /bin/sh") && err.contains("boom"), "{err}");
        let err = run("createRuntime", &[sh("sleep 5", Some(1))], b"{}").unwrap_err().to_string();
        assert!(err.contains("timed out"), "{err}");
    }

    #[test]
    fn test_chatty_hooks_and_big_states_do_not_stall() {
        // 200 KB on stderr, more than a pipe holds: fine, and within its timeout.
        run("prestart", &[sh("head -c 200000 /dev/zero >&2; exit 0", Some(10))], b"{}").unwrap();
        // A hook that reads nothing of a 200 KB state and sleeps past its timeout: timed out.
        // The hook alone would take 60 s: returning before that proves it was stopped at its
        // timeout (a bound on the hook, not on the machine's speed).
        let state = vec![b' '; 200_000];
        let start = Instant::now();
        let err = run("prestart", &[sh("sleep 60", Some(1))], &state).unwrap_err().to_string();
        assert!(err.contains("timed out after 1s"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(60), "{:?}", start.elapsed());
        // A hook that leaves something behind holding its stderr still counts as done: `run`
        // returns while that process (which records its pid) still lives.
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 60 & echo $! > {}; exit 0", pid_file.display());
        run("poststart", &[sh(&script, Some(120))], b"{}").unwrap();
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        // SAFETY: ends the leftover sleep, which is ours (the hook's child).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert!(alive, "run waited for the process holding the hook's stderr");
        // Its failure output, the tail of it, is in the error.
        let err = run(
            "prestart",
            &[sh("head -c 100000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 1", None)],
            b"{}",
        )
        .unwrap_err()
        .to_string();
        assert!(err.ends_with("END"), "{}", &err[err.len().saturating_sub(80)..]);
    }
}
