use std::process::Command;

use super::*;
use crate::bundle::tests::{bundle, config, hvt_elf};
use crate::bundle::{CPUS, KERNEL, KIND};
use crate::spawn::Monitor;

/// Stands in for the monitor: blocks on the start fifo like the real one, then "runs" (sleeps).
struct FakeMonitor;

impl Spawner for FakeMonitor {
    fn spawn(
        &self,
        dir: &StateDir,
        _terminal: Option<&std::os::fd::OwnedFd>,
        hooks: &mut dyn FnMut(i32) -> Result<(), ContainerError>,
    ) -> Result<Monitor, ContainerError> {
        let child = Command::new("sh")
            .args(["-c", "read x < \"$1\"; exec sleep 30", "sh"])
            .arg(dir.fifo())
            .spawn()
            .map_err(ContainerError::io("spawn"))?;
        let pid = i32::try_from(child.id()).unwrap();
        hooks(pid)?;
        Ok(Monitor::without_sync(pid))
    }
}

struct FailingMonitor;

impl Spawner for FailingMonitor {
    fn spawn(
        &self,
        _dir: &StateDir,
        _terminal: Option<&std::os::fd::OwnedFd>,
        _hooks: &mut dyn FnMut(i32) -> Result<(), ContainerError>,
    ) -> Result<Monitor, ContainerError> {
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
    assert!(
        root.path().join("c2/state.json").is_file(),
        "the state is not where the check looks"
    );
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
    let err = rt.create("../x", b.path(), &CreateOptions::default(), &FakeMonitor).unwrap_err();
    assert!(matches!(err, ContainerError::InvalidId(ref id) if id == "../x"), "{err}");
}

#[test]
fn test_commands_on_missing_containers() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    for err in [
        rt.start("nope").unwrap_err(),
        rt.kill("nope", 15).unwrap_err(),
        rt.kill_all("nope", 15).unwrap_err(),
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

/// A monitor that takes its time to reach the start gate after reporting.
struct SlowMonitor;

impl Spawner for SlowMonitor {
    fn spawn(
        &self,
        dir: &StateDir,
        _terminal: Option<&std::os::fd::OwnedFd>,
        hooks: &mut dyn FnMut(i32) -> Result<(), ContainerError>,
    ) -> Result<Monitor, ContainerError> {
        let child = Command::new("sh")
            .args(["-c", "sleep 0.3; read x < \"$1\"; exec sleep 30", "sh"])
            .arg(dir.fifo())
            .spawn()
            .map_err(ContainerError::io("spawn"))?;
        let pid = i32::try_from(child.id()).unwrap();
        hooks(pid)?;
        Ok(Monitor::without_sync(pid))
    }
}

/// A `create` that dies (here: panics) after the monitor started, before recording `created`.
struct CreatorDies;

impl Spawner for CreatorDies {
    fn spawn(
        &self,
        dir: &StateDir,
        terminal: Option<&std::os::fd::OwnedFd>,
        hooks: &mut dyn FnMut(i32) -> Result<(), ContainerError>,
    ) -> Result<Monitor, ContainerError> {
        let _pid = FakeMonitor.spawn(dir, terminal, hooks)?;
        panic!("create killed");
    }
}

fn created(rt: &Runtime, id: &str) -> (tempfile::TempDir, i32) {
    let b = unikernel_bundle();
    let pid = rt
        .create(id, b.path(), &CreateOptions::default(), &FakeMonitor)
        .unwrap()
        .pid
        .unwrap();
    (b, pid)
}

fn err_text(r: Result<(), ContainerError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn test_delete_of_a_created_container_kills_its_monitor() {
    // As runc: containerd's shim deletes a task that never started without --force.
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let (_b, pid) = created(&rt, "c0");
    assert!(root.path().join("c0/state.json").is_file());
    rt.delete("c0", false).unwrap();
    // SAFETY: signal 0 only probes; the monitor was our child and is reaped by now or a zombie.
    let alive = unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid);
    assert!(!alive, "monitor {pid} survived delete");
    assert!(!root.path().join("c0").exists());
    assert!(err_text(rt.delete("c0", false)).contains("does not exist"));
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

#[test]
fn test_illegal_transitions() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let (_b, _pid) = created(&rt, "t1");
    // created: no pause, no resume.
    assert_eq!(err_text(rt.pause("t1")), "container t1: container not running");
    assert_eq!(err_text(rt.resume("t1")), "container t1: container not paused");
    rt.start("t1").unwrap();
    // running: no start, no resume.
    let err = err_text(rt.start("t1"));
    assert_eq!(
        err,
        "cannot start an already running container: container t1 is running, not created"
    );
    assert_eq!(err_text(rt.resume("t1")), "container t1: container not paused");
    rt.pause("t1").unwrap();
    // paused: no start, no second pause, no delete; kill is allowed.
    let err = err_text(rt.start("t1"));
    assert!(err.starts_with("cannot start a container in the paused state"), "{err}");
    assert_eq!(err_text(rt.pause("t1")), "container t1: container not running");
    assert!(err_text(rt.delete("t1", false)).contains("not stopped: paused"));
    rt.kill("t1", libc::SIGKILL).unwrap();
    wait_for(&rt, "t1", Status::Stopped);
    // stopped: nothing but delete.
    let err = err_text(rt.start("t1"));
    assert!(err.starts_with("cannot start a container that has stopped"), "{err}");
    for err in [rt.kill("t1", 9), rt.pause("t1")] {
        assert!(err_text(err).contains("container not running"));
    }
    // runc's `kill --all` of a stopped container signals no process and succeeds.
    rt.kill_all("t1", libc::SIGKILL).unwrap();
    assert_eq!(err_text(rt.resume("t1")), "container t1: container not paused");
    rt.delete("t1", false).unwrap();
}

#[test]
fn test_start_time_mismatch_reads_as_stopped() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let (_b, pid) = created(&rt, "t2");
    let dir = StateDir::open(root.path(), "t2").unwrap();
    let mut st = dir.load().unwrap();
    let start = st.pid_start_time.unwrap();
    // As if the monitor died and its pid now belongs to another process.
    st.pid_start_time = Some(start + 1);
    dir.save(&st).unwrap();
    assert_eq!(rt.state("t2").unwrap().status, Status::Stopped);
    assert!(rt.ps("t2").unwrap().is_empty());
    assert!(err_text(rt.kill("t2", 15)).contains("container not running"));
    rt.kill_all("t2", libc::SIGKILL).unwrap();
    // delete must not signal the "other" process.
    rt.delete("t2", false).unwrap();
    assert!(
        process::is_alive(pid, start),
        "delete signalled a process that is not the container's"
    );
    kill_and_wait(Some(pid), Some(start));
}

#[test]
fn test_start_waits_for_a_monitor_still_on_its_way_to_the_gate() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let b = unikernel_bundle();
    rt.create("t3", b.path(), &CreateOptions::default(), &SlowMonitor).unwrap();
    assert!(root.path().join("t3/exec.fifo").exists(), "no start gate where the check looks");
    rt.start("t3").unwrap();
    assert_eq!(rt.state("t3").unwrap().status, Status::Running);
    assert!(!root.path().join("t3/exec.fifo").exists());
    rt.delete("t3", true).unwrap();
}

