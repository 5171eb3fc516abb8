use std::fs;

use base64::Engine;

use super::*;

/// A minimal solo5-hvt ELF for this host with manifest devices `(name, type)`.
pub(crate) fn hvt_elf(devices: &[(&str, u32)]) -> Vec<u8> {
    let note = |ntype: u32, desc: &[u8], pad: usize| {
        let mut n = Vec::new();
        n.extend_from_slice(&6u32.to_le_bytes());
        n.extend_from_slice(&u32::try_from(desc.len() + pad).unwrap().to_le_bytes());
        n.extend_from_slice(&ntype.to_le_bytes());
        n.extend_from_slice(b"Solo5\0\0\0");
        n.extend(std::iter::repeat_n(0, pad));
        n.extend_from_slice(desc);
        n
    };
    let abi = note(0x3149_4241, &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0);
    let mut mft = vec![1, 0, 0, 0];
    mft.extend_from_slice(&u32::try_from(devices.len() + 1).unwrap().to_le_bytes());
    let mut reserved = [0u8; 104];
    reserved[68..72].copy_from_slice(&(1u32 << 30).to_le_bytes());
    mft.extend_from_slice(&reserved);
    for (name, kind) in devices {
        let mut e = [0u8; 104];
        e[..name.len()].copy_from_slice(name.as_bytes());
        e[68..72].copy_from_slice(&kind.to_le_bytes());
        mft.extend_from_slice(&e);
    }
    let mft = note(0x3154_464d, &mft, 4);
    let text = [0xf4u8; 16];
    let phoff = 64u64;
    let data = phoff + 3 * 56;
    let mut out = vec![0u8; usize::try_from(data).unwrap()];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    out[6] = 1;
    out[16..18].copy_from_slice(&2u16.to_le_bytes());
    out[18..20].copy_from_slice(&HOST_MACHINE.to_le_bytes());
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes());
    out[32..40].copy_from_slice(&phoff.to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&3u16.to_le_bytes());
    let mut off = data;
    for (i, (ptype, flags, vaddr, bytes, align)) in [
        (1u32, 5u32, 0x10_0000u64, &text[..], 0x1000u64),
        (4, 4, 0, &abi[..], 4),
        (4, 4, 0, &mft[..], 8),
    ]
    .into_iter()
    .enumerate()
    {
        let p = 64 + i * 56;
        let len = bytes.len() as u64;
        let memsz = if ptype == 1 { 0x1000 } else { len };
        for (at, v) in [(8, off), (16, vaddr), (24, vaddr), (32, len), (40, memsz), (48, align)] {
            out[p + at..p + at + 8].copy_from_slice(&v.to_le_bytes());
        }
        out[p..p + 4].copy_from_slice(&ptype.to_le_bytes());
        out[p + 4..p + 8].copy_from_slice(&flags.to_le_bytes());
        off += len;
    }
    out.extend_from_slice(&text);
    out.extend_from_slice(&abi);
    out.extend_from_slice(&mft);
    out
}

/// A bundle directory with `config.json` and a rootfs holding `files`.
pub(crate) fn bundle(config: serde_json::Value, files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("rootfs")).unwrap();
    for (name, data) in files {
        let p = dir.path().join("rootfs").join(name.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    fs::write(dir.path().join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    dir
}

pub(crate) fn config(args: &[&str], annotations: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": { "args": args, "cwd": "/", "user": { "uid": 0, "gid": 0 } },
        "root": { "path": "rootfs" },
        "annotations": annotations,
        "linux": { "resources": { "memory": { "limit": 64 << 20 } } }
    })
}

fn vm(b: &tempfile::TempDir) -> VmConfig {
    match load(b.path()).unwrap().kind {
        BundleKind::Unikernel(cfg) => *cfg,
        BundleKind::NotUnikernel(_) => panic!("not recognised as a unikernel"),
    }
}

#[test]
fn test_args0_with_solo5_note_is_a_unikernel() {
    let b = bundle(
        config(&["/app.hvt", "a", "b"], serde_json::json!({})),
        &[("/app.hvt", &hvt_elf(&[]))],
    );
    let cfg = vm(&b);
    assert_eq!(cfg.kernel, b.path().join("rootfs/app.hvt").canonicalize().unwrap());
    assert_eq!(cfg.cmdline, ["a", "b"]);
    assert_eq!(cfg.mem_mib, 64);
}

#[test]
fn test_ordinary_container_is_not_a_unikernel() {
    let b = bundle(config(&["/bin/sh"], serde_json::json!({})), &[("/bin/sh", b"\x7fELF not solo5")]);
    assert!(matches!(load(b.path()).unwrap().kind, BundleKind::NotUnikernel(_)));
    let b = bundle(config(&[], serde_json::json!({})), &[]);
    assert!(matches!(load(b.path()).unwrap().kind, BundleKind::NotUnikernel(_)));
}

#[test]
fn test_a_kubernetes_sandbox_is_never_a_unikernel() {
    // containerd's pod_annotations give the pause container the pod's dev.unik.* annotations,
    // a kernel among them: it is still an ordinary container.
    for (key, value) in [
        ("io.kubernetes.cri.container-type", "sandbox"),
        ("io.kubernetes.cri-o.ContainerType", "sandbox"),
    ] {
        let ann = serde_json::json!({ key: value, KERNEL: "/app.hvt", NET_TEMPLATE: "ip={ip}" });
        let b = bundle(config(&["/pause"], ann), &[("/app.hvt", &hvt_elf(&[]))]);
        let BundleKind::NotUnikernel(reason) = load(b.path()).unwrap().kind else {
            panic!("a pod's sandbox ({key}) taken for a unikernel");
        };
        assert_eq!(reason, format!("{key}={value}: a Kubernetes pod's sandbox container"));
    }
    // The pod's other containers are unikernels by the same annotations.
    let ann = serde_json::json!({ "io.kubernetes.cri.container-type": "container", KERNEL: "/app.hvt" });
    let b = bundle(config(&["/app.hvt"], ann), &[("/app.hvt", &hvt_elf(&[]))]);
    assert!(matches!(load(b.path()).unwrap().kind, BundleKind::Unikernel(_)));
}

