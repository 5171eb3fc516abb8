use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::*;
use crate::bundle::tests::hvt_elf;
use crate::bundle::{BundleKind, load};

fn spec(kernel: &Path, format: Format) -> PackSpec {
    PackSpec {
        kernel: kernel.to_path_buf(),
        blocks: Vec::new(),
        initrd: None,
        mem_mib: None,
        cpus: None,
        net_template: None,
        args: Vec::new(),
        reference: "unik-test/app:1.0".parse().unwrap(),
        format,
    }
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// An entry of a tar stream: its header's facts and its bytes.
#[derive(Debug)]
struct Entry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    mtime: u64,
    owner: (u64, u64, String, String),
    data: Vec<u8>,
}

fn entries(tar: impl Read) -> Vec<Entry> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Entry {
            path: e.path().unwrap().to_string_lossy().into_owned(),
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            mtime: h.mtime().unwrap(),
            owner: (
                h.uid().unwrap(),
                h.gid().unwrap(),
                String::from_utf8_lossy(h.username_bytes().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(h.groupname_bytes().unwrap_or_default()).into_owned(),
            ),
            data,
        });
    }
    out
}

fn find<'a>(entries: &'a [Entry], path: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no {path} in {:?}", entries.iter().map(|e| e.path.as_str()).collect::<Vec<_>>()))
}

fn json(data: &[u8]) -> serde_json::Value {
    serde_json::from_slice(data).unwrap()
}

/// The layer's entries, checked to be dated 0 and owned by root without names.
fn layer_entries(blob: &[u8]) -> Vec<Entry> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(blob).read_to_end(&mut tar).unwrap();
    let entries = entries(tar.as_slice());
    for e in &entries {
        assert_eq!((e.mtime, &e.owner), (0, &(0, 0, String::new(), String::new())), "{}", e.path);
    }
    entries
}

