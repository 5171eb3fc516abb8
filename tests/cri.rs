//! Kubernetes through CRI: a private containerd (Debian's 1.6) with its CRI plugin and a runtime
//! handler `unik` (`runtime_type = "io.containerd.runc.v2"`, `BinaryName` = the unik binary),
//! driven the way the kubelet drives it, by a real CRI client: tests/cri/cri.py, whose gRPC
//! stubs grpcio-tools generates at test time from the CRI protocol definition the k8s-cri crate
//! ships (tests/cri/proto fetches it with `cargo metadata`). The pod's sandbox (pause)
//! container is an ordinary one, which unik hands to runc; the unikernels run in the pod. Pod
//! networking is Debian's containernetworking-plugins (bridge + host-local).
//!
//! containerd runs inside a network namespace the test creates (entered with `nsenter`, not
//! `ip netns exec`, which remounts /sys and hides the cgroup mounts runc needs), with its root,
//! state, socket, CNI configuration and images in a temporary directory; the images are built
//! here and imported with `ctr`, so nothing is pulled. scripts/setup.sh installs containerd,
//! the CNI plugins and the client's Python environment.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::guests::guest;
use common::netns::NetNs;
use common::{stderr, stdout};
use serde_json::{Value, json};

/// The state root containerd's runc shim gives unik for the CRI's namespace (`--root`).
const SHIM_ROOT: &str = "/run/containerd/runc/k8s.io";
/// The pause image the CRI plugin starts each pod's sandbox from (built by the test).
const PAUSE_IMAGE: &str = "localhost/unik-pause:1";
/// The image of the test unikernels (built by the test).
const UNIK_IMAGE: &str = "localhost/unik-guests:1";
/// The pods' subnet, on the bridge `cni0` inside containerd's network namespace.
const POD_SUBNET: &str = "10.88.7.0/24";
const POD_GATEWAY: &str = "10.88.7.1";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the client's environment (grpcio-tools), made by scripts/setup.sh.
fn python() -> PathBuf {
    let python = std::env::var_os("UNIK_CRI_PYTHON").map_or_else(
        || {
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .expect("the target directory")
                .join("cri-venv/bin/python")
        },
        PathBuf::from,
    );
    assert!(
        python.is_file(),
        "no Python environment for the CRI client at {} (scripts/setup.sh creates it)",
        python.display()
    );
    python
}

fn cri_py() -> PathBuf {
    repo().join("tests/cri/cri.py")
}

/// The CRI's `api.proto` (`runtime.v1`) as the k8s-cri crate ships it: `cargo metadata` on
/// tests/cri/proto fetches the crate (pinned by its Cargo.lock) and says where it is.
fn cri_proto() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = repo().join("tests/cri/proto/Cargo.toml");
    let out = Command::new(cargo)
        .args(["metadata", "--locked", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata on {}: {}", manifest.display(), stderr(&out));
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let crate_manifest = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "k8s-cri"))
        .and_then(|p| p["manifest_path"].as_str())
        .expect("k8s-cri among the packages cargo metadata lists");
    let proto = Path::new(crate_manifest).with_file_name("proto/v1.proto");
    assert!(proto.is_file(), "k8s-cri ships no {}", proto.display());
    proto
}

/// The client's stubs, generated once per test process from the proto.
fn stubs() -> &'static Path {
    static STUBS: OnceLock<PathBuf> = OnceLock::new();
    STUBS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cri-stubs");
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(python())
            .arg(cri_py())
            .arg("gen")
            .arg(cri_proto())
            .arg(&dir)
            .output()
            .expect("run the CRI client");
        assert!(out.status.success(), "generating the CRI stubs: {}", stderr(&out));
        dir
    })
}

/// A private containerd with the CRI plugin, in its own network namespace.
struct Cri {
    ns: NetNs,
    dir: tempfile::TempDir,
    daemon: Child,
    /// The pods this test ran, stopped and removed on drop if the test did not.
    pods: Mutex<Vec<String>>,
    /// Where a pod's sandbox cgroups go (`cgroup_parent`), removed on drop.
    cgroup_parent: String,
}

