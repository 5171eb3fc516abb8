//! OCI bundles: which ones are unikernels, and the VM each one describes.
//!
//! A bundle is a unikernel when, in this order:
//! 1. it carries unik's annotations (`dev.unik.kernel`, …; or `<rootfs>/unik.json` with the same
//!    keys, for docker, which passes no image annotations), or
//! 2. urunc's (`com.urunc.unikernel.*`, base64 values), or `<rootfs>/urunc.json` with the same keys
//!    (images built for urunc run unchanged), or
//! 3. `process.args[0]`, resolved inside the rootfs, is a solo5-hvt executable (its ABI note).
//!
//! Behind docker's `--init` and in docker's shell form (`/bin/sh -c "…"`) the command is the one
//! docker wrapped ([`crate::args`]). Every path (the kernel, initrd, block images, `/unik.json`,
//! `/urunc.json`) is what the container would see there: the rootfs, or a bind mount over it
//! (`docker run -v`), resolved by [`crate::rootfs::View`].
//!
//! The guest kind is `dev.unik.kind`, urunc's hypervisor (`hvt`, or `qemu`/`firecracker` for
//! Unikraft and Linux guests, which unik boots itself with the Linux boot protocol), or what the
//! kernel image shows. For an hvt guest every device in the kernel's manifest is wired: block
//! devices from `dev.unik.block.<NAME>` (an image in the container) or urunc's single `block`
//! annotation, otherwise a clear error. A Linux-boot guest gets one virtio-blk device per
//! `dev.unik.block.<NAME>` (or urunc's `block`, as "rootfs"), an initrd from `dev.unik.initrd`
//! or urunc's `initrd`, and one virtio-net card on the container interface when there is one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Spec};
use vmm::config::MAX_VCPUS;
use vmm::hvt::{DeviceType, Manifest};
use vmm::loader::{Executable, HOST_MACHINE, ImageKind};
use vmm::{BlockConfig, GuestKind, VmConfig};

pub use crate::annotations::{BLOCK_PREFIX, CMDLINE, CPUS, INITRD, KERNEL, KIND, MEM, NET_INTERFACE, NET_TEMPLATE, PREFIX};
use crate::annotations::{merge_unik_json, urunc_keys};
use crate::args::{Command, DOCKER_INIT, Form};
use crate::error::ContainerError;
use crate::hooks::Hooks;
use crate::network::{NetPlan, Netns};
use crate::rootfs::{Resolved, View};

/// Guest memory when the bundle sets no limit.
pub const DEFAULT_MEM_MIB: u64 = vmm::config::DEFAULT_MEM_MIB;
/// The least guest memory a limit maps to.
pub const MIN_MEM_MIB: u64 = 2;

/// Guest memory for `linux.resources.memory.limit` (bytes): whole MiB rounded down, at least
/// [`MIN_MEM_MIB`]; [`DEFAULT_MEM_MIB`] without a limit (absent, 0 or -1 for unlimited). A limit
/// above the largest guest is an error rather than a guest silently smaller than asked for.
pub fn guest_mem_mib(limit: Option<i64>) -> Result<u64, String> {
    match limit {
        Some(l) if l > 0 => {
            let mib = l.unsigned_abs() >> 20;
            if mib > vmm::memory::MEM_MAX_MIB {
                return Err(format!(
                    "linux.resources.memory.limit: {l} bytes is more guest memory than unik can give ({} MiB at most): ask for at most -m {}m",
                    vmm::memory::MEM_MAX_MIB,
                    vmm::memory::MEM_MAX_MIB
                ));
            }
            Ok(mib.max(MIN_MEM_MIB))
        }
        _ => Ok(DEFAULT_MEM_MIB),
    }
}

/// Guest memory for a `dev.unik.mem` value: MiB from [`MIN_MEM_MIB`] to the largest guest.
pub fn mem_annotation(value: &str) -> Result<u64, String> {
    value
        .parse()
        .ok()
        .filter(|m| (MIN_MEM_MIB..=vmm::memory::MEM_MAX_MIB).contains(m))
        .ok_or_else(|| {
            format!(
                "{MEM}: '{value}' is not a number of MiB from {MIN_MEM_MIB} to {}",
                vmm::memory::MEM_MAX_MIB
            )
        })
}

