//! Bundles that are not unikernels go to runc, when it is installed, with the same arguments
//! (`create` finds out, and hands its own command line over):
//! a Kubernetes pod's pause container, or an ordinary image by mistake, still runs. runc keeps
//! its state under `<root>/runc`, and every later command for such a container is handed over too.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command};

/// runc's state directory under unik's root.
pub fn runc_root(root: &Path) -> PathBuf {
    root.join("runc")
}

/// runc, if it is on PATH (`UNIK_RUNC` overrides, for tests).
pub fn find_runc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("UNIK_RUNC") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("runc"))
        .find(|p| p.is_file())
}

/// The container id a command for an existing container acts on.
fn target(cli: &Cli) -> Option<&str> {
    Some(match &cli.command {
        Command::Start(a) | Command::State(a) | Command::Pause(a) | Command::Resume(a) => a.id.as_str(),
        Command::Kill(a) => a.id.as_str(),
        Command::Delete(a) => a.id.as_str(),
        Command::Ps(a) => a.id.as_str(),
        Command::Update(a) => a.id.as_str(),
        Command::Exec(a) => exec_id(&a.args)?,
        // Their id is the last operand.
        Command::Checkpoint(a) | Command::Events(a) => a.args.iter().rev().find(|a| !a.starts_with('-'))?.as_str(),
        _ => return None,
    })
}

/// The container id among runc `exec`'s arguments: the first operand, skipping options and
/// the values of those that take one.
fn exec_id(args: &[String]) -> Option<&str> {
    const WITH_VALUE: &[&str] = &[
        "--console-socket",
        "--cwd",
        "--env",
        "-e",
        "--user",
        "-u",
        "--additional-gids",
        "-g",
        "--process",
        "-p",
        "--pid-file",
        "--process-label",
        "--apparmor",
        "--cap",
        "-c",
        "--preserve-fds",
        "--cgroup",
    ];
    let mut args = args.iter();
    while let Some(a) = args.next() {
        if a == "--" {
            return args.next().map(String::as_str);
        }
        if !a.starts_with('-') {
            return Some(a);
        }
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        }
    }
    None
}

/// `argv` with `--root R` replaced by (or given) `--root R/runc`, and runc as argv[0].
fn runc_argv(argv: &[OsString], root: &Path) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len() + 2);
    out.push("--root".into());
    out.push(runc_root(root).into_os_string());
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        if a == "--root" {
            args.next();
        } else if a.to_str().is_some_and(|s| s.starts_with("--root=")) {
            // dropped: replaced above
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// Replaces this process with runc when the command is for a container runc created. Returns
/// only when unik handles the command itself.
pub fn exec_runc_if_its_container(cli: &Cli, argv: &[OsString], root: &Path) -> anyhow::Result<()> {
    match target(cli) {
        Some(id) if runtime::id::validate(id).is_ok() && runc_root(root).join(id).join("state.json").is_file() => exec_runc(argv, root),
        _ => Ok(()),
    }
}

/// Replaces this process with runc, given the same arguments, if runc is installed; returns
/// `Ok` (and unik goes on to report its own error) when it is not.
pub fn exec_runc(argv: &[OsString], root: &Path) -> anyhow::Result<()> {
    let Some(runc) = find_runc() else { return Ok(()) };
    log::debug!("not a unikernel: handing over to {}", runc.display());
    let err = std::process::Command::new(&runc).args(runc_argv(argv, root)).exec();
    Err(anyhow::Error::new(err).context(format!("running {}", runc.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_exec_id_skips_options_and_their_values() {
        let ids = |a: &[&str]| exec_id(&a.iter().map(|s| (*s).to_string()).collect::<Vec<_>>()).map(String::from);
        assert_eq!(
            ids(&["--process", "/tmp/p.json", "-d", "--pid-file=/b/e.pid", "c1"]).as_deref(),
            Some("c1")
        );
        assert_eq!(
            ids(&["-t", "-e", "A=1", "--cwd", "/", "c2", "sh", "-c", "x"]).as_deref(),
            Some("c2")
        );
        assert_eq!(ids(&["--", "c3"]).as_deref(), Some("c3"));
        assert_eq!(ids(&["--detach"]), None);
    }

    #[test]
    fn test_runc_argv_moves_the_root() {
        let argv: Vec<OsString> = ["unik", "--root", "/r", "--log", "l.json", "create", "--bundle", "b", "id"]
            .iter()
            .map(Into::into)
            .collect();
        let out: Vec<String> = runc_argv(&argv, Path::new("/r"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(out, ["--root", "/r/runc", "--log", "l.json", "create", "--bundle", "b", "id"]);
        let argv: Vec<OsString> = ["unik", "--root=/r", "kill", "id", "9"].iter().map(Into::into).collect();
        let out: Vec<String> = runc_argv(&argv, Path::new("/r"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(out, ["--root", "/r/runc", "kill", "id", "9"]);
    }
}