#[test]
fn test_unik_annotations() {
    let ann = serde_json::json!({ KERNEL: "k/app", CMDLINE: "x y", MEM: "32", "dev.unik.block.storage": "/disk.img" });
    let b = bundle(
        config(&[], ann),
        &[("/k/app", &hvt_elf(&[("storage", 1)])), ("/disk.img", &[0; 512])],
    );
    let cfg = vm(&b);
    assert_eq!(cfg.cmdline, ["x", "y"]);
    assert_eq!(cfg.mem_mib, 32);
    assert_eq!(cfg.blocks.len(), 1);
    assert_eq!(cfg.blocks[0].name, "storage");
    // The debugger is off by default.
    assert_eq!(cfg.gdb, None);
}

#[test]
fn test_gdb_annotation() {
    let kernel = hvt_elf(&[]);
    let with = |port: &str| {
        let ann = serde_json::json!({ KERNEL: "app", "dev.unik.gdb": port });
        let b = bundle(config(&[], ann), &[("/app", &kernel)]);
        load(b.path()).map(|loaded| match loaded.kind {
            BundleKind::Unikernel(cfg) => cfg.gdb,
            BundleKind::NotUnikernel(_) => panic!("not recognised as a unikernel"),
        })
    };
    assert_eq!(with("1234").unwrap(), Some(1234));
    for bad in ["0", "65536", "gdb"] {
        let err = with(bad).unwrap_err().to_string();
        assert!(
            err.contains(&format!("dev.unik.gdb: '{bad}' is not a port from 1 to 65535")),
            "{err}"
        );
    }
}

#[test]
fn test_an_unknown_unik_annotation_is_an_error_naming_it() {
    for (key, value) in [("dev.unik.memory", "32"), ("dev.unik.block.", "/disk.img")] {
        let ann = serde_json::json!({ KERNEL: "k/app", key: value });
        let b = bundle(config(&[], ann), &[("/k/app", &hvt_elf(&[]))]);
        let err = load(b.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("unknown annotation '{key}': unik knows dev.unik.kernel")),
            "{err}"
        );
        assert!(err.contains("dev.unik.block.<NAME>"), "{err}");
    }
    // The same in /unik.json, as docker users carry them.
    let b = bundle(
        config(&["/app"], serde_json::json!({})),
        &[("/app", &hvt_elf(&[])), ("/unik.json", br#"{"dev.unik.kernal": "/app"}"#)],
    );
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("unknown annotation 'dev.unik.kernal'"), "{err}");
}

#[test]
fn test_urunc_annotations_and_urunc_json() {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ann = serde_json::json!({
        "com.urunc.unikernel.binary": b64("/unikernel/app.hvt"),
        "com.urunc.unikernel.hypervisor": b64("hvt"),
        "com.urunc.unikernel.unikernelType": b64("mirage"),
        "com.urunc.unikernel.cmdline": b64("--hello"),
        "com.urunc.unikernel.block": b64("/data.img"),
    });
    let files: &[(&str, &[u8])] = &[("/unikernel/app.hvt", &hvt_elf(&[("rootfs", 1)])), ("/data.img", &[0; 1024])];
    let b = load(bundle(config(&[], ann.clone()), files).path()).unwrap();
    // MirageOS on hvt gets its network settings as urunc gives them: --ipv4 and --ipv4-gateway.
    assert_eq!(b.network.template.as_deref(), Some("mirage"));
    let BundleKind::Unikernel(cfg) = b.kind else {
        panic!("a unikernel")
    };
    assert_eq!(cfg.cmdline, ["--hello"]);
    assert_eq!(cfg.blocks[0].name, "rootfs");
    // The same keys in urunc.json instead of annotations.
    let json = serde_json::to_vec(&ann).unwrap();
    let mut with_json = files.to_vec();
    with_json.push(("/urunc.json", &json));
    let cfg = vm(&bundle(config(&[], serde_json::json!({})), &with_json));
    assert_eq!(cfg.cmdline, ["--hello"]);
    // Unikraft for QEMU or Firecracker: unik boots it itself, with the Linux boot protocol; its
    // block image becomes virtio-blk "rootfs", its initrd is taken, the network template is
    // Unikraft's.
    let kraft = serde_json::json!({
        "com.urunc.unikernel.binary": b64("/unikernel/kernel"),
        "com.urunc.unikernel.hypervisor": b64("firecracker"),
        "com.urunc.unikernel.unikernelType": b64("unikraft"),
        "com.urunc.unikernel.block": b64("/data.img"),
        "com.urunc.unikernel.initrd": b64("/initrd"),
        "com.urunc.unikernel.cmdline": b64("-c /etc/app.conf"),
    });
    let files: &[(&str, &[u8])] = &[
        ("/unikernel/kernel", b"not checked until boot"),
        ("/data.img", &[0; 1024]),
        ("/initrd", b"cpio"),
    ];
    let b = load(bundle(config(&[], kraft), files).path()).unwrap();
    assert_eq!(b.network.template.as_deref(), Some("unikraft"));
    assert!(b.network.vnet_hdr && b.network.card_optional);
    assert_eq!(b.network.devices, ["eth0"]);
    let BundleKind::Unikernel(cfg) = b.kind else {
        panic!("a unikernel")
    };
    assert_eq!(cfg.kind, Some(vmm::GuestKind::Linux));
    assert_eq!((cfg.blocks.len(), cfg.blocks[0].name.as_str()), (1, "rootfs"));
    assert!(cfg.initrd.as_ref().unwrap().ends_with("initrd"));
    // As urunc starts Unikraft: a program name, Unikraft's own parameters (the network template
    // and the devices go before the `--`), then the application's arguments.
    assert_eq!(cfg.cmdline, ["kernel", "--", "-c", "/etc/app.conf"]);
    // An unknown hypervisor is refused clearly.
    let spt = serde_json::json!({ "com.urunc.unikernel.binary": b64("/u"), "com.urunc.unikernel.hypervisor": b64("spt"), "com.urunc.unikernel.unikernelType": b64("rumprun") });
    let err = load(bundle(config(&[], spt), &[]).path()).unwrap_err().to_string();
    assert!(
        err.contains("'rumprun' with hypervisor 'spt' is not supported (hvt, qemu and firecracker are)"),
        "{err}"
    );
    let bad = serde_json::json!({ "com.urunc.unikernel.binary": "***" });
    let err = load(bundle(config(&[], bad), &[]).path()).unwrap_err().to_string();
    assert!(err.contains("not base64"), "{err}");
}

