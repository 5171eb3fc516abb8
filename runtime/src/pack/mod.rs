//! `unik pack`: a unikernel, its disk images and settings as a container image archive that
//! `docker load` and `ctr images import` take, so `docker run --runtime unik NAME:TAG` boots it.
//!
//! The image has one layer (gzipped tar, every entry dated the same and owned by root):
//!
//! | path | what |
//! |---|---|
//! | `/<kernel's file name>` | the kernel (mode 0755) |
//! | `/block/<NAME>.img` | each block image (`dev.unik.block.<NAME>`) |
//! | `/<initrd's file name>` | the initrd of a Linux-boot kernel |
//! | `/unik.json` | the `dev.unik.*` settings ([`crate::annotations`]), read by the runtime |
//!
//! The configuration's `Entrypoint` is the kernel and its `Cmd` the guest's arguments (so
//! `docker run IMAGE ARGS…` replaces them); its labels repeat `/unik.json`, and so do the OCI
//! manifest's annotations. The archive is docker's (`manifest.json` with `RepoTags`, which
//! docker 20.10 loads) or an OCI image layout (`index.json`, `blobs/sha256/…`); `ctr images
//! import` takes both. Everything is checked before anything is written, and the archive is
//! written beside its final name and renamed there at the end, so a failed pack leaves nothing.
//! The same inputs give the same bytes: times come from `SOURCE_DATE_EPOCH`, else the epoch.

mod archive;
pub mod reference;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use vmm::GuestKind;
use vmm::hvt::{DeviceType, Manifest};
use vmm::loader::{Executable, HOST_MACHINE, ImageKind};

use crate::annotations::{BLOCK_PREFIX, CPUS, INITRD, KERNEL, KIND, MEM, NET_TEMPLATE, UNIK_JSON, URUNC_JSON};
use archive::{Content, Digest, Tar};
pub use reference::Reference;

/// The archive's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// docker's (`docker save`): `manifest.json`, the configuration, the layer.
    Docker,
    /// An OCI image layout: `oci-layout`, `index.json`, `blobs/sha256/…`.
    Oci,
}

/// What to pack.
#[derive(Debug, Clone)]
pub struct PackSpec {
    /// The kernel: a solo5-hvt unikernel or a Linux-boot kernel.
    pub kernel: PathBuf,
    /// Block images by device name.
    pub blocks: Vec<(String, PathBuf)>,
    /// The initrd of a Linux-boot kernel.
    pub initrd: Option<PathBuf>,
    /// Guest memory in MiB (`dev.unik.mem`).
    pub mem_mib: Option<u64>,
    /// vCPUs of a Linux-boot kernel (`dev.unik.cpus`).
    pub cpus: Option<u8>,
    /// The network template (`dev.unik.net.template`).
    pub net_template: Option<String>,
    /// The guest's arguments (the image's `Cmd`).
    pub args: Vec<String>,
    /// The image's name and tag.
    pub reference: Reference,
    /// The archive's format.
    pub format: Format,
}

/// Why a pack failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A file named on the command line that cannot be used.
    #[error("{what} {}: {source}", path.display())]
    File {
        /// Which input (kernel, block image NAME, initrd).
        what: String,
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A kernel unik cannot boot.
    #[error("kernel {}: {reason}", path.display())]
    Kernel {
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A block device the hvt kernel's manifest declares, given no image.
    #[error("kernel {}: its manifest declares block device '{name}', which has no image: add --block {name}=FILE", kernel.display())]
    MissingBlock {
        /// The kernel.
        kernel: PathBuf,
        /// The device.
        name: String,
    },
    /// A block image for a device the hvt kernel's manifest does not declare.
    #[error("kernel {}: its manifest declares no block device '{name}' (it declares: {declared})", kernel.display())]
    UndeclaredBlock {
        /// The kernel.
        kernel: PathBuf,
        /// The device.
        name: String,
        /// The block devices it declares.
        declared: String,
    },
    /// The same block device twice.
    #[error("block device '{0}' is given more than once")]
    DuplicateBlock(String),
    /// An option only a Linux-boot kernel takes, for an hvt one.
    #[error("{option} is for Linux-boot kernels; {} is a solo5-hvt unikernel", kernel.display())]
    LinuxOnly {
        /// The option.
        option: &'static str,
        /// The kernel.
        kernel: PathBuf,
    },
    /// A setting the runtime would refuse.
    #[error("{0}")]
    Setting(String),
    /// `SOURCE_DATE_EPOCH` that is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH: '{0}' is not a number of seconds since 1970")]
    SourceDateEpoch(String),
    /// Two files that would have the same path in the image.
    #[error("{0}")]
    Layout(String),
    /// Writing the archive failed.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a successful pack wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// The image's ID: its configuration's digest (`sha256:…`), as `docker images --no-trunc` shows it.
    pub image_id: String,
    /// The image's name as docker lists it.
    pub name: String,
}

/// A file of the layer.
#[derive(Debug)]
struct LayerFile {
    path: String,
    mode: u32,
    content: Content,
}

/// Everything checked, files open: what the archive will hold.
#[derive(Debug)]
struct Plan {
    files: Vec<LayerFile>,
    settings: BTreeMap<String, String>,
    entrypoint: String,
    args: Vec<String>,
}

/// The directory block images go in.
const BLOCK_DIR: &str = "block";

fn open(what: &str, path: &Path) -> Result<(File, u64), PackError> {
    let err = |source| PackError::File {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = vmm::host::files::open_regular(vmm::host::files::Root::Host, path).map_err(err)?;
    let size = file.metadata().map_err(err)?.len();
    Ok((file, size))
}

/// A file's name, for its path at the root of the image.
fn root_name(what: &str, path: &Path) -> Result<String, PackError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.chars().any(char::is_control));
    let name = name.ok_or_else(|| PackError::Layout(format!("{what} {}: its file name is not printable UTF-8", path.display())))?;
    if [UNIK_JSON, URUNC_JSON, BLOCK_DIR].contains(&name) {
        return Err(PackError::Layout(format!(
            "{what} {}: '/{name}' is reserved in the image; rename the file",
            path.display()
        )));
    }
    Ok(name.to_string())
}

