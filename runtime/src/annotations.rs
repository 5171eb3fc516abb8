//! The annotations that make a bundle a unikernel: unik's own (`dev.unik.*`, plain values) and
//! urunc's (`com.urunc.unikernel.*`, base64 values), with the files in the rootfs that carry the
//! same keys for engines that pass no image annotations (docker before 24): `unik.json` and
//! `urunc.json`.

use std::collections::BTreeMap;

use base64::Engine;

use crate::rootfs::View;

/// unik's annotation prefix.
pub const PREFIX: &str = "dev.unik.";
/// Path of the unikernel inside the container (the rootfs, or a bind mount over it).
pub const KERNEL: &str = "dev.unik.kernel";
/// Guest command line (split at whitespace) when `process.args` has no arguments.
pub const CMDLINE: &str = "dev.unik.cmdline";
/// Guest kind: `hvt` or `linux` (default: detected from the kernel image).
pub const KIND: &str = "dev.unik.kind";
/// vCPUs of a Linux-boot guest (default: the CPU quota rounded up, else 1).
pub const CPUS: &str = "dev.unik.cpus";
/// Initial ramdisk inside the container (Linux-boot guests).
pub const INITRD: &str = "dev.unik.initrd";
/// Guest memory in MiB (overrides the memory limit).
pub const MEM: &str = "dev.unik.mem";
/// A gdb remote stub on this port of 127.0.0.1 in the container's network namespace (off by
/// default): the guest waits for gdb at `start` (`unik boot --gdb`).
pub const GDB: &str = "dev.unik.gdb";
/// `dev.unik.block.<NAME>`: image inside the container for manifest block device NAME.
pub const BLOCK_PREFIX: &str = "dev.unik.block.";
/// Guest command-line template for the network settings (or a ready template's name).
pub const NET_TEMPLATE: &str = "dev.unik.net.template";
/// The container interface the guest takes over (default: the first free one with IPv4).
pub const NET_INTERFACE: &str = "dev.unik.net.interface";
/// urunc's annotation prefix; the keys after it are `unikernelType`, `hypervisor`, `binary`,
/// `cmdline`, `block`, `blkMntPoint`, `initrd`, `unikernelVersion`, `mountRootfs`, ….
pub const URUNC_PREFIX: &str = "com.urunc.unikernel.";
/// unik's annotations as a file in the rootfs (plain values).
pub const UNIK_JSON: &str = "unik.json";
/// urunc's annotations as a file in the rootfs (base64 values).
pub const URUNC_JSON: &str = "urunc.json";

/// Every key of unik's that takes a value (besides `dev.unik.block.<NAME>`).
pub const KEYS: [&str; 9] = [KERNEL, CMDLINE, KIND, CPUS, INITRD, MEM, GDB, NET_TEMPLATE, NET_INTERFACE];

/// The port of [`GDB`], if the annotation is there.
pub fn gdb_port(annotations: &BTreeMap<String, String>) -> Result<Option<u16>, String> {
    annotations
        .get(GDB)
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{GDB}: '{p}' is not a port from 1 to 65535"))
        })
        .transpose()
}

/// Refuses a `dev.unik.*` key unik does not know (a typo such as `dev.unik.block.stoage` is
/// caught by the manifest; `dev.unik.memory` here), naming it and the known ones.
pub fn check_keys(annotations: &BTreeMap<String, String>) -> Result<(), String> {
    for key in annotations.keys().filter(|k| k.starts_with(PREFIX)) {
        let block = key.strip_prefix(BLOCK_PREFIX).is_some_and(|name| !name.is_empty());
        if !block && !KEYS.contains(&key.as_str()) {
            return Err(format!(
                "unknown annotation '{key}': unik knows {} and {BLOCK_PREFIX}<NAME>",
                KEYS.join(", ")
            ));
        }
    }
    Ok(())
}

/// The most a JSON file of annotations in the rootfs may hold.
const MAX_JSON: u64 = 1 << 20;

/// Reads `/<name>` as the container sees it (symlinks resolved inside the rootfs, never out of
/// it; a file bind-mounted there is the one read): `None` when there is none, an error when it
/// is not a regular file of at most [`MAX_JSON`] bytes.
fn read_rootfs_json(view: &View, name: &str) -> Result<Option<Vec<u8>>, String> {
    if !view.exists(name) {
        return Ok(None);
    }
    let file = view.resolve(name).map_err(|e| e.to_string())?;
    vmm::host::files::read_regular(file.open_root(), &file.path, MAX_JSON, "allowed")
        .map(Some)
        .map_err(|e| format!("{name}: {e}"))
}