#[test]
fn test_devices_must_be_wired() {
    let b = bundle(config(&["/app"], serde_json::json!({})), &[("/app", &hvt_elf(&[("storage", 1)]))]);
    let err = load(b.path()).unwrap_err().to_string();
    assert!(
        err.contains("manifest block device 'storage' has no image: set annotation dev.unik.block.storage"),
        "{err}"
    );
    // docker users cannot set annotations: the error points them at /unik.json.
    assert!(
        err.contains("(or that key in /unik.json, for engines that pass no annotations"),
        "{err}"
    );
    let mut c = config(&["/app"], serde_json::json!({ NET_TEMPLATE: "mirage" }));
    c["linux"]["namespaces"] = serde_json::json!([{ "type": "network", "path": "/run/netns/x" }]);
    c["mounts"] = serde_json::json!([{ "destination": "/etc/resolv.conf", "source": "/r/resolv.conf", "type": "bind" }]);
    let b = bundle(c, &[("/app", &hvt_elf(&[("service0", 2)]))]);
    let loaded = load(b.path()).unwrap();
    assert_eq!(loaded.network.devices, ["service0"]);
    // An hvt guest's tap has no virtio-net header, and its manifest requires the card.
    assert!(!loaded.network.vnet_hdr && !loaded.network.card_optional);
    assert_eq!(loaded.network.netns, Netns::Path("/run/netns/x".into()));
    assert_eq!(loaded.network.template.as_deref(), Some("mirage"));
    assert_eq!(loaded.network.resolv_conf, Some("/r/resolv.conf".into()));
    let mut c = config(&["/app"], serde_json::json!({}));
    c["linux"]["namespaces"] = serde_json::json!([{ "type": "network" }]);
    assert_eq!(
        load(bundle(c, &[("/app", &hvt_elf(&[]))]).path()).unwrap().network.netns,
        Netns::New
    );
    // docker --network host names the host's own namespace by path: that is the host's.
    let mut c = config(&["/app"], serde_json::json!({}));
    c["linux"]["namespaces"] = serde_json::json!([{ "type": "network", "path": "/proc/self/ns/net" }]);
    assert_eq!(
        load(bundle(c, &[("/app", &hvt_elf(&[]))]).path()).unwrap().network.netns,
        Netns::Host
    );
}

#[test]
fn test_paths_cannot_escape_the_rootfs() {
    let b = bundle(config(&[], serde_json::json!({ KERNEL: "../config.json" })), &[]);
    assert!(load(b.path()).unwrap_err().to_string().contains("leaves the rootfs"));
    let b = bundle(config(&[], serde_json::json!({ KERNEL: "/link" })), &[]);
    std::os::unix::fs::symlink("../../../../../../etc/passwd", b.path().join("rootfs/link")).unwrap();
    assert!(load(b.path()).unwrap_err().to_string().contains("outside the rootfs"));
    // An absolute target means the rootfs's /etc/passwd, not the host's.
    let b = bundle(config(&[], serde_json::json!({ KERNEL: "/link" })), &[]);
    std::os::unix::fs::symlink("/etc/passwd", b.path().join("rootfs/link")).unwrap();
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("'/link' in the rootfs: No such file"), "{err}");
    let b = bundle(config(&[], serde_json::json!({ KERNEL: "/loop" })), &[]);
    std::os::unix::fs::symlink("/loop", b.path().join("rootfs/loop")).unwrap();
    assert!(load(b.path()).unwrap_err().to_string().contains("too many levels"));
}

#[test]
fn test_memory_defaults_and_missing_config() {
    let mut c = config(&["/app"], serde_json::json!({}));
    c["linux"] = serde_json::json!({});
    assert_eq!(vm(&bundle(c, &[("/app", &hvt_elf(&[]))])).mem_mib, DEFAULT_MEM_MIB);
    let dir = tempfile::tempdir().unwrap();
    assert!(load(dir.path()).unwrap_err().to_string().contains("config.json"));
}

#[test]
fn test_unik_json_in_the_rootfs_supplies_annotations() {
    let json = serde_json::to_vec(&serde_json::json!({ NET_TEMPLATE: "mirage", "other.key": "x" })).unwrap();
    let b = bundle(
        config(&["/app"], serde_json::json!({})),
        &[("/app", &hvt_elf(&[("service0", 2)])), ("/unik.json", &json)],
    );
    let loaded = load(b.path()).unwrap();
    assert_eq!(loaded.network.template.as_deref(), Some("mirage"));
    assert!(!loaded.annotations.contains_key("other.key"));
    let b = bundle(
        config(&["/app"], serde_json::json!({})),
        &[("/app", &hvt_elf(&[])), ("/unik.json", b"{")],
    );
    assert!(load(b.path()).unwrap_err().to_string().contains("unik.json"));
}