/// The guest kind of the kernel, with the block devices its manifest declares (hvt).
fn check_kernel(path: &Path, file: &File) -> Result<(GuestKind, Vec<String>), PackError> {
    let kernel_err = |reason: String| PackError::Kernel {
        path: path.to_path_buf(),
        reason,
    };
    let kind = vmm::loader::image_kind(file).map_err(|e| kernel_err(e.to_string()))?;
    match kind {
        ImageKind::Solo5 => {
            // No larger than the largest guest, which it must fit in; read from the file checked.
            let max = vmm::memory::MEM_MAX_MIB << 20;
            let mut image = Vec::new();
            file.take(max + 1).read_to_end(&mut image).map_err(|e| kernel_err(e.to_string()))?;
            if image.len() as u64 > max {
                return Err(kernel_err(format!("more than the {max} bytes of the largest guest's memory")));
            }
            let exe = Executable::parse(&image, HOST_MACHINE).map_err(|e| kernel_err(e.to_string()))?;
            let manifest = Manifest::parse(exe.manifest_note()).map_err(|e| kernel_err(format!("Solo5 manifest is invalid: {e}")))?;
            let blocks = manifest
                .entries()
                .iter()
                .filter(|e| e.kind == DeviceType::Block)
                .map(|e| e.name())
                .collect();
            Ok((GuestKind::Hvt, blocks))
        }
        ImageKind::BzImage | ImageKind::Arm64Image | ImageKind::Elf | ImageKind::Multiboot { .. } => Ok((GuestKind::Linux, Vec::new())),
        ImageKind::Unrecognised(why) => Err(kernel_err(format!(
            "not a kernel unik boots (a solo5-hvt unikernel, a bzImage, an arm64 Image, an ELF kernel or a multiboot kernel): it {why}"
        ))),
    }
}