#[test]
fn test_a_create_that_died_leaves_a_stopped_container_and_no_monitor() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let b = unikernel_bundle();
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.create("t4", b.path(), &CreateOptions::default(), &CreatorDies)
    }));
    // It died where CreatorDies kills it, not somewhere else.
    let payload = crashed.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"create killed"));
    let st = StateDir::open(root.path(), "t4").unwrap().load().unwrap();
    assert_eq!(st.status, Status::Creating);
    let (pid, start) = (st.pid.unwrap(), st.pid_start_time.unwrap());
    assert!(process::is_alive(pid, start));
    // Stopped once nobody holds the lock: a child another test forks in this process holds a
    // copy of every descriptor until it execs, so the lock may stay taken for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rt.state("t4").unwrap().status == Status::Creating && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(rt.state("t4").unwrap().status, Status::Stopped);
    assert!(err_text(rt.start("t4")).contains("that has stopped"));
    rt.delete("t4", false).unwrap();
    assert!(!process::is_alive(pid, start), "the orphaned monitor survived delete");
    assert!(!root.path().join("t4").exists());
}

#[test]
fn test_a_create_in_progress_reads_as_creating() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let (dir, lock) = StateDir::create(root.path(), "t5").unwrap();
    let mut st = unikernel_state("t5");
    st.status = Status::Creating;
    dir.save(&st).unwrap();
    assert_eq!(rt.state("t5").unwrap().status, Status::Creating);
    assert_eq!(rt.list().unwrap()[0].status, Status::Creating);
    drop(lock);
    // As in the test above: a sibling test's fork may hold a copy of the lock's descriptor until
    // it execs (a slow host, such as the emulated arm64 one, shows it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rt.state("t5").unwrap().status == Status::Creating && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(rt.state("t5").unwrap().status, Status::Stopped);
    rt.delete("t5", false).unwrap();
}

fn unikernel_state(id: &str) -> State {
    State {
        oci_version: OCI_VERSION.into(),
        id: id.into(),
        status: Status::Created,
        pid: None,
        pid_start_time: None,
        bundle: "/b".into(),
        rootfs: "/b/rootfs".into(),
        created: rfc3339(SystemTime::now()),
        annotations: Default::default(),
        owner: String::new(),
    }
}

