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
    /// From the bundle's `hooks`.
    pub fn from_spec(hooks: Option<&oci_spec::runtime::Hooks>) -> Hooks {
        let Some(h) = hooks else { return Hooks::default() };
        let convert = |list: &Option<Vec<oci_spec::runtime::Hook>>| -> Vec<Hook> {
            list.iter()
                .flatten()
                .map(|hook| Hook {
                    path: hook.path().clone(),
                    args: hook.args().clone().unwrap_or_default(),
                    env: hook.env().clone().unwrap_or_default(),
                    timeout: hook.timeout().and_then(|t| u64::try_from(t).ok()),
                })
                .collect()
        };
        #[allow(deprecated)]
        let prestart = convert(h.prestart());
        Hooks {
            prestart,
            create_runtime: convert(h.create_runtime()),
            create_container: convert(h.create_container()),
            poststart: convert(h.poststart()),
            poststop: convert(h.poststop()),
        }
    }
}

/// Runs `hooks` in order with the container state on stdin; the first failure is returned.
pub fn run(phase: &str, hooks: &[Hook], state_json: &[u8]) -> Result<(), ContainerError> {
    for hook in hooks {
        log::debug!("running {phase} hook {} {:?}", hook.path.display(), hook.args);
        let fail = |reason: String| ContainerError::Monitor(format!("{phase} hook {}: {reason}", hook.path.display()));
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
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(state_json);
        }
        let deadline = hook.timeout.map(|t| Instant::now() + Duration::from_secs(t));
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| fail(e.to_string()))? {
                break status;
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("timed out after {}s", hook.timeout.unwrap_or(0))));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
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
}