/// vCPUs of a Linux-boot guest: `dev.unik.cpus`, else the CPU quota rounded up (docker
/// `--cpus`), else 1.
pub fn guest_vcpus(annotation: Option<&String>, quota_period: Option<(i64, u64)>) -> Result<u8, String> {
    if let Some(a) = annotation {
        return a
            .parse::<u8>()
            .ok()
            .filter(|n| (1..=MAX_VCPUS).contains(n))
            .ok_or_else(|| format!("{CPUS}: '{a}' is not a number of vCPUs from 1 to {MAX_VCPUS}"));
    }
    Ok(match quota_period {
        Some((quota, period)) if quota > 0 && period > 0 => {
            let n = quota.unsigned_abs().div_ceil(period);
            u8::try_from(n.min(u64::from(MAX_VCPUS))).unwrap_or(MAX_VCPUS).max(1)
        }
        _ => 1,
    })
}

/// What a bundle is.
#[derive(Debug)]
pub enum BundleKind {
    /// A unikernel, and the VM to boot it.
    Unikernel(Box<VmConfig>),
    /// An ordinary container: a Kubernetes pod's sandbox, or which check on `process.args[0]` said so.
    NotUnikernel(String),
}

/// A loaded bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub path: PathBuf,
    /// Absolute rootfs.
    pub rootfs: PathBuf,
    /// The annotations.
    pub annotations: BTreeMap<String, String>,
    /// What it is.
    pub kind: BundleKind,
    /// Its network (namespace, devices to wire).
    pub network: NetPlan,
    /// Its OCI hooks.
    pub hooks: Hooks,
    /// `linux.cgroupsPath`.
    pub cgroups_path: Option<String>,
    /// `linux.resources`, for the monitor's cgroup.
    pub resources: LinuxResources,
    /// The monitor's namespaces (but the network's), user, limits.
    pub jail: crate::jail::JailPlan,
    /// `process.terminal`: the guest console is to be a terminal.
    pub terminal: bool,
}