#[test]
fn test_memory_limit_mapping() {
    let mib = |l| guest_mem_mib(l).unwrap();
    assert_eq!(mib(None), DEFAULT_MEM_MIB);
    assert_eq!(mib(Some(-1)), DEFAULT_MEM_MIB);
    assert_eq!(mib(Some(0)), DEFAULT_MEM_MIB);
    assert_eq!(mib(Some(1)), MIN_MEM_MIB);
    assert_eq!(mib(Some((3 << 20) - 1)), MIN_MEM_MIB);
    assert_eq!(mib(Some((7 << 20) + (1 << 19))), 7);
    assert_eq!(mib(Some(1 << 30)), 1024);
    assert_eq!(mib(Some(4 << 30)), vmm::memory::MEM_MAX_MIB);
    // Above the largest guest: an error naming the field, not a smaller guest.
    let err = guest_mem_mib(Some(8 << 30)).unwrap_err();
    assert_eq!(
        err,
        "linux.resources.memory.limit: 8589934592 bytes is more guest memory than unik can give (4096 MiB at most): ask for at most -m 4096m"
    );
    let mut big = config(&["/app"], serde_json::json!({}));
    big["linux"]["resources"] = serde_json::json!({ "memory": { "limit": 8i64 << 30 } });
    let b = bundle(big, &[("/app", &hvt_elf(&[]))]);
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("linux.resources.memory.limit: 8589934592 bytes is more"), "{err}");
    for bad in ["0", "1", "lots", "-5", "4097", "17592186044415"] {
        let b = bundle(config(&["/app"], serde_json::json!({ MEM: bad })), &[("/app", &hvt_elf(&[]))]);
        let err = load(b.path()).unwrap_err().to_string();
        assert!(err.contains("is not a number of MiB"), "{err}");
    }
    let mut c = config(&["/app"], serde_json::json!({}));
    c["linux"]["resources"]["memory"]["limit"] = serde_json::json!(-1);
    assert_eq!(vm(&bundle(c, &[("/app", &hvt_elf(&[]))])).mem_mib, DEFAULT_MEM_MIB);
}

#[test]
fn test_args0_needs_solo5_marks() {
    let solo5 = hvt_elf(&[]);
    let owners: Vec<usize> = solo5
        .windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"Solo5\0")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(owners.len(), 2, "the ABI and manifest notes");
    // The same ELF with both notes' owner changed is an ordinary executable.
    let mut foreign = solo5.clone();
    for at in &owners {
        foreign[*at..*at + 5].copy_from_slice(b"GNU\0\0");
    }
    let b = bundle(config(&["/app"], serde_json::json!({})), &[("/app", &foreign)]);
    assert!(matches!(load(b.path()).unwrap().kind, BundleKind::NotUnikernel(_)));
    // One of Solo5's marks is enough: the loader, not runc, says what is wrong with the rest.
    let mut damaged = solo5.clone();
    damaged[owners[0]..owners[0] + 5].copy_from_slice(b"GNU\0\0");
    let b = bundle(config(&["/app"], serde_json::json!({})), &[("/app", &damaged)]);
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("No Solo5 ABI information found in executable"), "{err}");
    // An spt unikernel (ABI target 2) is a unikernel unik cannot run, not an ordinary container.
    let mut spt = solo5.clone();
    spt[owners[0] + 8] = 2;
    let b = bundle(config(&["/app"], serde_json::json!({})), &[("/app", &spt)]);
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("Executable is not for the solo5-hvt target"), "{err}");
    // args[0] that does not exist in the rootfs: runc's business.
    let b = bundle(config(&["/nope"], serde_json::json!({})), &[]);
    assert!(matches!(load(b.path()).unwrap().kind, BundleKind::NotUnikernel(_)));
}

#[test]
fn test_args0_symlink_out_of_the_rootfs_is_not_followed() {
    let b = bundle(config(&["/app"], serde_json::json!({})), &[]);
    let outside = b.path().join("outside.hvt");
    fs::write(&outside, hvt_elf(&[])).unwrap();
    std::os::unix::fs::symlink(&outside, b.path().join("rootfs/app")).unwrap();
    assert!(matches!(load(b.path()).unwrap().kind, BundleKind::NotUnikernel(_)));
    // Symlinks that stay inside are followed inside, absolute ones from the rootfs.
    let b = bundle(
        config(&["/bin/app"], serde_json::json!({})),
        &[("/opt/real.hvt", &hvt_elf(&[])), ("/bin/x", b"")],
    );
    std::os::unix::fs::symlink("../opt/real.hvt", b.path().join("rootfs/bin/app")).unwrap();
    assert!(vm(&b).kernel.ends_with("rootfs/opt/real.hvt"));
    fs::remove_file(b.path().join("rootfs/bin/app")).unwrap();
    std::os::unix::fs::symlink("/opt", b.path().join("rootfs/o")).unwrap();
    std::os::unix::fs::symlink("/o/./real.hvt", b.path().join("rootfs/bin/app")).unwrap();
    assert!(vm(&b).kernel.ends_with("rootfs/opt/real.hvt"));
}

#[test]
fn test_block_images_cannot_escape_the_rootfs() {
    let ann = serde_json::json!({ KERNEL: "/app", "dev.unik.block.storage": "../../etc/passwd" });
    let b = bundle(config(&[], ann), &[("/app", &hvt_elf(&[("storage", 1)]))]);
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("leaves the rootfs"), "{err}");
}

#[test]
fn test_an_annotation_and_args0_naming_different_kernels_is_an_error_naming_both() {
    let ann = serde_json::json!({ KERNEL: "/unikernel.hvt" });
    let files: &[(&str, &[u8])] = &[("/unikernel.hvt", &hvt_elf(&[])), ("/app.hvt", &hvt_elf(&[]))];
    let b = bundle(config(&["/app.hvt"], ann.clone()), files);
    let err = load(b.path()).unwrap_err().to_string();
    assert!(
        err.contains("dev.unik.kernel names '/unikernel.hvt' but process.args[0] names '/app.hvt', another file"),
        "{err}"
    );
    // The same file by two spellings agrees.
    let b = bundle(config(&["unikernel.hvt"], ann), files);
    assert_eq!(vm(&b).kernel.file_name().unwrap(), "unikernel.hvt");
}