/// Checks everything and opens every file: nothing is written before this succeeds.
fn plan(spec: &PackSpec) -> Result<Plan, PackError> {
    let (kernel_file, kernel_size) = open("kernel", &spec.kernel)?;
    let (kind, declared) = check_kernel(&spec.kernel, &kernel_file)?;
    let kernel_name = root_name("kernel", &spec.kernel)?;
    let mut settings = BTreeMap::new();
    let entrypoint = format!("/{kernel_name}");
    settings.insert(KERNEL.to_string(), entrypoint.clone());
    settings.insert(
        KIND.to_string(),
        match kind {
            GuestKind::Hvt => "hvt",
            GuestKind::Linux => "linux",
        }
        .to_string(),
    );
    let mut files = vec![LayerFile {
        path: kernel_name.clone(),
        mode: 0o755,
        content: Content::File(kernel_file, kernel_size),
    }];
    let linux_only = |option| PackError::LinuxOnly {
        option,
        kernel: spec.kernel.clone(),
    };
    if let Some(mem) = spec.mem_mib {
        let value = mem.to_string();
        crate::bundle::mem_annotation(&value).map_err(|e| PackError::Setting(format!("--mem: {e}")))?;
        settings.insert(MEM.to_string(), value);
    }
    if let Some(cpus) = spec.cpus {
        if kind == GuestKind::Hvt {
            return Err(linux_only("--cpus"));
        }
        let value = cpus.to_string();
        crate::bundle::guest_vcpus(Some(&value), None).map_err(|e| PackError::Setting(format!("--cpus: {e}")))?;
        settings.insert(CPUS.to_string(), value);
    }
    if let Some(template) = &spec.net_template {
        crate::network::check_template(template).map_err(|e| PackError::Setting(format!("--net-template: {NET_TEMPLATE}: {e}")))?;
        settings.insert(NET_TEMPLATE.to_string(), template.clone());
    }
    if let Some(initrd) = &spec.initrd {
        if kind == GuestKind::Hvt {
            return Err(linux_only("--initrd"));
        }
        let (file, size) = open("initrd", initrd)?;
        let name = root_name("initrd", initrd)?;
        if name == kernel_name {
            return Err(PackError::Layout(format!(
                "the kernel and the initrd would both be /{name} in the image; rename one"
            )));
        }
        settings.insert(INITRD.to_string(), format!("/{name}"));
        files.push(LayerFile {
            path: name,
            mode: 0o644,
            content: Content::File(file, size),
        });
    }
    let cmdline = spec.args.join(" ");
    if kind == GuestKind::Hvt && cmdline.len() > vmm::hvt::CMDLINE_MAX {
        return Err(PackError::Setting(format!(
            "--arg: the guest's command line would be {} characters, more than the {} a solo5-hvt unikernel takes",
            cmdline.len(),
            vmm::hvt::CMDLINE_MAX
        )));
    }
    let mut blocks = BTreeMap::new();
    for (name, path) in &spec.blocks {
        if blocks.contains_key(name) {
            return Err(PackError::DuplicateBlock(name.clone()));
        }
        let what = format!("block image {name}");
        let (file, size) = open(&what, path)?;
        if kind == GuestKind::Hvt {
            if !declared.contains(name) {
                return Err(PackError::UndeclaredBlock {
                    kernel: spec.kernel.clone(),
                    name: name.clone(),
                    declared: if declared.is_empty() { "none".into() } else { declared.join(", ") },
                });
            }
            // solo5's rule, with the sector size the runtime gives every hvt disk.
            let sector = u64::from(vmm::config::DEFAULT_SECTOR_SIZE);
            if size < sector || size % sector != 0 {
                return Err(PackError::File {
                    what,
                    path: path.clone(),
                    source: std::io::Error::other(format!(
                        "{size} bytes: a solo5-hvt disk image must be a non-zero multiple of {sector} bytes"
                    )),
                });
            }
        }
        blocks.insert(name.clone(), (file, size));
    }
    if let Some(missing) = declared.iter().find(|d| !blocks.contains_key(*d)) {
        return Err(PackError::MissingBlock {
            kernel: spec.kernel.clone(),
            name: missing.clone(),
        });
    }
    for (name, (file, size)) in blocks {
        let path = format!("{BLOCK_DIR}/{name}.img");
        settings.insert(format!("{BLOCK_PREFIX}{name}"), format!("/{path}"));
        files.push(LayerFile {
            path,
            mode: 0o644,
            content: Content::File(file, size),
        });
    }
    crate::annotations::check_keys(&settings).map_err(PackError::Setting)?;
    let json = serde_json::to_vec_pretty(&settings).map_err(|e| PackError::Setting(format!("{UNIK_JSON}: {e}")))?;
    files.push(LayerFile {
        path: UNIK_JSON.to_string(),
        mode: 0o644,
        content: Content::Bytes(json),
    });
    Ok(Plan {
        files,
        settings,
        entrypoint,
        args: spec.args.clone(),
    })
}

/// The time every entry and the configuration carry: `SOURCE_DATE_EPOCH` (seconds), else 0.
fn source_date_epoch() -> Result<u64, PackError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse().map_err(|_| PackError::SourceDateEpoch(v.clone())),
        Err(_) => Ok(0),
    }
}

/// The OCI and docker name of this host's architecture.
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The layer's directory entries and files, in a fixed order.
fn write_layer(plan: &Plan, dir: &Path, out: &Path, mtime: u64) -> Result<archive::Layer, PackError> {
    let werr = |source| PackError::Write {
        path: out.to_path_buf(),
        source,
    };
    let blob = tempfile::tempfile_in(dir).map_err(werr)?;
    let mut tar = archive::layer(blob, mtime);
    if plan.files.iter().any(|f| f.path.starts_with(&format!("{BLOCK_DIR}/"))) {
        tar.dir(BLOCK_DIR).map_err(werr)?;
    }
    for f in &plan.files {
        tar.file(&f.path, f.mode, &f.content).map_err(|source| match &f.content {
            Content::File(..) => PackError::Write {
                path: out.to_path_buf(),
                source: std::io::Error::new(source.kind(), format!("/{}: {source}", f.path)),
            },
            Content::Bytes(_) => werr(source),
        })?;
    }
    archive::finish_layer(tar).map_err(werr)
}