/// Adds the `dev.unik.*` keys of `/unik.json` when the bundle has none of its own.
pub fn merge_unik_json(annotations: &mut BTreeMap<String, String>, view: &View) -> Result<(), String> {
    if annotations.keys().any(|k| k.starts_with(PREFIX)) {
        return Ok(());
    }
    let Some(json) = read_rootfs_json(view, UNIK_JSON)? else {
        return Ok(());
    };
    let extra: BTreeMap<String, String> = serde_json::from_slice(&json).map_err(|e| format!("{UNIK_JSON}: {e}"))?;
    annotations.extend(extra.into_iter().filter(|(k, _)| k.starts_with(PREFIX)));
    Ok(())
}

/// Decodes one urunc value (standard base64, UTF-8 inside).
pub fn decode_urunc(key: &str, value: &str) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| format!("{URUNC_PREFIX}{key}: not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{URUNC_PREFIX}{key}: not UTF-8"))
}

/// urunc's keys (without the prefix), decoded: from the annotations, or when there are none from
/// `/urunc.json` (urunc's own lookup order).
pub fn urunc_keys(annotations: &BTreeMap<String, String>, view: &View) -> Result<BTreeMap<String, String>, String> {
    let mut keys = BTreeMap::new();
    for (k, v) in annotations {
        if let Some(key) = k.strip_prefix(URUNC_PREFIX) {
            keys.insert(key.to_string(), decode_urunc(key, v)?);
        }
    }
    if keys.is_empty() {
        if let Some(text) = read_rootfs_json(view, URUNC_JSON)? {
            let map: BTreeMap<String, String> = serde_json::from_slice(&text).map_err(|e| format!("{URUNC_JSON}: {e}"))?;
            for (k, v) in map {
                let key = k.strip_prefix(URUNC_PREFIX).unwrap_or(&k).to_string();
                let value = decode_urunc(&key, &v)?;
                keys.insert(key, value);
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn test_urunc_values_are_base64() {
        let rootfs = tempfile::tempdir().unwrap();
        let ann = BTreeMap::from([
            (format!("{URUNC_PREFIX}binary"), b64("/u.hvt")),
            (format!("{URUNC_PREFIX}cmdline"), format!(" {}\n", b64("a b"))),
            ("other".to_string(), "not base64 and not ours".to_string()),
        ]);
        let keys = urunc_keys(&ann, &View::rootfs(rootfs.path())).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys["binary"], "/u.hvt");
        assert_eq!(keys["cmdline"], "a b");
        let bad = BTreeMap::from([(format!("{URUNC_PREFIX}hypervisor"), "%%%".to_string())]);
        let err = urunc_keys(&bad, &View::rootfs(rootfs.path())).unwrap_err();
        assert!(err.contains("com.urunc.unikernel.hypervisor: not base64"), "{err}");
        let not_utf8 = BTreeMap::from([(format!("{URUNC_PREFIX}binary"), "//79".to_string())]);
        assert!(
            urunc_keys(&not_utf8, &View::rootfs(rootfs.path()))
                .unwrap_err()
                .contains("not UTF-8")
        );
    }

    #[test]
    fn test_urunc_json_only_without_annotations() {
        let rootfs = tempfile::tempdir().unwrap();
        let json = serde_json::json!({ "com.urunc.unikernel.binary": b64("/from-json"), "hypervisor": b64("hvt") });
        std::fs::write(rootfs.path().join(URUNC_JSON), json.to_string()).unwrap();
        let keys = urunc_keys(&BTreeMap::new(), &View::rootfs(rootfs.path())).unwrap();
        assert_eq!((keys["binary"].as_str(), keys["hypervisor"].as_str()), ("/from-json", "hvt"));
        let ann = BTreeMap::from([(format!("{URUNC_PREFIX}binary"), b64("/from-annotation"))]);
        assert_eq!(
            urunc_keys(&ann, &View::rootfs(rootfs.path())).unwrap()["binary"],
            "/from-annotation"
        );
        std::fs::write(rootfs.path().join(URUNC_JSON), "[").unwrap();
        assert!(
            urunc_keys(&BTreeMap::new(), &View::rootfs(rootfs.path()))
                .unwrap_err()
                .starts_with("urunc.json")
        );
    }

    #[test]
    fn test_unik_json_fills_in_only_when_no_unik_annotation() {
        let rootfs = tempfile::tempdir().unwrap();
        let json = serde_json::json!({ KERNEL: "/k", "foreign": "x" });
        std::fs::write(rootfs.path().join(UNIK_JSON), json.to_string()).unwrap();
        let mut ann = BTreeMap::new();
        merge_unik_json(&mut ann, &View::rootfs(rootfs.path())).unwrap();
        assert_eq!(ann, BTreeMap::from([(KERNEL.to_string(), "/k".to_string())]));
        let mut own = BTreeMap::from([(MEM.to_string(), "64".to_string())]);
        merge_unik_json(&mut own, &View::rootfs(rootfs.path())).unwrap();
        assert_eq!(own.len(), 1);
    }
}