#[test]
fn test_cmdline_prefers_process_args() {
    let ann = serde_json::json!({ KERNEL: "/app", CMDLINE: "from annotation" });
    let b = bundle(config(&["/app", "from", "args"], ann.clone()), &[("/app", &hvt_elf(&[]))]);
    assert_eq!(vm(&b).cmdline, ["from", "args"]);
    let b = bundle(config(&["/app"], ann), &[("/app", &hvt_elf(&[]))]);
    assert_eq!(vm(&b).cmdline, ["from", "annotation"]);
}

#[test]
fn test_linux_kind_bundles() {
    // dev.unik.kind=linux: every dev.unik.block.<NAME> is a virtio-blk device, in name order.
    let ann = serde_json::json!({
        KERNEL: "/vmlinux",
        KIND: "linux",
        "dev.unik.block.b": "/b.img",
        "dev.unik.block.a": "/a.img",
        INITRD: "/initrd.img",
    });
    let files: &[(&str, &[u8])] = &[
        ("/vmlinux", b"x"),
        ("/a.img", &[0; 512]),
        ("/b.img", &[0; 512]),
        ("/initrd.img", b"x"),
    ];
    let b = load(bundle(config(&["/vmlinux", "console=ttyS0"], ann), files).path()).unwrap();
    assert_eq!(b.network.template.as_deref(), Some("linux"));
    let BundleKind::Unikernel(cfg) = b.kind else {
        panic!("a unikernel")
    };
    assert_eq!(cfg.blocks.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(cfg.cmdline, ["console=ttyS0"]);
    // Without dev.unik.kind the kernel image decides: a bzImage is a Linux-boot guest.
    let mut bz = vec![0u8; 0x400];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    let b = load(bundle(config(&[], serde_json::json!({ KERNEL: "/bzImage" })), &[("/bzImage", &bz)]).path()).unwrap();
    let BundleKind::Unikernel(cfg) = b.kind else {
        panic!("a unikernel")
    };
    assert_eq!(cfg.kind, Some(vmm::GuestKind::Linux));
    // A bad kind and a missing initrd are named.
    let bad = serde_json::json!({ KERNEL: "/vmlinux", KIND: "qemu" });
    let err = load(bundle(config(&[], bad), &[("/vmlinux", b"x")]).path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("dev.unik.kind: unknown guest kind 'qemu'"), "{err}");
    let missing = serde_json::json!({ KERNEL: "/vmlinux", KIND: "linux", INITRD: "/nope" });
    let err = load(bundle(config(&[], missing), &[("/vmlinux", b"x")]).path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("'/nope' in the rootfs: No such file"), "{err}");
}

#[test]
fn test_vcpus_from_annotation_or_cpu_quota() {
    assert_eq!(guest_vcpus(None, None), Ok(1));
    assert_eq!(guest_vcpus(None, Some((150_000, 100_000))), Ok(2));
    assert_eq!(guest_vcpus(None, Some((100_000, 100_000))), Ok(1));
    assert_eq!(guest_vcpus(None, Some((-1, 100_000))), Ok(1));
    assert_eq!(guest_vcpus(None, Some((i64::MAX, 1))), Ok(MAX_VCPUS));
    assert_eq!(guest_vcpus(Some(&"4".to_string()), Some((100_000, 100_000))), Ok(4));
    for bad in ["0", "65", "many"] {
        let err = guest_vcpus(Some(&bad.to_string()), None).unwrap_err();
        assert!(err.contains("dev.unik.cpus"), "{err}");
    }
    // In a bundle: a Linux-boot guest takes it, an hvt guest stays uniprocessor.
    let mut c = config(&[], serde_json::json!({ KERNEL: "/vmlinux", KIND: "linux", CPUS: "2" }));
    c["linux"]["resources"] = serde_json::json!({ "cpu": { "quota": 300_000, "period": 100_000 } });
    let b = load(bundle(c, &[("/vmlinux", b"x")]).path()).unwrap();
    let BundleKind::Unikernel(cfg) = b.kind else {
        panic!("a unikernel")
    };
    assert_eq!(cfg.vcpus, 2);
}

pub(crate) fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn test_rootfs_files_are_read_safely() {
    // /unik.json pointing at a file of the host: resolved inside the rootfs, where it is not.
    let host = tempfile::NamedTempFile::new().unwrap();
    fs::write(host.path(), br#"{"dev.unik.cmdline": "from the host"}"#).unwrap();
    let b = bundle(config(&["/app"], serde_json::json!({})), &[("/app", &hvt_elf(&[]))]);
    std::os::unix::fs::symlink(host.path(), b.path().join("rootfs/unik.json")).unwrap();
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("'unik.json' in the rootfs: No such file or directory"), "{err}");
    // FIFOs are refused, not waited on: unik.json, urunc.json, the kernel, config.json.
    let b = bundle(config(&["/app"], serde_json::json!({})), &[("/app", &hvt_elf(&[]))]);
    mkfifo(&b.path().join("rootfs/unik.json"));
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("unik.json: not a regular file"), "{err}");
    let b = bundle(config(&["/app"], serde_json::json!({})), &[("/app", &hvt_elf(&[]))]);
    mkfifo(&b.path().join("rootfs/urunc.json"));
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("urunc.json: not a regular file"), "{err}");
    let b = bundle(config(&["/k"], serde_json::json!({ KERNEL: "/k", KIND: "hvt" })), &[]);
    mkfifo(&b.path().join("rootfs/k"));
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
    let b = bundle(config(&["/app"], serde_json::json!({})), &[("/app", &hvt_elf(&[]))]);
    fs::remove_file(b.path().join("config.json")).unwrap();
    mkfifo(&b.path().join("config.json"));
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("config.json: not a regular file"), "{err}");
    // A kernel larger than the guest's memory is refused before it is read.
    let big = vec![0u8; 3 << 20];
    let b = bundle(
        config(&["/k"], serde_json::json!({ KERNEL: "/k", KIND: "hvt", MEM: "2" })),
        &[("/k", &big)],
    );
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("3145728 bytes, more than the 2097152 bytes of guest memory"), "{err}");
}

