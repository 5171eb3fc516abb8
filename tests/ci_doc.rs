//! docs/ci.md's GitHub Actions job, run here: its `run` steps taken out of the page's YAML block
//! and run with `bash -eo pipefail` as a runner runs them (`RUNNER_TEMP`, `GITHUB_PATH`, the
//! job's `env`), with the download served by a `curl` stand-in from a release directory made
//! from the unik binary under test (`UNIK_BIN`: in CI the static release binary). The page
//! cannot rot: a job that no longer works fails here.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::guests::guest;
use common::{stderr, stdout};

/// The step that opens /dev/kvm to the runner's user: it changes the runner's udev rules, and
/// the tests run as root already. The only `run` step not run here.
const KVM_STEP: &str = "Let the runner's user open /dev/kvm";

/// The `curl` the job's steps find first: serves `curl -fsSLO URL` from `$CI_DOC_RELEASE_DIR`
/// for URLs under the job's `$UNIK_RELEASE`, records each URL in `$CI_DOC_FETCHED`, and refuses
/// anything else (so a page that downloads differently fails loudly).
const CURL: &str = r#"#!/bin/sh
url=
for a in "$@"; do
    case $a in
    -*O*) case $a in -*[!fsSLO]*) echo "curl stand-in: unsupported option $a" >&2; exit 2 ;; esac ;;
    -*) echo "curl stand-in: unsupported option $a (only -fsSLO)" >&2; exit 2 ;;
    *) [ -z "$url" ] || { echo "curl stand-in: one URL only" >&2; exit 2; }; url=$a ;;
    esac
done
case $url in
"$UNIK_RELEASE"/*) ;;
*) echo "curl stand-in: $url is not under UNIK_RELEASE ($UNIK_RELEASE)" >&2; exit 2 ;;
esac
echo "$url" >>"$CI_DOC_FETCHED"
name=${url##*/}
[ -f "$CI_DOC_RELEASE_DIR/$name" ] || { echo "curl: (22) The requested URL returned error: 404" >&2; exit 22; }
cp "$CI_DOC_RELEASE_DIR/$name" "./$name"
"#;

/// A step of the job: its name (or what it `uses`) and its `run` script, if any.
#[derive(Debug)]
struct Step {
    name: String,
    uses: Option<String>,
    run: Option<String>,
}

