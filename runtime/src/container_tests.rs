use std::process::Command;

use super::*;
use crate::bundle::tests::{bundle, config, hvt_elf};

/// Stands in for the monitor: blocks on the start fifo like the real one, then "runs" (sleeps).
struct FakeMonitor;

impl Spawner for FakeMonitor {
    fn spawn(
        &self,
        dir: &StateDir,
        _terminal: Option<&std::os::fd::OwnedFd>,
        hooks: &mut dyn FnMut(i32) -> Result<(), ContainerError>,
    ) -> Result<i32, ContainerError> {
        let child = Command::new("sh")
            .args(["-c", "read x < \"$1\"; exec sleep 30", "sh"])
            .arg(dir.fifo())
            .spawn()
            .map_err(ContainerError::io("spawn"))?;
        let pid = i32::try_from(child.id()).unwrap();
        hooks(pid)?;
        Ok(pid)
    }
}

struct FailingMonitor;

impl Spawner for FailingMonitor {
    fn spawn(
        &self,
        _dir: &StateDir,
        _terminal: Option<&std::os::fd::OwnedFd>,
        _hooks: &mut dyn FnMut(i32) -> Result<(), ContainerError>,
    ) -> Result<i32, ContainerError> {
        Err(ContainerError::Monitor("Could not open /dev/kvm: boom".into()))
    }
}

fn unikernel_bundle() -> tempfile::TempDir {
    bundle(
        config(&["/app.hvt"], serde_json::json!({ "x": "y" })),
        &[("/app.hvt", &hvt_elf(&[]))],
    )
}

fn wait_for(rt: &Runtime, id: &str, status: Status) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.state(id).unwrap().status != status {
        assert!(Instant::now() < deadline, "{id} never became {status}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn test_full_lifecycle() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let b = unikernel_bundle();
    let pid_file = b.path().join("init.pid");
    let created = rt
        .create(
            "c1",
            b.path(),
            &CreateOptions {
                pid_file: Some(&pid_file),
                ..Default::default()
            },
            &FakeMonitor,
        )
        .unwrap();
    let pid = created.pid.unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    let st = rt.state("c1").unwrap();
    assert_eq!((st.status, st.pid), (Status::Created, Some(pid)));
    assert_eq!(st.annotations["x"], "y");
    assert!(root.path().join("c1/vm.json").is_file());
    assert_eq!(rt.ps("c1").unwrap(), [pid]);

    rt.start("c1").unwrap();
    assert_eq!(rt.state("c1").unwrap().status, Status::Running);
    let err = rt.start("c1").unwrap_err().to_string();
    assert!(err.contains("running, not created"), "{err}");
    let err = rt.delete("c1", false).unwrap_err().to_string();
    assert!(err.contains("cannot delete container c1 that is not stopped: running"), "{err}");

    rt.pause("c1").unwrap();
    assert_eq!(rt.state("c1").unwrap().status, Status::Paused);
    rt.resume("c1").unwrap();
    assert_eq!(rt.state("c1").unwrap().status, Status::Running);

    rt.kill("c1", libc::SIGKILL).unwrap();
    wait_for(&rt, "c1", Status::Stopped);
    assert!(rt.ps("c1").unwrap().is_empty());
    let err = rt.kill("c1", libc::SIGTERM).unwrap_err().to_string();
    assert!(err.contains("container not running"), "{err}");
    assert_eq!(rt.list().unwrap().len(), 1);
    rt.delete("c1", false).unwrap();
    let err = rt.state("c1").unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert!(rt.list().unwrap().is_empty());
}

#[test]
fn test_force_delete_of_a_created_container() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let b = unikernel_bundle();
    let pid = rt
        .create("c2", b.path(), &CreateOptions::default(), &FakeMonitor)
        .unwrap()
        .pid
        .unwrap();
    rt.delete("c2", true).unwrap();
    assert!(!root.path().join("c2").exists());
    let start = process::start_time(pid);
    assert!(start.is_none_or(|s| !process::is_alive(pid, s)), "monitor survived delete --force");
}

#[test]
fn test_failed_create_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let b = unikernel_bundle();
    let err = rt.create("c3", b.path(), &CreateOptions::default(), &FailingMonitor).unwrap_err();
    assert_eq!(err.to_string(), "Could not open /dev/kvm: boom");
    assert!(!root.path().join("c3").exists());
    let plain = bundle(config(&["/bin/true"], serde_json::json!({})), &[("/bin/true", b"#!")]);
    let err = rt.create("c4", plain.path(), &CreateOptions::default(), &FakeMonitor).unwrap_err();
    assert!(err.to_string().contains("is not a unikernel"), "{err}");
    assert!(!root.path().join("c4").exists());
    rt.create("c5", b.path(), &CreateOptions::default(), &FakeMonitor).unwrap();
    let err = rt.create("c5", b.path(), &CreateOptions::default(), &FakeMonitor).unwrap_err();
    assert_eq!(err.to_string(), "container with id c5 already exists");
    rt.delete("c5", true).unwrap();
    rt.create("../x", b.path(), &CreateOptions::default(), &FakeMonitor).unwrap_err();
}

#[test]
fn test_commands_on_missing_containers() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    for err in [
        rt.start("nope").unwrap_err(),
        rt.kill("nope", 15).unwrap_err(),
        rt.delete("nope", false).unwrap_err(),
        rt.state("nope").unwrap_err(),
    ] {
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
    // runc's `delete --force` of a missing container succeeds (the shim's cleanup relies on it).
    rt.delete("nope", true).unwrap();
}

#[test]
fn test_start_after_the_monitor_died() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let b = unikernel_bundle();
    rt.create("c6", b.path(), &CreateOptions::default(), &FakeMonitor).unwrap();
    rt.kill("c6", libc::SIGKILL).unwrap();
    wait_for(&rt, "c6", Status::Stopped);
    let err = rt.start("c6").unwrap_err().to_string();
    assert!(err.contains("stopped, not created"), "{err}");
}