#[test]
fn test_a_damaged_unikernel_kernel_is_refused_not_booted_as_linux() {
    // e_phnum zeroed: the notes cannot be found through the program headers any more.
    let mut damaged = hvt_elf(&[]);
    damaged[56..58].fill(0);
    let b = bundle(
        config(&["/app"], serde_json::json!({ KERNEL: "/app.hvt" })),
        &[("/app.hvt", &damaged)],
    );
    // Nothing in it says Linux (no program headers at all), so the hvt loader explains; before,
    // any ELF whose notes could not be found was booted as Linux.
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("invalid executable"), "{err}");
}

#[test]
fn test_not_a_unikernel_says_which_check_failed() {
    let reason =
        |args: &[&str], files: &[(&str, &[u8])]| match load(bundle(config(args, serde_json::json!({})), files).path()).unwrap().kind {
            BundleKind::NotUnikernel(reason) => reason.strip_prefix(NOT_ANNOTATED).expect("a program's reason").to_string(),
            BundleKind::Unikernel(_) => panic!("{args:?} taken for a unikernel"),
        };
    assert_eq!(reason(&[], &[]), "process.args is empty");
    let missing = reason(&["/app.hvt"], &[]);
    assert!(
        missing.starts_with("process.args[0] '/app.hvt' in the rootfs: No such file or directory"),
        "{missing}"
    );
    let script = "#!/bin/sh\necho a script, not a unikernel, long enough for an ELF header\n";
    assert_eq!(
        reason(&["/app.hvt"], &[("/app.hvt", script.as_bytes())]),
        "process.args[0] '/app.hvt' is not an ELF file"
    );
    let truncated = &hvt_elf(&[])[..40];
    assert_eq!(
        reason(&["/app.hvt"], &[("/app.hvt", truncated)]),
        "process.args[0] '/app.hvt' is too short to be a kernel (not an ELF file)"
    );
    let mut plain = hvt_elf(&[]);
    let owners: Vec<usize> = plain
        .windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"Solo5\0")
        .map(|(i, _)| i)
        .collect();
    for at in owners {
        plain[at..at + 5].copy_from_slice(b"GNU\0\0");
    }
    let elf = reason(&["/bin/app"], &[("/bin/app", &plain)]);
    assert!(elf.contains("'/bin/app' is an ELF executable without Solo5's marks"), "{elf}");
    let mut bz = vec![0u8; 0x400];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    let bz = reason(&["/vmlinuz"], &[("/vmlinuz", &bz)]);
    assert!(
        bz.contains("is a Linux kernel image (bzImage); name it in the dev.unik.kernel annotation"),
        "{bz}"
    );
}

/// A bind mount as docker writes `-v SOURCE:DEST` (with `ro`: `-v SOURCE:DEST:ro`).
fn bind(source: &std::path::Path, destination: &str, ro: bool) -> serde_json::Value {
    let mut options = vec!["rbind", "rprivate"];
    if ro {
        options.insert(1, "ro");
    }
    serde_json::json!({ "destination": destination, "type": "bind", "source": source, "options": options })
}

/// A Linux-boot bundle whose one block device is `image`, with `mounts`.
fn linux_with_block(image: &str, mounts: serde_json::Value, files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let mut c = config(
        &["/vmlinux"],
        serde_json::json!({ KERNEL: "/vmlinux", KIND: "linux", "dev.unik.block.d0": image }),
    );
    c["mounts"] = mounts;
    let mut all = vec![("/vmlinux", b"x".as_slice())];
    all.extend_from_slice(files);
    bundle(c, &all)
}

#[test]
fn test_a_bind_mounted_file_is_the_disk_the_guest_uses() {
    let host = tempfile::tempdir().unwrap();
    let disk = host.path().join("disk.img");
    fs::write(&disk, [b'H'; 512]).unwrap();
    // docker run -v HOST/disk.img:/disk.img: the image's own /disk.img is hidden.
    for ro in [false, true] {
        let b = linux_with_block(
            "/disk.img",
            serde_json::json!([bind(&disk, "/disk.img", ro)]),
            &[("/disk.img", &[0; 512])],
        );
        let cfg = vm(&b);
        assert_eq!(cfg.blocks[0].path, disk);
        assert_eq!(cfg.blocks[0].read_only, ro);
        assert_eq!(cfg.roots[&disk], vmm::host::files::FileRoot::Host);
        // The kernel is still the rootfs's, opened inside it.
        let rootfs = b.path().join("rootfs").canonicalize().unwrap();
        assert_eq!(cfg.roots[&cfg.kernel], vmm::host::files::FileRoot::Dir(rootfs));
        assert_eq!(cfg.roots.len(), 2);
    }
    // --mount type=bind,…,readonly writes the same; a typeless mount with the bind option too.
    let typeless = serde_json::json!([{ "destination": "/disk.img", "source": disk, "options": ["bind", "ro"] }]);
    let cfg = vm(&linux_with_block("/disk.img", typeless, &[]));
    assert_eq!((cfg.blocks[0].path.as_path(), cfg.blocks[0].read_only), (disk.as_path(), true));
}