/// Unpacks `layer` as a bundle's rootfs with `process.args` = Entrypoint + Cmd of `config` and
/// no annotations (as docker before 24 hands it over), and loads it as the runtime does; the
/// bundle's directory lives as long as the returned `TempDir`.
fn run_as_docker_would(config: &serde_json::Value, layer: &[Entry]) -> (tempfile::TempDir, crate::bundle::Bundle) {
    let c = &config["config"];
    let mut args: Vec<String> = serde_json::from_value(c["Entrypoint"].clone()).unwrap();
    args.extend(
        serde_json::from_value::<Option<Vec<String>>>(c["Cmd"].clone())
            .unwrap()
            .unwrap_or_default(),
    );
    let files: Vec<(&str, &[u8])> = layer
        .iter()
        .filter(|e| e.kind == tar::EntryType::Regular)
        .map(|e| (e.path.as_str(), e.data.as_slice()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = crate::bundle::tests::bundle(crate::bundle::tests::config(&args, serde_json::json!({})), &files);
    let bundle = load(dir.path()).unwrap();
    (dir, bundle)
}

#[test]
fn test_docker_archive_layout_and_what_the_runtime_reads_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("app.hvt");
    let elf = hvt_elf(&[("storage", 1), ("service0", 2)]);
    fs::write(&kernel, &elf).unwrap();
    let disk: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    fs::write(dir.path().join("disk.img"), &disk).unwrap();
    let out = dir.path().join("app.tar");
    let s = PackSpec {
        blocks: vec![("storage".into(), dir.path().join("disk.img"))],
        mem_mib: Some(64),
        net_template: Some("mirage".into()),
        args: vec!["--hello".into(), "world".into()],
        ..spec(&kernel, Format::Docker)
    };
    let packed = pack(&s, &out).unwrap();
    assert_eq!(packed.name, "unik-test/app:1.0");
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o644,
        "an archive anyone may read"
    );

    let outer = entries(fs::File::open(&out).unwrap());
    let manifest = json(&find(&outer, "manifest.json").data);
    let m = &manifest[0];
    assert_eq!(m["RepoTags"], serde_json::json!(["unik-test/app:1.0"]));
    let config_path = m["Config"].as_str().unwrap();
    let config_bytes = &find(&outer, config_path).data;
    assert_eq!(format!("sha256:{}", sha(config_bytes)), packed.image_id);
    assert_eq!(config_path, format!("{}.json", sha(config_bytes)));
    let layer_path = m["Layers"][0].as_str().unwrap();
    let blob = &find(&outer, layer_path).data;
    assert_eq!(layer_path, format!("{}/layer.tar", sha(blob)), "the layer is named by its digest");
    for e in &outer {
        assert_eq!((e.mtime, e.owner.0, e.owner.1), (0, 0, 0), "{}", e.path);
    }

    let config = json(config_bytes);
    assert_eq!(
        (config["os"].as_str(), config["architecture"].as_str()),
        (Some("linux"), Some(architecture()))
    );
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let labels: BTreeMap<String, String> = serde_json::from_value(config["config"]["Labels"].clone()).unwrap();
    let want = BTreeMap::from(
        [
            (KERNEL, "/app.hvt"),
            (KIND, "hvt"),
            (MEM, "64"),
            (NET_TEMPLATE, "mirage"),
            ("dev.unik.block.storage", "/block/storage.img"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    assert_eq!(labels, want);
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/app.hvt"]));
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["--hello", "world"]));

    let layer = layer_entries(blob);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(blob.as_slice()).read_to_end(&mut tar).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([format!("sha256:{}", sha(&tar))]));
    let paths: Vec<(&str, u32)> = layer.iter().map(|e| (e.path.as_str(), e.mode)).collect();
    assert_eq!(
        paths,
        [
            ("block/", 0o755),
            ("app.hvt", 0o755),
            ("block/storage.img", 0o644),
            ("unik.json", 0o644)
        ]
    );
    assert_eq!(find(&layer, "app.hvt").data, elf);
    assert_eq!(find(&layer, "block/storage.img").data, disk);
    let unik_json: BTreeMap<String, String> = serde_json::from_slice(&find(&layer, "unik.json").data).unwrap();
    assert_eq!(unik_json, want, "/unik.json and the labels say the same");

    // What the runtime makes of the unpacked image, started with the image's command.
    let (_bundle_dir, b) = run_as_docker_would(&config, &layer);
    assert_eq!(b.network.template.as_deref(), Some("mirage"));
    assert_eq!(b.network.devices, ["service0"]);
    let BundleKind::Unikernel(cfg) = b.kind else {
        panic!("not a unikernel")
    };
    assert_eq!(cfg.kernel, b.rootfs.join("app.hvt"));
    assert_eq!((cfg.kind, cfg.mem_mib), (Some(GuestKind::Hvt), 64));
    assert_eq!(cfg.cmdline, ["--hello", "world"]);
    assert_eq!(cfg.blocks.len(), 1);
    assert_eq!(
        (cfg.blocks[0].name.as_str(), &cfg.blocks[0].path),
        ("storage", &b.rootfs.join("block/storage.img"))
    );
}

#[test]
fn test_oci_layout_names_every_blob_by_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("hello.hvt");
    fs::write(&kernel, hvt_elf(&[])).unwrap();
    let out = dir.path().join("hello-oci.tar");
    let packed = pack(&spec(&kernel, Format::Oci), &out).unwrap();
    let outer = entries(fs::File::open(&out).unwrap());
    assert_eq!(
        json(&find(&outer, "oci-layout").data),
        serde_json::json!({ "imageLayoutVersion": "1.0.0" })
    );
    for e in outer.iter().filter(|e| e.kind == tar::EntryType::Regular) {
        if let Some(hex) = e.path.strip_prefix("blobs/sha256/") {
            assert_eq!(hex, sha(&e.data), "blob {} holds what its name says", e.path);
        }
    }
    let blob = |digest: &serde_json::Value| {
        &find(
            &outer,
            &format!("blobs/sha256/{}", digest.as_str().unwrap().strip_prefix("sha256:").unwrap()),
        )
        .data
    };
    let index = json(&find(&outer, "index.json").data);
    let desc = &index["manifests"][0];
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(desc["annotations"]["io.containerd.image.name"], "docker.io/unik-test/app:1.0");
    assert_eq!(desc["annotations"]["org.opencontainers.image.ref.name"], "1.0");
    assert_eq!(
        desc["platform"],
        serde_json::json!({ "architecture": architecture(), "os": "linux" })
    );
    let manifest_bytes = blob(&desc["digest"]);
    assert_eq!(desc["size"], manifest_bytes.len());
    let manifest = json(manifest_bytes);
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["annotations"][KERNEL], "/hello.hvt");
    assert_eq!(manifest["config"]["digest"], packed.image_id);
    let config = json(blob(&manifest["config"]["digest"]));
    assert_eq!(config["config"]["Cmd"], serde_json::Value::Null, "no --arg: no Cmd");
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let entries = layer_entries(blob(&layer["digest"]));
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["hello.hvt", "unik.json"]);
    let (_bundle_dir, b) = run_as_docker_would(&config, &entries);
    assert!(matches!(b.kind, BundleKind::Unikernel(_)), "{:?}", b.kind);
}