#[test]
fn test_pause_follows_the_process() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let (_b, pid) = created(&rt, "t6");
    rt.start("t6").unwrap();
    rt.pause("t6").unwrap();
    let start = process::start_time(pid).unwrap();
    assert!(process::is_stopped(pid, start));
    assert_eq!(rt.state("t6").unwrap().status, Status::Paused);
    // Continued behind our back: running again.
    let fd = process::pidfd(pid, start).unwrap();
    process::send_signal(&fd, libc::SIGCONT).unwrap();
    wait_for(&rt, "t6", Status::Running);
    rt.pause("t6").unwrap();
    // A catchable signal to a paused container wakes it so it can act on it.
    rt.kill("t6", libc::SIGTERM).unwrap();
    wait_for(&rt, "t6", Status::Stopped);
    rt.delete("t6", false).unwrap();
}

#[test]
fn test_state_json() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let (b, pid) = created(&rt, "t7");
    let json = rt.state_json("t7").unwrap();
    assert_eq!(
        (json["status"].as_str(), json["pid"].as_i64()),
        (Some("created"), Some(i64::from(pid)))
    );
    assert_eq!(json["rootfs"].as_str().unwrap(), b.path().join("rootfs").to_str().unwrap());
    assert!(json["created"].as_str().unwrap().ends_with('Z'));
    rt.delete("t7", true).unwrap();
    assert!(rt.state_json("t7").unwrap_err().to_string().contains("does not exist"));
}

#[test]
fn test_what_a_dead_create_or_a_broken_state_leaves_can_be_cleared() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    // A create that died before its first save: only the directory and its lock.
    std::fs::create_dir(root.path().join("s1")).unwrap();
    std::fs::write(root.path().join("s1/lock"), b"").unwrap();
    let (_b, _pid) = created(&rt, "s1");
    rt.delete("s1", true).unwrap();
    std::fs::create_dir(root.path().join("s2")).unwrap();
    std::fs::write(root.path().join("s2/lock"), b"").unwrap();
    rt.delete("s2", true).unwrap();
    assert!(!root.path().join("s2").exists(), "delete --force left the stale directory");
    // A state.json that cannot be read: an error, except for delete --force, which clears it.
    let (_b, pid) = created(&rt, "s3");
    std::fs::write(root.path().join("s3/state.json"), b"{\"truncated").unwrap();
    assert!(err_text(rt.delete("s3", false)).contains("state.json"));
    rt.delete("s3", true).unwrap();
    assert!(!root.path().join("s3").exists());
    // SAFETY: killing and reaping the fake monitor this test started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

#[test]
fn test_a_terminal_without_a_console_socket_is_refused_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let mut c = config(&["/app.hvt"], serde_json::json!({}));
    c["process"]["terminal"] = serde_json::json!(true);
    let b = bundle(c, &[("/app.hvt", &hvt_elf(&[]))]);
    let err = rt.create("tty1", b.path(), &CreateOptions::default(), &FakeMonitor).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot allocate tty if unik will detach without setting console socket"),
        "{err}"
    );
    assert!(!root.path().join("tty1").exists(), "create left its state behind");
    // In the foreground (`run` without -d) the terminal is the caller's: no socket needed.
    let fg = CreateOptions {
        foreground: true,
        ..Default::default()
    };
    rt.create("tty2", b.path(), &fg, &FakeMonitor).unwrap();
    rt.delete("tty2", true).unwrap();
}

#[test]
fn test_signal_0_probes_whether_the_container_lives() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::new(root.path()).without_cgroups();
    let (_b, _pid) = created(&rt, "p0");
    rt.kill("p0", 0).unwrap();
    assert_eq!(rt.state("p0").unwrap().status, Status::Created, "signal 0 changed the container");
    rt.start("p0").unwrap();
    rt.kill("p0", 0).unwrap();
    rt.pause("p0").unwrap();
    rt.kill("p0", 0).unwrap();
    assert_eq!(
        rt.state("p0").unwrap().status,
        Status::Paused,
        "signal 0 resumed a paused container"
    );
    rt.kill("p0", libc::SIGKILL).unwrap();
    wait_for(&rt, "p0", Status::Stopped);
    assert!(err_text(rt.kill("p0", 0)).contains("container not running"));
    rt.delete("p0", false).unwrap();
    assert!(err_text(rt.kill("p0", 0)).contains("does not exist"));
}

/// A cgroup v2 tree under `root` offering `controllers`, and what the kernel would give a new
/// cgroup `rel` of them.
fn fake_v2(root: &Path, controllers: &str, rel: &str, files: &[(&str, &str)]) {
    std::fs::write(root.join("cgroup.controllers"), controllers).unwrap();
    std::fs::write(root.join("cgroup.subtree_control"), controllers).unwrap();
    std::fs::create_dir_all(root.join(rel)).unwrap();
    for (file, value) in files {
        std::fs::write(root.join(rel).join(file), value).unwrap();
    }
}