#[test]
fn test_a_bind_mounted_directory_holds_the_disk_and_the_last_mount_wins() {
    let host = tempfile::tempdir().unwrap();
    let (dir, other) = (host.path().join("volume"), host.path().join("other.img"));
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("disk.img"), [b'V'; 512]).unwrap();
    fs::write(&other, [b'O'; 512]).unwrap();
    // docker run -v HOST/volume:/data: /data/disk.img is the volume's, opened inside it.
    let b = linux_with_block("/data/disk.img", serde_json::json!([bind(&dir, "/data", false)]), &[]);
    let cfg = vm(&b);
    assert_eq!(cfg.blocks[0].path, dir.join("disk.img"));
    assert_eq!(cfg.roots[&dir.join("disk.img")], vmm::host::files::FileRoot::Dir(dir.clone()));
    assert!(!cfg.blocks[0].read_only);
    // A ro directory makes its files read-only.
    let b = linux_with_block("/data/disk.img", serde_json::json!([bind(&dir, "/data", true)]), &[]);
    assert!(vm(&b).blocks[0].read_only);
    // Longest destination, as docker orders them (parents first): the file mount inside.
    let mounts = serde_json::json!([bind(&dir, "/data", false), bind(&other, "/data/disk.img", false)]);
    let b = linux_with_block("/data/disk.img", mounts, &[]);
    assert_eq!(vm(&b).blocks[0].path, other);
    // In the other order the directory is mounted over the file, which it hides, as in the kernel.
    let mounts = serde_json::json!([bind(&other, "/data/disk.img", false), bind(&dir, "/data", false)]);
    let b = linux_with_block("/data/disk.img", mounts, &[]);
    assert_eq!(vm(&b).blocks[0].path, dir.join("disk.img"));
    // A symlink in the rootfs leads into the mount, as the container would see it.
    let b = linux_with_block("/disk.img", serde_json::json!([bind(&dir, "/data", false)]), &[]);
    std::os::unix::fs::symlink("/data/disk.img", b.path().join("rootfs/disk.img")).unwrap();
    assert_eq!(vm(&b).blocks[0].path, dir.join("disk.img"));
    // A mount over the root itself is not one runc makes: the rootfs is what is there.
    let b = linux_with_block(
        "/disk.img",
        serde_json::json!([bind(&dir, "/", false)]),
        &[("/disk.img", &[0; 512])],
    );
    assert!(vm(&b).blocks[0].path.ends_with("rootfs/disk.img"));
    // A relative source is the bundle's.
    let b = linux_with_block("/data/disk.img", serde_json::json!([bind(Path::new("vol"), "/data", false)]), &[]);
    fs::create_dir(b.path().join("vol")).unwrap();
    fs::write(b.path().join("vol/disk.img"), [0; 512]).unwrap();
    assert_eq!(vm(&b).blocks[0].path, b.path().join("vol/disk.img"));
}

#[test]
fn test_a_symlink_in_a_bind_mounted_directory_cannot_leave_it() {
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("volume");
    fs::create_dir(&dir).unwrap();
    fs::write(host.path().join("secret.img"), [b'S'; 512]).unwrap();
    fs::write(dir.join("inside.img"), [b'I'; 512]).unwrap();
    std::os::unix::fs::symlink(host.path().join("secret.img"), dir.join("abs")).unwrap();
    std::os::unix::fs::symlink("../secret.img", dir.join("up")).unwrap();
    std::os::unix::fs::symlink("/inside.img", dir.join("in")).unwrap();
    let mounts = serde_json::json!([bind(&dir, "/data", false)]);
    // An absolute target starts at the mounted directory: the host's file is not found there.
    let err = load(linux_with_block("/data/abs", mounts.clone(), &[]).path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "'/data/abs' in the bind mount at /data ({}): No such file or directory",
            dir.display()
        )),
        "{err}"
    );
    let err = load(linux_with_block("/data/up", mounts.clone(), &[]).path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("'/data/up' resolves outside the bind mount at /data"), "{err}");
    // One that stays inside is followed there.
    let cfg = vm(&linux_with_block("/data/in", mounts, &[]));
    assert_eq!(cfg.blocks[0].path, dir.join("inside.img"));
    assert_eq!(cfg.roots[&dir.join("inside.img")], vmm::host::files::FileRoot::Dir(dir));
}

