//! OCI bundles: which ones are unikernels, and the VM each one describes.
//!
//! A bundle is a unikernel when, in this order:
//! 1. it carries unik's annotations (`dev.unik.kernel`, …; or `<rootfs>/unik.json` with the same
//!    keys, for docker, which passes no image annotations), or
//! 2. urunc's (`com.urunc.unikernel.*`, base64 values), or `<rootfs>/urunc.json` with the same keys
//!    (images built for urunc run unchanged), or
//! 3. `process.args[0]`, resolved inside the rootfs, is a solo5-hvt executable (its ABI note).
//!
//! Every device in the kernel's manifest is wired: block devices from `dev.unik.block.<NAME>`
//! (an image inside the rootfs) or urunc's single `block` annotation, otherwise a clear error.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use vmm::hvt::{DeviceType, Manifest};
use vmm::loader::{Executable, HOST_MACHINE};
use vmm::{BlockConfig, VmConfig};

use crate::error::ContainerError;
use crate::hooks::Hooks;
use crate::network::{NetPlan, Netns};

/// unik's annotation prefix.
pub const PREFIX: &str = "dev.unik.";
/// Path of the unikernel inside the rootfs.
pub const KERNEL: &str = "dev.unik.kernel";
/// Guest command line when `process.args` has none.
pub const CMDLINE: &str = "dev.unik.cmdline";
/// Guest memory in MiB (overrides the memory limit).
pub const MEM: &str = "dev.unik.mem";
/// `dev.unik.block.<NAME>`: image inside the rootfs for manifest block device NAME.
pub const BLOCK_PREFIX: &str = "dev.unik.block.";
/// Guest command-line template for the network settings (or a ready template's name).
pub const NET_TEMPLATE: &str = "dev.unik.net.template";
/// The container interface the guest takes over (default: the first free one with IPv4).
pub const NET_INTERFACE: &str = "dev.unik.net.interface";
const URUNC_PREFIX: &str = "com.urunc.unikernel.";
/// Guest memory when the bundle sets no limit.
pub const DEFAULT_MEM_MIB: u64 = vmm::config::DEFAULT_MEM_MIB;

/// What a bundle is.
#[derive(Debug)]
pub enum BundleKind {
    /// A unikernel, and the VM to boot it.
    Unikernel(Box<VmConfig>),
    /// An ordinary container.
    NotUnikernel,
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
    /// Whether `linux.resources.memory.limit` is set.
    pub memory_limited: bool,
}

fn bundle_err(path: &Path, reason: impl Into<String>) -> ContainerError {
    ContainerError::Bundle {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Resolves `inside` (absolute or relative to the rootfs) to a host path that stays inside the
/// rootfs even through symlinks.
pub fn resolve_in_rootfs(rootfs: &Path, inside: &str) -> Result<PathBuf, String> {
    let mut path = rootfs.to_path_buf();
    for c in Path::new(inside).components() {
        match c {
            Component::Normal(part) => path.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(format!("'{inside}' leaves the rootfs")),
        }
    }
    let real = path.canonicalize().map_err(|e| format!("'{inside}' in the rootfs: {e}"))?;
    let root = rootfs.canonicalize().map_err(|e| format!("rootfs {}: {e}", rootfs.display()))?;
    if !real.starts_with(&root) {
        return Err(format!("'{inside}' resolves outside the rootfs"));
    }
    Ok(real)
}

/// urunc's keys from the annotations, or from `<rootfs>/urunc.json`; values base64-decoded.
fn urunc_keys(annotations: &BTreeMap<String, String>, rootfs: &Path) -> Result<BTreeMap<String, String>, String> {
    let decode = |k: &str, v: &str| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|e| format!("{URUNC_PREFIX}{k}: not base64: {e}"))?;
        String::from_utf8(bytes).map_err(|_| format!("{URUNC_PREFIX}{k}: not UTF-8"))
    };
    let mut keys = BTreeMap::new();
    for (k, v) in annotations {
        if let Some(key) = k.strip_prefix(URUNC_PREFIX) {
            keys.insert(key.to_string(), decode(key, v)?);
        }
    }
    if keys.is_empty() {
        let json = rootfs.join("urunc.json");
        if let Ok(text) = std::fs::read(&json) {
            let map: BTreeMap<String, String> = serde_json::from_slice(&text).map_err(|e| format!("urunc.json: {e}"))?;
            for (k, v) in map {
                let key = k.strip_prefix(URUNC_PREFIX).unwrap_or(&k).to_string();
                let value = decode(&key, &v)?;
                keys.insert(key, value);
            }
        }
    }
    Ok(keys)
}

/// Whether `path` is a solo5-hvt executable for this host.
fn is_hvt(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|image| Executable::parse(&image, HOST_MACHINE).is_ok())
}