fn with_resources(cgroups_path: &str, resources: serde_json::Value, annotations: serde_json::Value) -> tempfile::TempDir {
    let mut c = config(&["/app.hvt"], annotations);
    c["linux"]["cgroupsPath"] = serde_json::json!(cgroups_path);
    c["linux"]["resources"] = resources;
    bundle(c, &[("/app.hvt", &hvt_elf(&[]))])
}

#[test]
fn test_create_and_update_apply_the_resources() {
    let root = tempfile::tempdir().unwrap();
    let cg = tempfile::tempdir().unwrap();
    let files = [
        ("memory.max", "max"),
        ("cpu.max", "max 100000"),
        ("cpu.weight", "100"),
        ("pids.max", "max"),
    ];
    fake_v2(cg.path(), "cpu memory pids", "unik/r1", &files);
    let rt = Runtime::new(root.path()).with_cgroup_root(cg.path());
    let b = with_resources(
        "/unik/r1",
        serde_json::json!({ "memory": { "limit": 64 << 20 }, "cpu": { "shares": 512, "quota": 50000, "period": 100_000 }, "pids": { "limit": 50 } }),
        serde_json::json!({}),
    );
    let state = rt.create("r1", b.path(), &CreateOptions::default(), &FakeMonitor).unwrap();
    let leaf = cg.path().join("unik/r1");
    let read = |f: &str| std::fs::read_to_string(leaf.join(f)).unwrap();
    assert_eq!(read("cgroup.procs"), state.pid.unwrap().to_string());
    assert_eq!(read("memory.max"), (96u64 << 20).to_string());
    assert_eq!(read("cpu.max"), "50000 100000");
    assert_eq!(read("cpu.weight"), "20");
    assert_eq!(read("pids.max"), "50");

    let update: oci_spec::runtime::LinuxResources =
        serde_json::from_value(serde_json::json!({ "cpu": { "quota": 25000, "period": 100_000 }, "pids": { "limit": 40 } })).unwrap();
    rt.update("r1", &update).unwrap();
    assert_eq!(read("cpu.max"), "25000 100000");
    assert_eq!(read("pids.max"), "40");
    // Refused at update too, naming the field, changing nothing.
    let refused: oci_spec::runtime::LinuxResources =
        serde_json::from_value(serde_json::json!({ "blockIO": { "weight": 500 }, "pids": { "limit": 30 } })).unwrap();
    let err = rt.update("r1", &refused).unwrap_err().to_string();
    assert!(err.starts_with("linux.resources.blockIO.weight: "), "{err}");
    assert_eq!(read("pids.max"), "40");
    rt.delete("r1", true).unwrap();
}

#[test]
fn test_refused_resources_leave_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let cg = tempfile::tempdir().unwrap();
    fake_v2(cg.path(), "cpu memory", "unik", &[]);
    let rt = Runtime::new(root.path()).with_cgroup_root(cg.path());
    // Refused before the monitor exists: a field unik does not apply, a pids limit below the
    // monitor's tasks (a Linux-boot guest with 2 vCPUs runs 4 with KVM's worker), a limit without a cgroup.
    let linux = serde_json::json!({ KERNEL: "/app.hvt", KIND: "linux", CPUS: "2" });
    for (path, resources, annotations, error) in [
        (
            "/unik/r2",
            serde_json::json!({ "blockIO": { "weight": 500 } }),
            serde_json::json!({}),
            "linux.resources.blockIO.weight: ",
        ),
        (
            "/unik/r2",
            serde_json::json!({ "pids": { "limit": 3 } }),
            linux.clone(),
            "linux.resources.pids.limit: 3 leaves no room for the monitor's 4 tasks",
        ),
        (
            "",
            serde_json::json!({ "pids": { "limit": 5 } }),
            serde_json::json!({}),
            "linux.resources.pids.limit is set but linux.cgroupsPath is not",
        ),
        // After the monitor exists: the host has no pids controller.
        (
            "/unik/r2",
            serde_json::json!({ "pids": { "limit": 4 } }),
            linux,
            "linux.resources.pids.limit: this host cannot apply it: no pids.max in cgroup unik/r2",
        ),
    ] {
        let b = with_resources(path, resources, annotations);
        let err = rt
            .create("r2", b.path(), &CreateOptions::default(), &FakeMonitor)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(error), "{err}");
        assert!(!root.path().join("r2").exists(), "{error}: state left behind");
        assert!(!cg.path().join("unik/r2").exists(), "{error}: cgroup left behind");
    }
}