#[test]
fn test_a_disk_on_a_mount_that_is_not_a_bind_mount_is_an_error_naming_both() {
    for (typ, dest, image) in [("tmpfs", "/data", "/data/disk.img"), ("proc", "/proc", "/proc/self/mem")] {
        let mounts = serde_json::json!([{ "destination": dest, "type": typ, "source": typ, "options": ["nosuid"] }]);
        let err = load(linux_with_block(image, mounts, &[]).path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("'{image}' is on a {typ} mount at {dest}, not a bind mount")),
            "{err}"
        );
    }
    // The kernel of a bundle without annotations on a tmpfs: not known to be a unikernel.
    let mut c = config(&["/tmp/app.hvt"], serde_json::json!({}));
    c["mounts"] = serde_json::json!([{ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs" }]);
    let b = bundle(c, &[("/tmp/app.hvt", &hvt_elf(&[]))]);
    let BundleKind::NotUnikernel(reason) = load(b.path()).unwrap().kind else {
        panic!("a kernel on a tmpfs was read")
    };
    assert!(reason.contains("is on a tmpfs mount at /tmp"), "{reason}");
}

#[test]
fn test_the_kernel_and_unik_json_can_be_bind_mounted() {
    let host = tempfile::tempdir().unwrap();
    let (kernel, json) = (host.path().join("app.hvt"), host.path().join("unik.json"));
    fs::write(&kernel, hvt_elf(&[])).unwrap();
    fs::write(&json, br#"{"dev.unik.mem": "32"}"#).unwrap();
    // Not in the image at all: the mounts are what the container sees.
    let mut c = config(&["/app.hvt"], serde_json::json!({}));
    c["mounts"] = serde_json::json!([bind(&kernel, "/app.hvt", true), bind(&json, "/unik.json", true)]);
    let b = bundle(c, &[("/unik.json", br#"{"dev.unik.mem": "48"}"#)]);
    let cfg = vm(&b);
    assert_eq!(cfg.kernel, kernel);
    assert_eq!(cfg.mem_mib, 32);
    assert_eq!(cfg.roots[&kernel], vmm::host::files::FileRoot::Host);
}

#[test]
fn test_a_read_only_rootfs_makes_its_disks_read_only() {
    let host = tempfile::tempdir().unwrap();
    let disk = host.path().join("disk.img");
    fs::write(&disk, [0; 512]).unwrap();
    // docker run --read-only: a Linux-boot guest's disk in the rootfs is read-only for it.
    let b = linux_with_block("/disk.img", serde_json::json!([]), &[("/disk.img", &[0; 512])]);
    let mut c: serde_json::Value = serde_json::from_slice(&fs::read(b.path().join("config.json")).unwrap()).unwrap();
    assert!(!vm(&b).blocks[0].read_only);
    c["root"]["readonly"] = serde_json::json!(true);
    fs::write(b.path().join("config.json"), serde_json::to_vec(&c).unwrap()).unwrap();
    assert!(vm(&b).blocks[0].read_only);
    // A writable bind mount over it stays writable.
    c["mounts"] = serde_json::json!([bind(&disk, "/disk.img", false)]);
    fs::write(b.path().join("config.json"), serde_json::to_vec(&c).unwrap()).unwrap();
    assert!(!vm(&b).blocks[0].read_only);
    // solo5's hvt has no read-only block devices: refused, saying why and what to do.
    let mut c = config(&["/app"], serde_json::json!({ "dev.unik.block.storage": "/disk.img" }));
    c["root"]["readonly"] = serde_json::json!(true);
    let b = bundle(c.clone(), &[("/app", &hvt_elf(&[("storage", 1)])), ("/disk.img", &[0; 512])]);
    let err = load(b.path()).unwrap_err().to_string();
    assert!(
        err.contains("block device 'storage' ('/disk.img') must be read-only, as it is in the rootfs, which is read-only (root.readonly: docker run --read-only), but solo5's hvt has no read-only block devices: bind-mount a writable image there (docker run -v HOST_FILE:/disk.img)"),
        "{err}"
    );
    c["mounts"] = serde_json::json!([bind(&disk, "/disk.img", true)]);
    let b = bundle(c.clone(), &[("/app", &hvt_elf(&[("storage", 1)]))]);
    let err = load(b.path()).unwrap_err().to_string();
    assert!(err.contains("as it is in the bind mount at /disk.img, mounted read-only"), "{err}");
    c["mounts"] = serde_json::json!([bind(&disk, "/disk.img", false)]);
    let cfg = vm(&bundle(c, &[("/app", &hvt_elf(&[("storage", 1)]))]));
    assert_eq!((cfg.blocks[0].path.as_path(), cfg.blocks[0].read_only), (disk.as_path(), false));
}

#[test]
fn test_docker_init_and_shell_form_commands_run_the_unikernel() {
    let files: &[(&str, &[u8])] = &[("/app.hvt", &hvt_elf(&[]))];
    // docker run --init: the init is dropped, the unikernel gets its arguments.
    let init = config(&["/sbin/docker-init", "--", "/app.hvt", "exit=3"], serde_json::json!({}));
    let cfg = vm(&bundle(init, files));
    assert!(cfg.kernel.ends_with("rootfs/app.hvt"));
    assert_eq!(cfg.cmdline, ["exit=3"]);
    // CMD /app.hvt a b (shell form), and both at once.
    let shell = config(&["/bin/sh", "-c", "/app.hvt a  b"], serde_json::json!({}));
    assert_eq!(vm(&bundle(shell, files)).cmdline, ["a", "b"]);
    let both = config(&["/sbin/docker-init", "--", "/bin/sh", "-c", "/app.hvt c"], serde_json::json!({}));
    assert_eq!(vm(&bundle(both, files)).cmdline, ["c"]);
    // With unik's annotations (/unik.json) too.
    let ann = config(&["/bin/sh", "-c", "/app.hvt d"], serde_json::json!({ KERNEL: "/app.hvt" }));
    assert_eq!(vm(&bundle(ann, files)).cmdline, ["d"]);
    // A unikernel behind shell syntax is refused, never handed to runc.
    let bad = config(&["/bin/sh", "-c", "/app.hvt a > /log"], serde_json::json!({}));
    let err = load(bundle(bad, files).path()).unwrap_err().to_string();
    assert!(
        err.contains("docker's shell form (CMD or ENTRYPOINT written without brackets)"),
        "{err}"
    );
    assert!(err.contains("has '>', which the shell would interpret"), "{err}");
    assert!(err.contains("Use the exec form instead"), "{err}");
    // An ordinary shell command is runc's, with its reason.
    let plain = config(&["/bin/sh", "-c", "echo $HOME"], serde_json::json!({}));
    let BundleKind::NotUnikernel(reason) = load(bundle(plain, &[("/bin/sh", b"#!")]).path()).unwrap().kind else {
        panic!("a shell command taken for a unikernel")
    };
    assert!(
        reason.starts_with(&format!(
            "{NOT_ANNOTATED}the first word of docker's shell-form command (/bin/sh -c) 'echo' in the rootfs: No such file"
        )),
        "{reason}"
    );
    let init_only = config(&["/sbin/docker-init", "--"], serde_json::json!({}));
    let BundleKind::NotUnikernel(reason) = load(bundle(init_only, &[]).path()).unwrap().kind else {
        panic!("nothing behind the init")
    };
    assert_eq!(
        reason,
        format!("{NOT_ANNOTATED}process.args[2] (behind docker's init, /sbin/docker-init --) is missing")
    );
}

#[test]
fn test_host_devices_are_refused() {
    let mut c = config(&["/app"], serde_json::json!({}));
    c["linux"]["devices"] = serde_json::json!([{ "path": "/dev/sda", "type": "b", "major": 8, "minor": 0 }]);
    let b = bundle(c, &[("/app", &hvt_elf(&[]))]);
    let err = load(b.path()).unwrap_err().to_string();
    assert!(
        err.contains("linux.devices: 1 host device(s) from /dev/sda: a unikernel cannot use host devices"),
        "{err}"
    );
    // An empty list (what docker sends without --device) is no request.
    let mut c = config(&["/app"], serde_json::json!({}));
    c["linux"]["devices"] = serde_json::json!([]);
    let b = bundle(c, &[("/app", &hvt_elf(&[]))]);
    load(b.path()).unwrap();
}