impl Cri {
    fn start() -> Cri {
        let ns = NetNs::new();
        let dir = common::tempdir();
        let d = dir.path().to_path_buf();
        let cgroup_parent = format!("/unik-cri-{}", ns.name);
        std::fs::create_dir_all(d.join("cni/net.d")).unwrap();
        std::fs::create_dir_all(d.join("logs")).unwrap();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Lowering a process's oom_score_adj is refused on this kind of host.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.unik]
      runtime_type = "io.containerd.runc.v2"
      pod_annotations = ["dev.unik.*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.unik.options]
        BinaryName = "{unik}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
"#,
            d = d.display(),
            unik = common::unik_path().display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let cni = json!({
            "cniVersion": "0.4.0",
            "name": "unik-pods",
            "plugins": [{
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": d.join("cni/ipam"),
                    "ranges": [[{ "subnet": POD_SUBNET }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            }]
        });
        std::fs::write(d.join("cni/net.d/10-unik.conflist"), cni.to_string()).unwrap();
        assert!(
            Path::new("/usr/lib/cni/bridge").is_file(),
            "the CNI plugins are not installed (scripts/setup.sh installs containernetworking-plugins)"
        );
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let daemon = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .args(["containerd", "--config", d.join("config.toml").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd is not installed (scripts/setup.sh installs it)");
        let cri = Cri {
            ns,
            dir,
            daemon,
            pods: Mutex::new(Vec::new()),
            cgroup_parent,
        };
        // A liveness deadline (a daemon that never answers fails the test instead of hanging
        // it), not a speed check.
        let deadline = Instant::now() + Duration::from_secs(60);
        while cri.call("Version", &json!({})).is_err() {
            assert!(Instant::now() < deadline, "containerd's CRI did not start: {}", cri.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        cri.import_images();
        cri
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// One CRI call: the response, or the gRPC error ("rpc error: CODE: DETAILS").
    fn call(&self, method: &str, request: &Value) -> Result<Value, String> {
        let mut child = Command::new(python())
            .arg(cri_py())
            .arg("call")
            .arg(stubs())
            .arg(self.sock())
            .arg(method)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the CRI client");
        child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => Ok(serde_json::from_slice(&out.stdout).expect("the client's JSON")),
            Some(3) => Err(stderr(&out).trim().to_string()),
            _ => panic!("the CRI client failed on {method}: {}{}", stdout(&out), stderr(&out)),
        }
    }

    /// A CRI call that must succeed.
    fn ok(&self, method: &str, request: &Value) -> Value {
        self.call(method, request)
            .unwrap_or_else(|e| panic!("{method}: {e}\ncontainerd.log:\n{}", self.log()))
    }

    /// Builds the pause image (busybox's `sleep`, an ordinary container) and the image holding
    /// the test unikernels, and imports both into the CRI's namespace.
    fn import_images(&self) {
        let d = self.dir.path();
        let pause = d.join("image-pause");
        std::fs::create_dir_all(pause.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", pause.join("bin/busybox")).expect("no /bin/busybox (scripts/setup.sh installs busybox-static)");
        let guests = d.join("image-guests");
        std::fs::create_dir_all(&guests).unwrap();
        for name in ["hello", "net"] {
            std::fs::copy(guest(name), guests.join(format!("{name}.hvt"))).unwrap();
        }
        for (name, rootfs, entrypoint) in [
            (PAUSE_IMAGE, &pause, r#"["/bin/busybox", "sleep", "2147483647"]"#),
            (UNIK_IMAGE, &guests, r#"["/hello.hvt"]"#),
        ] {
            let tar = rootfs.with_extension("tar");
            let out = Command::new(python())
                .arg(cri_py())
                .arg("image")
                .arg(&tar)
                .arg(name)
                .arg(rootfs)
                .arg(entrypoint)
                .output()
                .unwrap();
            assert!(out.status.success(), "building image {name}: {}", stderr(&out));
            let out = Command::new("ctr")
                .arg("--address")
                .arg(self.sock())
                .args(["-n", "k8s.io", "images", "import", "--snapshotter", "native"])
                .arg(&tar)
                .output()
                .unwrap();
            assert!(out.status.success(), "ctr images import {name}: {}", stderr(&out));
        }
    }

    /// Runs pod `name` with the `unik` runtime handler and the pod's `annotations` (a
    /// Kubernetes pod's metadata.annotations).
    fn run_pod(&self, name: &str, annotations: &Value) -> Pod {
        let config = json!({
            "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"), "attempt": 0 },
            "log_directory": self.dir.path().join("logs").join(name),
            "linux": { "cgroup_parent": self.cgroup_parent },
            "annotations": annotations,
        });
        let resp = self.ok("RunPodSandbox", &json!({ "config": config, "runtime_handler": "unik" }));
        let id = resp["pod_sandbox_id"].as_str().unwrap().to_string();
        self.pods.lock().unwrap().push(id.clone());
        Pod {
            id,
            log_dir: self.dir.path().join("logs").join(name),
            config,
        }
    }

    /// Creates and starts container `name` of the unikernel image in `pod`: `args` after the
    /// kernel `/KERNEL.hvt`, with `extra` (more fields of its `ContainerConfig`). Returns its id.
    fn run_container(&self, pod: &Pod, name: &str, kernel: &str, args: &[&str], extra: Value) -> String {
        let mut config = json!({
            "metadata": { "name": name },
            "image": { "image": UNIK_IMAGE },
            "command": [format!("/{kernel}.hvt")],
            "args": args,
            "log_path": format!("{name}.log"),
        });
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            config.extend(extra.clone());
        }
        let resp = self.ok(
            "CreateContainer",
            &json!({ "pod_sandbox_id": pod.id, "config": config, "sandbox_config": pod.config }),
        );
        let id = resp["container_id"].as_str().unwrap().to_string();
        self.ok("StartContainer", &json!({ "container_id": id }));
        id
    }

    fn status(&self, container: &str) -> Value {
        self.ok("ContainerStatus", &json!({ "container_id": container }))["status"].clone()
    }

    /// Waits until the container has exited; returns its status.
    fn wait_exited(&self, container: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status(container);
            if status["state"] == "CONTAINER_EXITED" {
                return status;
            }
            assert!(Instant::now() < deadline, "container never exited: {status}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The container's console as the CRI logged it: the text of each line of the CRI log
    /// format (`TIMESTAMP stdout F TEXT`).
    fn console(&self, pod: &Pod, container: &str) -> String {
        let path = pod.log_dir.join(format!("{container}.log"));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3))
            .map(|t| format!("{t}\n"))
            .collect()
    }

    /// Waits until the container's console holds `needle`.
    fn wait_console(&self, pod: &Pod, container: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.console(pod, container).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log of {container}: {}",
                self.console(pod, container)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops and removes the pod (its containers with it).
    fn remove_pod(&self, pod: &Pod) {
        self.ok("StopPodSandbox", &json!({ "pod_sandbox_id": pod.id }));
        self.ok("RemovePodSandbox", &json!({ "pod_sandbox_id": pod.id }));
        self.pods.lock().unwrap().retain(|p| *p != pod.id);
    }
}

/// A pod the test runs.
struct Pod {
    id: String,
    /// Its `PodSandboxConfig` (the kubelet sends it with every call about the pod).
    config: Value,
    /// Where the CRI writes its containers' logs.
    log_dir: PathBuf,
}

impl Drop for Cri {
    fn drop(&mut self) {
        // What a failed test left: the pods go first, so no shim or monitor outlives the daemon.
        for pod in std::mem::take(&mut *self.pods.lock().unwrap()) {
            let _ = self.call("StopPodSandbox", &json!({ "pod_sandbox_id": pod }));
            let _ = self.call("RemovePodSandbox", &json!({ "pod_sandbox_id": pod }));
        }
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(i32::try_from(self.daemon.id()).unwrap_or(0), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // The pods' parent cgroup is the kubelet's to remove: under cgroup v2 at the root, under
        // v1 in each hierarchy.
        let name = self.cgroup_parent.trim_start_matches('/');
        let mut dirs = vec![Path::new("/sys/fs/cgroup").join(name)];
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            dirs.extend(hierarchies.flatten().map(|h| h.path().join(name)));
        }
        for dir in dirs.into_iter().filter(|d| d.is_dir()) {
            let _ = Command::new("find").arg(&dir).args(["-depth", "-type", "d", "-delete"]).status();
        }
    }
}

/// Asserts that unik (and runc under it) keeps no state for `ids`.
fn assert_no_state_left(ids: &[&str]) {
    for id in ids {
        for dir in [Path::new(SHIM_ROOT).join(id), Path::new(SHIM_ROOT).join("runc").join(id)] {
            assert!(!dir.exists(), "state left behind: {}", dir.display());
        }
    }
}

/// The memory cgroup limit of container `id` in `parent`, cgroup v2 or v1.
fn memory_limit(parent: &str, id: &str) -> Option<String> {
    let parent = parent.trim_start_matches('/');
    [
        format!("/sys/fs/cgroup/{parent}/{id}/memory.max"),
        format!("/sys/fs/cgroup/memory/{parent}/{id}/memory.limit_in_bytes"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|v| v.trim().to_string())
}

#[test]
fn test_cri_pod_runs_unikernels_with_their_memory_console_and_exit_status() {
    require_kvm!();
    let cri = Cri::start();
    let version = cri.ok("Version", &json!({}));
    assert_eq!(version["runtime_name"], "containerd", "{version}");
    assert_eq!(version["runtime_api_version"], "v1", "{version}");

    let pod = cri.run_pod("unik-pod", &json!({}));
    let sandbox = cri.ok("PodSandboxStatus", &json!({ "pod_sandbox_id": pod.id }))["status"].clone();
    assert_eq!(sandbox["state"], "SANDBOX_READY", "{sandbox}");
    assert_eq!(sandbox["runtime_handler"], "unik", "{sandbox}");
    // The pause container is no unikernel: unik handed it to runc, whose state is under unik's
    // root.
    assert!(
        Path::new(SHIM_ROOT).join("runc").join(&pod.id).join("state.json").is_file(),
        "the sandbox is not runc's"
    );
    assert!(!Path::new(SHIM_ROOT).join(&pod.id).exists(), "unik kept the sandbox itself");

    // A unikernel that ends by itself: console in the CRI log, its status as the exit code, and
    // the memory limit is the guest's memory. It shares the pod's pid namespace (the CRI's
    // default; a pod's `shareProcessNamespace`), so once it has exited the shim kills "all its
    // processes" (`kill --all`).
    let memory = json!({ "memory_limit_in_bytes": 64 << 20 });
    let hello = cri.run_container(
        &pod,
        "hello",
        "hello",
        &["meminfo", "exit=7"],
        json!({ "linux": { "resources": memory } }),
    );
    let status = cri.wait_exited(&hello);
    assert_eq!(status["exit_code"], 7, "{status}");
    let console = cri.console(&pod, "hello");
    assert!(console.starts_with("Hello, world\ncmdline: meminfo exit=7\n"), "{console}");
    assert!(console.contains(&format!("mem_size: {}\n", 64 << 20)), "{console}");

    // A unikernel that runs until stopped: its cgroup is the guest's memory plus the monitor's
    // 32 MiB; exec is refused with unik's reason; StopContainer (SIGTERM) stops the guest
    // cleanly, and the monitor reports it as a signal's death: 143. It has a pid namespace of
    // its own, as the kubelet asks by default.
    let sleeper = cri.run_container(
        &pod,
        "sleeper",
        "hello",
        &["meminfo", "sleep=600000"],
        json!({ "linux": {
            "resources": memory,
            "security_context": { "namespace_options": { "pid": "CONTAINER" } },
        } }),
    );
    cri.wait_console(&pod, "sleeper", "mem_size: ");
    assert_eq!(cri.status(&sleeper)["state"], "CONTAINER_RUNNING");
    assert_eq!(memory_limit(&cri.cgroup_parent, &sleeper), Some((96u64 << 20).to_string()));
    let err = cri
        .call("ExecSync", &json!({ "container_id": sleeper, "cmd": ["/bin/sh"], "timeout": 10 }))
        .expect_err("ExecSync into a unikernel ran");
    assert!(err.contains("exec is not supported for unikernels"), "{err}");
    cri.ok("StopContainer", &json!({ "container_id": sleeper, "timeout": 30 }));
    let status = cri.wait_exited(&sleeper);
    assert_eq!(status["exit_code"], 143, "{status}");
    assert!(cri.console(&pod, "sleeper").contains("mem_size: 67108864"));

    for id in [&hello, &sleeper] {
        cri.ok("RemoveContainer", &json!({ "container_id": id }));
    }
    cri.remove_pod(&pod);
    let left = cri.ok("ListContainers", &json!({}));
    assert!(left["containers"].as_array().is_none_or(Vec::is_empty), "{left}");
    assert_no_state_left(&[&pod.id, &hello, &sleeper]);
}

#[test]
fn test_cri_pod_network_reaches_the_unikernel() {
    require_kvm!();
    let cri = Cri::start();
    // unik's settings are the pod's annotations, as a Kubernetes pod's metadata.annotations:
    // the runtime handler lets dev.unik.* through to every container of the pod, the pause
    // container too, which stays runc's even though the annotations name a kernel.
    let pod = cri.run_pod(
        "unik-net",
        &json!({ "dev.unik.kernel": "/net.hvt", "dev.unik.net.template": "ip={ip} gw={gateway}" }),
    );
    let sandbox = cri.ok("PodSandboxStatus", &json!({ "pod_sandbox_id": pod.id }))["status"].clone();
    let ip = sandbox["network"]["ip"].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with("10.88.7."), "the pod has no address from the CNI bridge: {sandbox}");
    assert!(
        Path::new(SHIM_ROOT).join("runc").join(&pod.id).is_dir(),
        "the sandbox is not runc's"
    );

    // The guest answers pings on the pod's address.
    let net = cri.run_container(&pod, "net", "net", &["count=3", "timeout=60"], json!({}));
    cri.wait_console(&pod, "net", " ready");
    // containerd's namespace is the host side of the pod network's bridge.
    let ping = cri.ns.command(&["ping", "-c", "3", "-i", "0.2", "-W", "5", &ip]).output().unwrap();
    assert!(
        ping.status.success(),
        "ping {ip}: {}\nconsole: {}",
        stdout(&ping),
        cri.console(&pod, "net")
    );
    let status = cri.wait_exited(&net);
    assert_eq!(status["exit_code"], 0, "{status}");
    let console = cri.console(&pod, "net");
    assert!(
        console.contains(&format!("net: cmdline: ip={ip} gw={POD_GATEWAY} count=3")),
        "{console}"
    );
    assert!(console.contains("net: answered 3 pings"), "{console}");

    cri.remove_pod(&pod);
    assert_no_state_left(&[&pod.id, &net]);
}