fn bundle_err(path: &Path, reason: impl Into<String>) -> ContainerError {
    ContainerError::Bundle {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Whether the program of a bundle without annotations (`process.args[0]`, or what docker
/// wrapped) names a solo5-hvt executable: `Err` says which check failed (missing, not a regular
/// file, not an ELF, an ELF without Solo5's marks, …), for the log line of the hand-over to runc
/// or the error without runc.
fn program_is_hvt(view: &View, command: &Command) -> Result<Resolved, String> {
    let label = command.label();
    let a0 = command.program().ok_or_else(|| match command.form {
        Form::Exec(_) if !command.init => "process.args is empty".to_string(),
        _ => format!("{label} is missing"),
    })?;
    let found = view.resolve(a0).map_err(|e| format!("{label} {e}"))?;
    let file = vmm::host::files::open_regular(found.open_root(), &found.path).map_err(|e| format!("{label} '{a0}': {e}"))?;
    match vmm::loader::image_kind(&file).map_err(|e| format!("{label} '{a0}': {e}"))? {
        ImageKind::Solo5 => Ok(found),
        ImageKind::Elf => Err(format!(
            "{label} '{a0}' is an ELF executable without Solo5's marks (no Solo5 note): not a solo5-hvt unikernel"
        )),
        ImageKind::BzImage => Err(format!(
            "{label} '{a0}' is a Linux kernel image (bzImage); name it in the {KERNEL} annotation to boot it"
        )),
        ImageKind::Arm64Image => Err(format!(
            "{label} '{a0}' is a Linux kernel image (arm64 Image); name it in the {KERNEL} annotation to boot it"
        )),
        ImageKind::Multiboot { .. } => Err(format!(
            "{label} '{a0}' is a multiboot kernel; name it in the {KERNEL} annotation to boot it"
        )),
        ImageKind::Unrecognised(why) => Err(format!("{label} '{a0}' {why}")),
    }
}

/// Whether the namespace file `path` is the network namespace this process runs in.
pub fn is_our_netns(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), std::fs::metadata("/proc/self/ns/net")) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Loads `<bundle>/config.json` and decides what the bundle is.
pub fn load(bundle: &Path) -> Result<Bundle, ContainerError> {
    let path = std::path::absolute(bundle).map_err(|e| bundle_err(bundle, e.to_string()))?;
    // Checked first: a FIFO named config.json must not hang `create`.
    vmm::host::files::open_regular(vmm::host::files::Root::Host, &path.join("config.json"))
        .map_err(|e| bundle_err(&path, format!("config.json: {e}")))?;
    let spec = Spec::load(path.join("config.json")).map_err(|e| {
        // oci-spec's message ("io operation failed") keeps the cause in its source.
        let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
        bundle_err(&path, format!("config.json: {e}{cause}"))
    })?;
    let root = spec.root().as_ref().map_or(PathBuf::from("rootfs"), |r| r.path().clone());
    let rootfs = if root.is_absolute() { root } else { path.join(root) };
    let read_only = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
    let view = View::new(&rootfs, read_only, spec.mounts().as_deref().unwrap_or_default(), &path);
    let mut annotations: BTreeMap<String, String> = spec.annotations().clone().unwrap_or_default().into_iter().collect();
    // docker (before 24) passes no annotations: an image can carry unik's in /unik.json instead.
    merge_unik_json(&mut annotations, &view).map_err(|e| bundle_err(&path, e))?;
    crate::annotations::check_keys(&annotations).map_err(|e| bundle_err(&path, e))?;
    let args: Vec<String> = spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default();
    let mem_limit = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit());
    let cpu_limit = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.cpu().as_ref())
        .and_then(|c| Some((c.quota()?, c.period()?)));
    let mut classified = classify(&path, &view, &annotations, &args, mem_limit)?;
    if let BundleKind::Unikernel(cfg) = &mut classified.kind {
        cfg.gdb = crate::annotations::gdb_port(&annotations).map_err(|e| bundle_err(&path, e))?;
        if cfg.kind == Some(GuestKind::Linux) {
            cfg.vcpus = guest_vcpus(annotations.get(CPUS), cpu_limit).map_err(|e| bundle_err(&path, e))?;
        }
    }
    let netns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|nss| nss.iter().find(|ns| ns.typ() == LinuxNamespaceType::Network))
        .map_or(Netns::Host, |ns| ns.path().clone().map_or(Netns::New, Netns::Path));
    // docker's `--network host` names a bind mount of the host's own namespace: that is no
    // namespace of the container's own either.
    let netns = match netns {
        Netns::Path(p) if is_our_netns(&p) => Netns::Host,
        other => other,
    };
    let resolv_conf = spec
        .mounts()
        .as_ref()
        .and_then(|ms| ms.iter().find(|m| m.destination() == Path::new("/etc/resolv.conf")))
        .and_then(|m| m.source().clone());
    if let Some(t) = annotations.get(NET_TEMPLATE) {
        crate::network::check_template(t).map_err(|e| bundle_err(&path, format!("{NET_TEMPLATE}: {e}")))?;
    }
    let network = NetPlan {
        netns,
        devices: classified.devices,
        interface: annotations.get(NET_INTERFACE).cloned(),
        template: annotations
            .get(NET_TEMPLATE)
            .cloned()
            .or(classified.default_template.map(String::from)),
        resolv_conf,
        tap: String::new(),
        vnet_hdr: classified.guest.is_some_and(GuestKind::tap_vnet_hdr),
        card_optional: classified.guest == Some(GuestKind::Linux),
    };
    let kind = classified.kind;
    let hooks = Hooks::from_spec(spec.hooks().as_ref()).map_err(|e| bundle_err(&path, e))?;
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.display().to_string());
    let resources = spec.linux().as_ref().and_then(|l| l.resources().clone()).unwrap_or_default();
    // docker run --device (or --privileged): host device nodes, which no guest can reach.
    if let Some(devices) = spec.linux().as_ref().and_then(|l| l.devices().as_ref()).filter(|d| !d.is_empty()) {
        return Err(bundle_err(
            &path,
            format!(
                "linux.devices: {} host device(s) from {}: a unikernel cannot use host devices \
                 (drop --device and --privileged; give disk images with {BLOCK_PREFIX}<NAME>)",
                devices.len(),
                devices[0].path().display()
            ),
        ));
    }
    let jail = crate::jail::JailPlan::from_spec(&spec).map_err(|e| bundle_err(&path, e))?;
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    Ok(Bundle {
        path,
        rootfs,
        annotations,
        kind,
        network,
        hooks,
        cgroups_path,
        resources,
        jail,
        terminal,
    })
}