#[test]
fn test_the_same_inputs_give_the_same_archive() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("app.hvt");
    fs::write(&kernel, hvt_elf(&[("storage", 1)])).unwrap();
    fs::write(dir.path().join("disk.img"), vec![7u8; 1024]).unwrap();
    for format in [Format::Docker, Format::Oci] {
        let s = PackSpec {
            blocks: vec![("storage".into(), dir.path().join("disk.img"))],
            ..spec(&kernel, format)
        };
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        let first = pack(&s, &a).unwrap();
        // Another time of day, another output name: the same bytes.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(pack(&s, &b).unwrap(), first);
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "{format:?}");
        // Written again over an existing archive.
        assert_eq!(pack(&s, &a).unwrap(), first);
    }
}

#[test]
fn test_a_linux_kernel_with_initrd_disks_and_cpus() {
    let dir = tempfile::tempdir().unwrap();
    let mut bz = vec![0u8; 0x400];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    let kernel = dir.path().join("bzImage");
    fs::write(&kernel, &bz).unwrap();
    fs::write(dir.path().join("initrd.cpio"), b"an initrd").unwrap();
    // Disks of a Linux-boot guest need not be whole sectors; the same file twice is two disks.
    fs::write(dir.path().join("d.img"), [1u8; 100]).unwrap();
    let out = dir.path().join("linux.tar");
    let s = PackSpec {
        blocks: vec![("root".into(), dir.path().join("d.img")), ("data".into(), dir.path().join("d.img"))],
        initrd: Some(dir.path().join("initrd.cpio")),
        cpus: Some(2),
        args: vec!["console=ttyS0".into()],
        ..spec(&kernel, Format::Docker)
    };
    pack(&s, &out).unwrap();
    let outer = entries(fs::File::open(&out).unwrap());
    let m = &json(&find(&outer, "manifest.json").data)[0];
    let config = json(&find(&outer, m["Config"].as_str().unwrap()).data);
    let layer = layer_entries(&find(&outer, m["Layers"][0].as_str().unwrap()).data);
    let paths: Vec<&str> = layer.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["block/", "bzImage", "initrd.cpio", "block/data.img", "block/root.img", "unik.json"]
    );
    assert_eq!(config["config"]["Labels"][KIND], "linux");
    assert_eq!(config["config"]["Labels"][INITRD], "/initrd.cpio");
    let (_bundle_dir, b) = run_as_docker_would(&config, &layer);
    let BundleKind::Unikernel(cfg) = b.kind else {
        panic!("not a unikernel")
    };
    assert_eq!((cfg.kind, cfg.vcpus), (Some(GuestKind::Linux), 2));
    assert_eq!(cfg.initrd, Some(b.rootfs.join("initrd.cpio")));
    assert_eq!(cfg.cmdline, ["console=ttyS0"]);
    let names: Vec<&str> = cfg.blocks.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["data", "root"]);
}