/// Writes the image archive `out` (replaced if it exists) from `spec`.
pub fn pack(spec: &PackSpec, out: &Path) -> Result<Packed, PackError> {
    let plan = plan(spec)?;
    let mtime = source_date_epoch()?;
    let werr = |source| PackError::Write {
        path: out.to_path_buf(),
        source,
    };
    if out.is_dir() {
        return Err(werr(std::io::Error::other("it is a directory; name the archive file")));
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Beside the final name, so the rename cannot cross file systems; removed on any failure.
    let staged = tempfile::Builder::new().prefix(".unik-pack-").tempfile_in(&dir).map_err(werr)?;
    let layer = write_layer(&plan, &dir, out, mtime)?;
    let created = crate::state::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime));
    let created = created.replace(".000000000Z", "Z");
    let config = json!({
        "architecture": architecture(),
        "os": "linux",
        "created": created,
        "config": {
            "Entrypoint": [plan.entrypoint],
            "Cmd": if plan.args.is_empty() { serde_json::Value::Null } else { json!(plan.args) },
            "Labels": plan.settings,
        },
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id.name()] },
        "history": [{ "created": created, "created_by": "unik pack" }],
    });
    let config = serde_json::to_vec(&config).map_err(|e| werr(e.into()))?;
    let config_digest = Digest::of(&config);
    let mut outer = Tar::new(staged.as_file(), mtime);
    let blob = Content::File(layer.blob, layer.digest.size);
    match spec.format {
        Format::Docker => {
            let layer_path = format!("{}/layer.tar", layer.digest.hex);
            let manifest = json!([{
                "Config": format!("{}.json", config_digest.hex),
                "RepoTags": [spec.reference.familiar()],
                "Layers": [layer_path],
            }]);
            let manifest = serde_json::to_vec(&manifest).map_err(|e| werr(e.into()))?;
            outer.dir(&layer.digest.hex).map_err(werr)?;
            outer.file(&layer_path, 0o644, &blob).map_err(werr)?;
            outer
                .file(&format!("{}.json", config_digest.hex), 0o644, &Content::Bytes(config))
                .map_err(werr)?;
            outer.file("manifest.json", 0o644, &Content::Bytes(manifest)).map_err(werr)?;
        }
        Format::Oci => {
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest.name(),
                    "size": config_digest.size,
                },
                "layers": [{
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer.digest.name(),
                    "size": layer.digest.size,
                }],
                "annotations": plan.settings,
            });
            let manifest = serde_json::to_vec(&manifest).map_err(|e| werr(e.into()))?;
            let manifest_digest = Digest::of(&manifest);
            let index = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest.name(),
                    "size": manifest_digest.size,
                    "platform": { "architecture": architecture(), "os": "linux" },
                    "annotations": {
                        "io.containerd.image.name": spec.reference.full(),
                        "org.opencontainers.image.ref.name": spec.reference.tag(),
                    },
                }],
            });
            let index = serde_json::to_vec(&index).map_err(|e| werr(e.into()))?;
            let layout = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();
            outer.file("oci-layout", 0o644, &Content::Bytes(layout)).map_err(werr)?;
            outer.file("index.json", 0o644, &Content::Bytes(index)).map_err(werr)?;
            outer.dir("blobs").map_err(werr)?;
            outer.dir("blobs/sha256").map_err(werr)?;
            for (digest, content) in [
                (&layer.digest, blob),
                (&config_digest, Content::Bytes(config)),
                (&manifest_digest, Content::Bytes(manifest)),
            ] {
                outer.file(&format!("blobs/sha256/{}", digest.hex), 0o644, &content).map_err(werr)?;
            }
        }
    }
    let mut file = outer.finish().map_err(werr)?;
    file.flush().map_err(werr)?;
    let mut perms = staged.as_file().metadata().map_err(werr)?.permissions();
    // A temporary file is its owner's alone; an image archive is for anyone to load.
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    staged.as_file().set_permissions(perms).map_err(werr)?;
    staged.as_file().sync_all().map_err(werr)?;
    staged.persist(out).map_err(|e| werr(e.error))?;
    Ok(Packed {
        image_id: config_digest.name(),
        name: spec.reference.familiar(),
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