/// What `classify` found: the bundle's kind and what its network wiring needs.
struct Classified {
    kind: BundleKind,
    /// Network devices to wire: the manifest's (hvt) or one virtio-net card (Linux boot).
    devices: Vec<String>,
    /// The guest's kind (none: not a unikernel).
    guest: Option<GuestKind>,
    /// The template the guest kind expects when the bundle names none.
    default_template: Option<&'static str>,
}

/// The guest kind an urunc `hypervisor`/`unikernelType` pair asks for.
fn urunc_kind(urunc: &BTreeMap<String, String>) -> Result<(GuestKind, Option<&'static str>), String> {
    let hypervisor = urunc.get("hypervisor").map_or("hvt", String::as_str);
    let kind = urunc.get("unikernelType").map_or("unknown", String::as_str);
    match (hypervisor, kind) {
        // The network configuration urunc hands these guests on their command line.
        ("hvt", "mirage") => Ok((GuestKind::Hvt, Some("mirage"))),
        ("hvt", "rumprun") => Ok((GuestKind::Hvt, Some("rumprun"))),
        ("hvt", _) => Ok((GuestKind::Hvt, None)),
        ("qemu" | "firecracker", "unikraft") => Ok((GuestKind::Linux, Some("unikraft"))),
        ("qemu" | "firecracker", "linux") => Ok((GuestKind::Linux, Some("linux"))),
        ("qemu" | "firecracker", _) => Ok((GuestKind::Linux, None)),
        _ => Err(format!(
            "unikernel type '{kind}' with hypervisor '{hypervisor}' is not supported (hvt, qemu and firecracker are)"
        )),
    }
}

/// Why a block image the container sees read-only is so.
fn read_only_why(file: &Resolved) -> String {
    match &file.mount {
        Some(dest) => format!("it is in the bind mount at {dest}, mounted read-only"),
        None => "it is in the rootfs, which is read-only (root.readonly: docker run --read-only)".into(),
    }
}

/// The annotations by which Kubernetes' container runtimes mark a pod's sandbox (pause)
/// container: containerd's CRI plugin, CRI-O.
const SANDBOX_MARKS: [(&str, &str); 2] = [
    ("io.kubernetes.cri.container-type", "sandbox"),
    ("io.kubernetes.cri-o.ContainerType", "sandbox"),
];

/// What an ordinary container's reason starts with: then the check on its program that failed.
pub(crate) const NOT_ANNOTATED: &str = "no dev.unik.kernel or com.urunc.unikernel.binary annotation, no urunc.json: ";