#[test]
fn test_bad_inputs_are_named_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    fs::write(p("app.hvt"), hvt_elf(&[("storage", 1)])).unwrap();
    fs::write(p("plain.hvt"), hvt_elf(&[])).unwrap();
    fs::write(p("unik.json"), hvt_elf(&[])).unwrap();
    fs::write(p("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    let mut damaged = hvt_elf(&[]);
    damaged[18] = 0x28; // another machine
    fs::write(p("damaged.hvt"), damaged).unwrap();
    let mut bz = vec![0u8; 0x400];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    fs::write(p("bzImage"), bz).unwrap();
    fs::write(p("disk.img"), [0u8; 1024]).unwrap();
    fs::write(p("odd.img"), [0u8; 1000]).unwrap();
    fs::create_dir(p("adir")).unwrap();
    let out_dir = p("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("image.tar");
    let with = |kernel: &str, f: &dyn Fn(&mut PackSpec)| {
        let mut s = spec(&p(kernel), Format::Docker);
        f(&mut s);
        s
    };
    let disk = |name: &str, file: &str| (name.to_string(), p(file));
    let cases: Vec<(PackSpec, &str)> = vec![
        (with("missing.hvt", &|_| {}), "kernel"),
        (
            with("script.sh", &|_| {}),
            "not a kernel unik boots (a solo5-hvt unikernel, a bzImage, an arm64 Image, an ELF kernel or a multiboot kernel): it is too short",
        ),
        (with("damaged.hvt", &|_| {}), "invalid executable"),
        (with("adir", &|_| {}), "not a regular file"),
        (
            with("app.hvt", &|_| {}),
            "declares block device 'storage', which has no image: add --block storage=FILE",
        ),
        (
            with("app.hvt", &|s| {
                s.blocks = vec![disk("storage", "disk.img"), disk("other", "disk.img")]
            }),
            "declares no block device 'other' (it declares: storage)",
        ),
        (
            with("plain.hvt", &|s| s.blocks = vec![disk("storage", "disk.img")]),
            "declares no block device 'storage' (it declares: none)",
        ),
        (
            with("app.hvt", &|s| {
                s.blocks = vec![disk("storage", "disk.img"), disk("storage", "disk.img")]
            }),
            "block device 'storage' is given more than once",
        ),
        (
            with("app.hvt", &|s| s.blocks = vec![disk("storage", "odd.img")]),
            "1000 bytes: a solo5-hvt disk image must be a non-zero multiple of 512 bytes",
        ),
        (
            with("app.hvt", &|s| s.blocks = vec![disk("storage", "nope.img")]),
            "block image storage",
        ),
        (with("app.hvt", &|s| s.blocks = vec![disk("storage", "adir")]), "not a regular file"),
        (
            with("plain.hvt", &|s| s.initrd = Some(p("disk.img"))),
            "--initrd is for Linux-boot kernels",
        ),
        (with("plain.hvt", &|s| s.cpus = Some(2)), "--cpus is for Linux-boot kernels"),
        (
            with("bzImage", &|s| s.cpus = Some(0)),
            "--cpus: dev.unik.cpus: '0' is not a number of vCPUs",
        ),
        (with("bzImage", &|s| s.initrd = Some(p("bzImage"))), "would both be /bzImage"),
        (
            with("plain.hvt", &|s| s.mem_mib = Some(1)),
            "--mem: dev.unik.mem: '1' is not a number of MiB",
        ),
        (
            with("plain.hvt", &|s| s.mem_mib = Some(1 << 20)),
            "is not a number of MiB from 2 to",
        ),
        (
            with("plain.hvt", &|s| s.net_template = Some("ip={addr}".into())),
            "unknown placeholder {addr}",
        ),
        (with("unik.json", &|_| {}), "'/unik.json' is reserved in the image"),
        (
            with("plain.hvt", &|s| s.args = vec!["x".repeat(8000), "y".repeat(191)]),
            "would be 8192 characters, more than the 8191 a solo5-hvt unikernel takes",
        ),
    ];
    for (s, want) in cases {
        let err = pack(&s, &out).map(|_| panic!("{want}: packed")).unwrap_err().to_string();
        assert!(err.contains(want), "{}: {err}", s.kernel.display());
        assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 0, "{want}: something was left");
    }
    // An output that is a directory, or in a directory that does not exist.
    let err = pack(&spec(&p("plain.hvt"), Format::Oci), &out_dir).unwrap_err().to_string();
    assert!(err.contains("it is a directory"), "{err}");
    let err = pack(&spec(&p("plain.hvt"), Format::Oci), &p("nodir/x.tar"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nodir/x.tar"), "{err}");
    // A failed pack over an existing archive leaves it as it was.
    fs::write(&out, b"the old archive").unwrap();
    let err = pack(&with("app.hvt", &|_| {}), &out).unwrap_err().to_string();
    assert!(err.contains("no image"), "{err}");
    assert_eq!(fs::read(&out).unwrap(), b"the old archive");
    assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 1);
}