/// Loads `<bundle>/config.json` and decides what the bundle is.
pub fn load(bundle: &Path) -> Result<Bundle, ContainerError> {
    let path = std::path::absolute(bundle).map_err(|e| bundle_err(bundle, e.to_string()))?;
    let spec = Spec::load(path.join("config.json")).map_err(|e| bundle_err(&path, format!("config.json: {e}")))?;
    let root = spec.root().as_ref().map_or(PathBuf::from("rootfs"), |r| r.path().clone());
    let rootfs = if root.is_absolute() { root } else { path.join(root) };
    let mut annotations: BTreeMap<String, String> = spec.annotations().clone().unwrap_or_default().into_iter().collect();
    // docker (before 24) passes no annotations: an image can carry unik's in /unik.json instead.
    if !annotations.keys().any(|k| k.starts_with(PREFIX)) {
        if let Ok(json) = std::fs::read(rootfs.join("unik.json")) {
            let extra: BTreeMap<String, String> =
                serde_json::from_slice(&json).map_err(|e| bundle_err(&path, format!("unik.json: {e}")))?;
            annotations.extend(extra.into_iter().filter(|(k, _)| k.starts_with(PREFIX)));
        }
    }
    let args: Vec<String> = spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default();
    let mem_limit = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit());
    let (kind, devices) = classify(&path, &rootfs, &annotations, &args, mem_limit)?;
    let netns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|nss| nss.iter().find(|ns| ns.typ() == LinuxNamespaceType::Network))
        .map_or(Netns::Host, |ns| ns.path().clone().map_or(Netns::New, Netns::Path));
    let resolv_conf = spec
        .mounts()
        .as_ref()
        .and_then(|ms| ms.iter().find(|m| m.destination() == Path::new("/etc/resolv.conf")))
        .and_then(|m| m.source().clone());
    let network = NetPlan {
        netns,
        devices,
        interface: annotations.get(NET_INTERFACE).cloned(),
        template: annotations.get(NET_TEMPLATE).cloned(),
        resolv_conf,
        tap: String::new(),
    };
    let hooks = Hooks::from_spec(spec.hooks().as_ref());
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.display().to_string());
    let memory_limited = mem_limit.is_some_and(|l| l > 0);
    Ok(Bundle {
        path,
        rootfs,
        annotations,
        kind,
        network,
        hooks,
        cgroups_path,
        memory_limited,
    })
}

/// The bundle's kind and the names of the kernel's network devices.
fn classify(
    bundle: &Path,
    rootfs: &Path,
    annotations: &BTreeMap<String, String>,
    args: &[String],
    mem_limit: Option<i64>,
) -> Result<(BundleKind, Vec<String>), ContainerError> {
    let err = |reason: String| bundle_err(bundle, reason);
    let urunc = urunc_keys(annotations, rootfs).map_err(err)?;
    let (kernel, cmdline_annotation) = if let Some(k) = annotations.get(KERNEL) {
        (resolve_in_rootfs(rootfs, k).map_err(err)?, annotations.get(CMDLINE).cloned())
    } else if let Some(binary) = urunc.get("binary") {
        let hypervisor = urunc.get("hypervisor").map_or("hvt", String::as_str);
        if hypervisor != "hvt" {
            let kind = urunc.get("unikernelType").map_or("unknown", String::as_str);
            return Err(err(format!(
                "unikernel type '{kind}' with hypervisor '{hypervisor}' is not supported yet (hvt only)"
            )));
        }
        (resolve_in_rootfs(rootfs, binary).map_err(err)?, urunc.get("cmdline").cloned())
    } else {
        match args.first().map(|a0| resolve_in_rootfs(rootfs, a0)) {
            Some(Ok(path)) if is_hvt(&path) => (path, None),
            _ => return Ok((BundleKind::NotUnikernel, Vec::new())),
        }
    };
    let image = std::fs::read(&kernel).map_err(|e| err(format!("kernel {}: {e}", kernel.display())))?;
    let exe = Executable::parse(&image, HOST_MACHINE).map_err(|e| err(format!("kernel {}: {e}", kernel.display())))?;
    let manifest =
        Manifest::parse(exe.manifest_note()).map_err(|e| err(format!("kernel {}: Solo5 manifest is invalid: {e}", kernel.display())))?;

    let cmdline = match (args.len() > 1, cmdline_annotation) {
        (true, _) => args[1..].to_vec(),
        (false, Some(c)) => c.split_whitespace().map(String::from).collect(),
        (false, None) => Vec::new(),
    };
    let mem_mib = match annotations.get(MEM) {
        Some(m) => m.parse().map_err(|_| err(format!("{MEM}: '{m}' is not a number of MiB")))?,
        None => mem_limit
            .filter(|l| *l > 0)
            .map_or(DEFAULT_MEM_MIB, |l| (l.unsigned_abs() >> 20).max(2)),
    };
    let block_entries: Vec<String> = manifest
        .entries()
        .iter()
        .filter(|e| e.kind == DeviceType::Block)
        .map(|e| e.name())
        .collect();
    let mut blocks = Vec::new();
    for name in &block_entries {
        let image = annotations
            .get(&format!("{BLOCK_PREFIX}{name}"))
            .or(if block_entries.len() == 1 { urunc.get("block") } else { None })
            .ok_or_else(|| {
                err(format!(
                    "manifest block device '{name}' has no image: set annotation {BLOCK_PREFIX}{name}=<path in rootfs>"
                ))
            })?;
        let path = resolve_in_rootfs(rootfs, image).map_err(err)?;
        blocks.push(BlockConfig {
            name: name.clone(),
            path,
            sector_size: None,
        });
    }
    let nets = manifest
        .entries()
        .iter()
        .filter(|e| e.kind == DeviceType::Net)
        .map(|e| e.name())
        .collect();
    let cfg = VmConfig {
        kernel,
        cmdline,
        mem_mib,
        nets: Vec::new(),
        blocks,
    };
    Ok((BundleKind::Unikernel(Box::new(cfg)), nets))
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
pub(crate) mod tests;