/// The bundle's kind and what its network needs.
fn classify(
    bundle: &Path,
    view: &View,
    annotations: &BTreeMap<String, String>,
    args: &[String],
    mem_limit: Option<i64>,
) -> Result<Classified, ContainerError> {
    let err = |reason: String| bundle_err(bundle, reason);
    let rootfs_err = |e: crate::rootfs::RootfsError| bundle_err(bundle, e.to_string());
    let not_unikernel = |reason: String| Classified {
        kind: BundleKind::NotUnikernel(reason),
        devices: Vec::new(),
        guest: None,
        default_template: None,
    };
    // A pod's pause container holds the pod's namespaces and is never a unikernel, whatever
    // `dev.unik.*` annotations of the pod reach it (containerd's `pod_annotations`).
    if let Some((key, value)) = SANDBOX_MARKS.iter().find(|(k, v)| annotations.get(*k).is_some_and(|a| a == v)) {
        return Ok(not_unikernel(format!("{key}={value}: a Kubernetes pod's sandbox container")));
    }
    let urunc = urunc_keys(annotations, view).map_err(err)?;
    let command = Command::parse(args);
    let init = command.init;
    let (kernel, args, cmdline_annotation, requested, urunc_template) = if let Some(k) = annotations.get(KERNEL) {
        let requested = annotations
            .get(KIND)
            .map(|k| k.parse::<GuestKind>())
            .transpose()
            .map_err(|e| err(format!("{KIND}: {e}")))?;
        let kernel = view.resolve(k).map_err(rootfs_err)?;
        let args = command.into_args().map_err(err)?;
        // An annotation never silently wins over an edited `process.args[0]`.
        if let Some(a0) = args.first() {
            if view.resolve(a0).is_ok_and(|p| p.path != kernel.path) {
                return Err(err(format!(
                    "{KERNEL} names '{k}' but process.args[0] names '{a0}', another file: \
                     drop the annotation or make the two agree"
                )));
            }
        }
        (kernel, args, annotations.get(CMDLINE).cloned(), requested, None)
    } else if let Some(binary) = urunc.get("binary") {
        let (kind, template) = urunc_kind(&urunc).map_err(err)?;
        let kernel = view.resolve(binary).map_err(rootfs_err)?;
        (
            kernel,
            command.into_args().map_err(err)?,
            urunc.get("cmdline").cloned(),
            Some(kind),
            template,
        )
    } else {
        match program_is_hvt(view, &command) {
            // A unikernel found behind docker's wrapping runs, or is refused: never runc's.
            Ok(kernel) => (kernel, command.into_args().map_err(err)?, None, Some(GuestKind::Hvt), None),
            Err(reason) => {
                log::debug!("{}: {reason}", bundle.display());
                return Ok(not_unikernel(format!("{NOT_ANNOTATED}{reason}")));
            }
        }
    };
    if init {
        log::debug!(
            "{}: docker's init ({DOCKER_INIT}, docker run --init) is meaningless for a unikernel: the guest runs without it",
            bundle.display()
        );
    }
    let guest_kind = match requested {
        Some(kind) => kind,
        None => vmm::loader::detect_kind(kernel.open_root(), &kernel.path).map_err(|e| err(format!("kernel {}: {e}", kernel.inside)))?,
    };
    let cmdline = match (args.len() > 1, cmdline_annotation) {
        (true, _) => args[1..].to_vec(),
        (false, Some(c)) => c.split_whitespace().map(String::from).collect(),
        (false, None) => Vec::new(),
    };
    // Unikraft takes its command line's first word as the program name and reads its own
    // parameters (the network's, the devices') from there to a standalone `--`; what follows is
    // the application's. urunc starts Unikraft so: here the kernel's file name is the program.
    let cmdline = if urunc_template == Some("unikraft") && !cmdline.iter().any(|a| a == "--") {
        let name = kernel
            .path
            .file_name()
            .map_or_else(|| "unikraft".into(), |n| n.to_string_lossy().into_owned());
        [name, "--".to_string()].into_iter().chain(cmdline).collect()
    } else {
        cmdline
    };
    let mem_mib = match annotations.get(MEM) {
        Some(m) => mem_annotation(m).map_err(err)?,
        None => guest_mem_mib(mem_limit).map_err(err)?,
    };
    let image_of = |name: &str, sole: bool| -> Option<&String> {
        annotations
            .get(&format!("{BLOCK_PREFIX}{name}"))
            .or(if sole { urunc.get("block") } else { None })
    };
    // Every file the guest uses, and where `create` opens it.
    let mut roots = BTreeMap::from([(kernel.path.clone(), kernel.root.clone())]);
    let mut names = BTreeMap::from([(kernel.path.clone(), kernel.inside.clone())]);
    let mut block = |name: &str, image: &str| -> Result<BlockConfig, ContainerError> {
        let file = view.resolve(image).map_err(rootfs_err)?;
        if file.read_only && guest_kind == GuestKind::Hvt {
            return Err(err(format!(
                "block device '{name}' ('{image}') must be read-only, as {}, but solo5's hvt has no \
                 read-only block devices: bind-mount a writable image there (docker run -v HOST_FILE:{image})",
                read_only_why(&file)
            )));
        }
        roots.insert(file.path.clone(), file.root);
        names.insert(file.path.clone(), file.inside);
        Ok(BlockConfig {
            name: name.to_string(),
            path: file.path,
            sector_size: None,
            read_only: file.read_only,
        })
    };
    let (blocks, devices, default_template, initrd) = match guest_kind {
        GuestKind::Hvt => {
            let image = vmm::host::files::read_regular(kernel.open_root(), &kernel.path, mem_mib << 20, "of guest memory")
                .map_err(|e| err(format!("kernel {}: {e}", kernel.inside)))?;
            let exe = Executable::parse(&image, HOST_MACHINE).map_err(|e| err(format!("kernel {}: {e}", kernel.inside)))?;
            let manifest = Manifest::parse(exe.manifest_note())
                .map_err(|e| err(format!("kernel {}: Solo5 manifest is invalid: {e}", kernel.inside)))?;
            let block_entries: Vec<String> = manifest
                .entries()
                .iter()
                .filter(|e| e.kind == DeviceType::Block)
                .map(|e| e.name())
                .collect();
            let mut blocks = Vec::new();
            for name in &block_entries {
                let image = image_of(name, block_entries.len() == 1).ok_or_else(|| {
                    err(format!(
                        "manifest block device '{name}' has no image: set annotation {BLOCK_PREFIX}{name}=<path in rootfs> \
                         (or that key in /unik.json, for engines that pass no annotations, such as docker before 24)"
                    ))
                })?;
                blocks.push(block(name, image)?);
            }
            let nets = manifest
                .entries()
                .iter()
                .filter(|e| e.kind == DeviceType::Net)
                .map(|e| e.name())
                .collect();
            (blocks, nets, urunc_template, None)
        }
        GuestKind::Linux => {
            // Every dev.unik.block.<NAME> becomes a virtio-blk device, in name order; urunc's
            // single block image is "rootfs".
            let mut blocks = Vec::new();
            for (key, image) in annotations.range(BLOCK_PREFIX.to_string()..) {
                let Some(name) = key.strip_prefix(BLOCK_PREFIX) else { break };
                blocks.push(block(name, image)?);
            }
            if let (true, Some(image)) = (blocks.is_empty(), urunc.get("block")) {
                blocks.push(block("rootfs", image)?);
            }
            let initrd = match annotations.get(INITRD).or(urunc.get("initrd")) {
                Some(i) => {
                    let file = view.resolve(i).map_err(rootfs_err)?;
                    roots.insert(file.path.clone(), file.root);
                    names.insert(file.path.clone(), file.inside);
                    Some(file.path)
                }
                None => None,
            };
            (blocks, vec!["eth0".to_string()], urunc_template.or(Some("linux")), initrd)
        }
    };
    // `create` opens the kernel, initrd and disks where the container sees them (inside the
    // rootfs or a bind-mounted directory, which a symlink swapped in meanwhile cannot make it
    // leave, or a bind-mounted file) and hands them to the monitor.
    let cfg = VmConfig {
        cmdline,
        mem_mib,
        blocks,
        kind: Some(guest_kind),
        initrd,
        roots,
        names,
        ..VmConfig::new(kernel.path)
    };
    Ok(Classified {
        kind: BundleKind::Unikernel(Box::new(cfg)),
        devices,
        guest: Some(guest_kind),
        default_template,
    })
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
pub(crate) mod tests;