/// The job in docs/ci.md: its `env` and its steps, from the page's one YAML block. Reads the
/// subset of YAML the page uses: `KEY: value` under `env:`, steps as `- name:` / `- uses:` items
/// with `run: |` blocks.
fn job() -> (Vec<(String, String)>, Vec<Step>) {
    let page = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ci.md")).unwrap();
    let yaml = page
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/ci.md has a ```yaml block");
    let indent = |l: &str| l.len() - l.trim_start().len();
    let unquote = |v: &str| v.trim().trim_matches('"').to_string();
    let lines: Vec<&str> = yaml.lines().collect();
    let (mut env, mut steps) = (Vec::new(), Vec::<Step>::new());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if t == "env:" && env.is_empty() {
            let at = indent(line);
            while i + 1 < lines.len() && indent(lines[i + 1]) > at {
                i += 1;
                let (k, v) = lines[i].trim().split_once(':').expect("env: KEY: value");
                env.push((k.to_string(), unquote(v)));
            }
        } else if let Some(item) = t.strip_prefix("- ") {
            let (key, value) = item.split_once(':').expect("a step item is KEY: value");
            let mut step = Step {
                name: String::new(),
                uses: None,
                run: None,
            };
            match key {
                "name" => step.name = unquote(value),
                "uses" => step.uses = Some(unquote(value)),
                _ => panic!("a step starting with {key}"),
            }
            steps.push(step);
        } else if t == "run: |" {
            let at = indent(line);
            let mut script = String::new();
            let mut body_indent = None;
            while i + 1 < lines.len() && (lines[i + 1].trim().is_empty() || indent(lines[i + 1]) > at) {
                i += 1;
                let l = lines[i];
                let cut = *body_indent.get_or_insert(indent(l));
                script.push_str(l.get(cut..).unwrap_or_default());
                script.push('\n');
            }
            steps.last_mut().expect("run: outside a step").run = Some(script);
        }
        i += 1;
    }
    (env, steps)
}

/// What running the job did: the step that failed (if one did), everything the steps printed,
/// the URLs fetched, and the runner's temporary directory.
struct Run {
    failed: Option<String>,
    output: String,
    fetched: String,
    runner_temp: PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs the job with `app` as the artifact `app.hvt`, from a release of the unik binary under
/// test whose `SHA256SUMS` `tamper` may spoil.
fn run_job(app: &Path, tamper: bool) -> Run {
    let (env, steps) = job();
    let dir = common::tempdir();
    let d = dir.path();
    let (work, release, stub, runner_temp) = (d.join("work"), d.join("release"), d.join("stub"), d.join("runner-temp"));
    for p in [&work, &release, &stub, &runner_temp] {
        std::fs::create_dir_all(p).unwrap();
    }
    // The release: the binary under test as unik-x86_64, with scripts/dist.sh's SHA256SUMS.
    std::fs::copy(common::unik_path(), release.join("unik-x86_64")).unwrap();
    let sums = Command::new("sha256sum").arg("unik-x86_64").current_dir(&release).output().unwrap();
    assert!(sums.status.success(), "sha256sum: {}", stderr(&sums));
    let mut sums = stdout(&sums);
    if tamper {
        sums = format!("{}{}", "0".repeat(64), &sums[64..]);
    }
    // A release has the aarch64 binary too; the job checks only what it downloaded.
    sums.push_str(&format!("{}  unik-aarch64\n", "1".repeat(64)));
    std::fs::write(release.join("SHA256SUMS"), sums).unwrap();
    let curl = stub.join("curl");
    std::fs::write(&curl, CURL).unwrap();
    let chmod = Command::new("chmod").arg("755").arg(&curl).status().unwrap();
    assert!(chmod.success());
    // actions/download-artifact's stand-in.
    std::fs::copy(app, work.join("app.hvt")).unwrap();

    let github_path = d.join("github-path");
    let fetched = d.join("fetched");
    std::fs::write(&github_path, "").unwrap();
    std::fs::write(&fetched, "").unwrap();
    let base_path = format!("{}:{}", stub.display(), std::env::var("PATH").unwrap_or_default());
    let mut output = String::new();
    let mut failed = None;
    let uses: Vec<&str> = steps.iter().filter_map(|s| s.uses.as_deref()).collect();
    assert_eq!(uses, ["actions/download-artifact@v4"], "the job's actions changed: {steps:?}");
    for step in &steps {
        let Some(script) = &step.run else { continue };
        if step.name == KVM_STEP {
            continue;
        }
        // As a runner does: each line a step appended to GITHUB_PATH goes before PATH, the
        // newest first.
        let added: Vec<String> = std::fs::read_to_string(&github_path)
            .unwrap()
            .lines()
            .rev()
            .map(String::from)
            .collect();
        let path = added.into_iter().chain([base_path.clone()]).collect::<Vec<_>>().join(":");
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            .current_dir(&work)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PATH", path)
            .env("HOME", d)
            .env("RUNNER_TEMP", &runner_temp)
            .env("GITHUB_PATH", &github_path)
            .env("CI_DOC_RELEASE_DIR", &release)
            .env("CI_DOC_FETCHED", &fetched)
            .output()
            .unwrap();
        output.push_str(&format!("== {}\n{}{}", step.name, stdout(&out), stderr(&out)));
        if !out.status.success() {
            failed = Some(step.name.clone());
            break;
        }
    }
    Run {
        failed,
        output,
        fetched: std::fs::read_to_string(&fetched).unwrap(),
        runner_temp,
        _dir: dir,
    }
}

#[test]
fn test_the_ci_doc_job_reads_as_a_job() {
    let (env, steps) = job();
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).filter(|n| !n.is_empty()).collect();
    assert_eq!(names, [KVM_STEP, "Install unik", "Boot the unikernel"]);
    assert!(steps.iter().all(|s| s.uses.is_some() != s.run.is_some()), "{steps:?}");
    let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["UNIK_RELEASE", "EXPECT"]);
    let boot = steps.last().and_then(|s| s.run.as_deref()).unwrap();
    assert!(boot.contains("unik boot --mem=64 --timeout=30s app.hvt"), "{boot}");
}

#[test]
fn test_the_ci_doc_job_passes_with_a_working_unikernel() {
    require_kvm!();
    let run = run_job(&guest("hello"), false);
    assert_eq!(run.failed, None, "{}", run.output);
    // Both files came from the release, the binary that ran is the one installed from it, and
    // the console is in the job's log.
    let (env, _) = job();
    let release = &env[0].1;
    assert_eq!(run.fetched, format!("{release}/unik-x86_64\n{release}/SHA256SUMS\n"));
    assert!(run.output.contains("unik-x86_64: OK"), "{}", run.output);
    assert!(run.runner_temp.join("bin/unik").is_file());
    assert!(run.output.contains("== Boot the unikernel\nunik "), "{}", run.output);
    assert!(run.output.contains("Hello, world\n"), "{}", run.output);
}

#[test]
fn test_the_ci_doc_job_fails_when_unik_refuses_the_unikernel() {
    require_kvm!();
    // Declares devices the job does not attach: unik refuses it (status 1).
    let run = run_job(&guest("missing"), false);
    assert_eq!(run.failed.as_deref(), Some("Boot the unikernel"), "{}", run.output);
    assert!(run.output.contains("::error::app.hvt ended with status 1"), "{}", run.output);
}

#[test]
fn test_the_ci_doc_job_fails_on_a_bad_checksum() {
    let run = run_job(&guest("hello"), true);
    assert_eq!(run.failed.as_deref(), Some("Install unik"), "{}", run.output);
    assert!(run.output.contains("unik-x86_64: FAILED"), "{}", run.output);
    assert!(!run.runner_temp.join("bin/unik").exists());
}
