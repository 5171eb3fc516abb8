//! The seed corpora in `fuzz/corpus/<target>/`, generated rather than collected: small inputs
//! that reach each target's interesting paths at once (a valid executable, a full virtio
//! request, every hypercall with valid arguments, bundles of each kind).
//!
//! Regenerate with `cargo +nightly test --manifest-path fuzz/Cargo.toml --lib -- --ignored
//! write_seeds` (from the repository root). `corpus/elf_loader/hello.hvt` is not generated: it
//! is the `hello` test guest built by tests/guests, stripped.

use crate::{MFT_BLOCK, MFT_NET, bzimage_head, hvt_elf, manifest};

/// One seed: target, file name, contents.
pub type Seed = (&'static str, &'static str, Vec<u8>);

fn u16s(v: u16) -> [u8; 2] {
    v.to_le_bytes()
}

/// hvt_hypercalls operations (see that target's doc comment).
mod hc {
    pub fn call(nr: u8, gpa: u16) -> Vec<u8> {
        let mut v = vec![0, nr];
        v.extend_from_slice(&gpa.to_le_bytes());
        v
    }
    pub fn poke(gpa: u16, words: &[u64]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, w) in words.iter().enumerate() {
            v.push(3);
            v.extend_from_slice(&(gpa + 8 * i as u16).to_le_bytes());
            v.extend_from_slice(&w.to_le_bytes());
        }
        v
    }
    pub fn bytes(gpa: u16, data: &[u8]) -> Vec<u8> {
        let mut v = vec![2];
        v.extend_from_slice(&gpa.to_le_bytes());
        v.push(u8::try_from(data.len()).expect("short"));
        v.extend_from_slice(data);
        v
    }
    pub fn frame(len: u8) -> Vec<u8> {
        let mut v = vec![4, len];
        v.extend((0..len).map(|i| i ^ 0x5a));
        v
    }
}

fn hypercalls() -> Vec<Seed> {
    let mut every = vec![3u8]; // block in slot 1, net in slot 2
    every.extend(hc::call(1, 0x100));
    every.extend(hc::poke(0x200, &[0x300, 5]));
    every.extend(hc::bytes(0x300, b"hello"));
    every.extend(hc::call(2, 0x200));
    every.extend(hc::poke(0x400, &[1, 512, 0x800, 512, 0]));
    every.extend(hc::call(4, 0x400));
    every.extend(hc::call(5, 0x400));
    every.extend(hc::poke(0x600, &[2, 0x800, 60, 0]));
    every.extend(hc::call(6, 0x600));
    every.extend(hc::frame(60));
    every.extend(hc::poke(0x700, &[0, 0, 0]));
    every.extend(hc::call(3, 0x700));
    every.extend(hc::poke(0x600, &[2, 0x800, 1514, 0]));
    every.extend(hc::call(7, 0x600));
    every.push(5);
    every.extend(hc::poke(0x900, &[0x1000, 7]));
    every.extend(hc::call(8, 0x900));
    // Read-only text at 0x1000, net before block, 4 KiB sectors: writes into the text.
    let mut ro = vec![4 | 8 | 32 | 3];
    ro.extend(hc::call(1, 0x1008));
    ro.extend(hc::poke(0x400, &[2, 0, 0x1000, 4096, 0]));
    ro.extend(hc::call(5, 0x400));
    ro.extend(hc::poke(0x400, &[2, 4096, 0x2000, 4096, 0]));
    ro.extend(hc::call(4, 0x400));
    vec![("hvt_hypercalls", "every_call", every), ("hvt_hypercalls", "read_only", ro)]
}

const NEXT: u16 = 1;
const WRITE: u16 = 2;

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> Vec<u8> {
    let mut d = addr.to_le_bytes().to_vec();
    d.extend_from_slice(&len.to_le_bytes());
    d.extend_from_slice(&flags.to_le_bytes());
    d.extend_from_slice(&next.to_le_bytes());
    d
}

/// Guest memory image: `(gpa, bytes)` pieces laid over zeros.
fn image(pieces: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (at, bytes) in pieces {
        if out.len() < at + bytes.len() {
            out.resize(at + bytes.len(), 0);
        }
        out[*at..at + bytes.len()].copy_from_slice(bytes);
    }
    out
}

/// An avail ring with entries `heads`.
fn avail(heads: &[u16]) -> Vec<u8> {
    let mut a = vec![0, 0];
    a.extend_from_slice(&u16s(u16::try_from(heads.len()).expect("few")));
    for h in heads {
        a.extend_from_slice(&u16s(*h));
    }
    a
}

fn blk_header(type_: u32, sector: u64) -> Vec<u8> {
    let mut h = type_.to_le_bytes().to_vec();
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&sector.to_le_bytes());
    h
}

fn queues() -> Vec<Seed> {
    // Queue size 8: table at 0, avail at 128, used at 152; data from 0x200.
    let size_log2 = 3;
    let block = |name: &'static str, type_: u32, data_flags: u16, data_len: u32, data: Vec<u8>| {
        let mut seed = vec![0, size_log2, 0, 0, 0];
        seed.extend(image(&[
            (0, desc(0x200, 16, NEXT, 1)),
            (16, desc(0x300, data_len, data_flags | NEXT, 2)),
            (32, desc(0x280, 1, WRITE, 0)),
            (128, avail(&[0])),
            (0x200, blk_header(type_, 1)),
            (0x300, data),
        ]));
        ("virtio_queues", name, seed)
    };
    let mut discard = 2u64.to_le_bytes().to_vec();
    discard.extend_from_slice(&4u32.to_le_bytes());
    discard.extend_from_slice(&[0; 4]);
    let mut out = vec![
        block("blk_read", 0, WRITE, 1024, vec![]),
        block("blk_write", 1, 0, 512, vec![0xab; 512]),
        block("blk_discard", 11, 0, 16, discard),
        block("blk_get_id", 8, WRITE, 20, vec![]),
    ];
    // virtio-net: RX table at 0 (one 2 KiB buffer), TX table at 0x800 (header + 60 bytes).
    let mut net = vec![1, size_log2, 1, 60, 0];
    let mut tx = vec![0u8; 12];
    tx.extend(0..60u8);
    net.extend(image(&[
        (0, desc(0x1000, 2048, WRITE, 0)),
        (128, avail(&[0])),
        (0x800, desc(0xa00, 72, 0, 0)),
        (0x800 + 128, avail(&[0])),
        (0xa00, tx),
    ]));
    out.push(("virtio_queues", "net_rx_tx", net));
    out
}

/// virtio_mmio operations (see that target's doc comment).
mod mmio {
    pub fn reg(offset: u16, v: u32) -> Vec<u8> {
        let mut o = vec![0];
        o.extend_from_slice(&offset.to_le_bytes());
        o.extend_from_slice(&v.to_le_bytes());
        o
    }
    pub fn read(offset: u16, width: u8) -> Vec<u8> {
        let mut o = vec![1];
        o.extend_from_slice(&offset.to_le_bytes());
        o.push(width);
        o
    }
    pub fn mem(gpa: u16, data: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        for (i, chunk) in data.chunks(255).enumerate() {
            o.push(3);
            o.extend_from_slice(&(gpa + 255 * i as u16).to_le_bytes());
            o.push(u8::try_from(chunk.len()).expect("chunk"));
            o.extend_from_slice(chunk);
        }
        o
    }
    /// The driver-setup macro: features, then (size, desc, avail, used) per queue.
    pub fn setup(features: [u32; 2], queues: &[[u16; 4]]) -> Vec<u8> {
        let mut o = vec![7];
        for f in features {
            o.extend_from_slice(&f.to_le_bytes());
        }
        for q in queues {
            for v in q {
                o.extend_from_slice(&v.to_le_bytes());
            }
        }
        o
    }
}

fn mmio_seeds() -> Vec<Seed> {
    // virtio-blk: by hand (status, features, queue 0), a read request, a kick.
    let mut blk = vec![0u8];
    for (r, w) in [(0x000, 4), (0x008, 4), (0x010, 4), (0x100, 8), (0x108, 1)] {
        blk.extend(mmio::read(r, w));
    }
    for (off, v) in [(0x70, 1), (0x70, 3), (0x24, 0), (0x20, 0x2260), (0x24, 1), (0x20, 1), (0x70, 0xb)] {
        blk.extend(mmio::reg(off, v));
    }
    for (off, v) in [
        (0x30, 0),
        (0x38, 8),
        (0x80, 0x1000),
        (0x90, 0x2000),
        (0xa0, 0x3000),
        (0x44, 1),
        (0x70, 0xf),
    ] {
        blk.extend(mmio::reg(off, v));
    }
    let mut table = desc(0x4000, 16, NEXT, 1);
    table.extend(desc(0x5000, 512, WRITE | NEXT, 2));
    table.extend(desc(0x6000, 1, WRITE, 0));
    blk.extend(mmio::mem(0x1000, &table));
    blk.extend(mmio::mem(0x2000, &avail(&[0])));
    blk.extend(mmio::mem(0x4000, &blk_header(0, 3)));
    blk.extend(mmio::reg(0x50, 0));
    blk.extend(mmio::read(0x60, 4));
    blk.extend(mmio::reg(0x64, 1));
    blk.extend(mmio::reg(0x70, 0));
    // virtio-net through the setup macro: RX at 0x1000.., TX at 0x7000..; a frame in, one out.
    let mut net = vec![1u8];
    net.extend(mmio::setup(
        [0xffff_ffff, 1],
        &[[8, 0x1000, 0x2000, 0x3000], [8, 0x7000, 0x8000, 0x9000]],
    ));
    net.extend(mmio::mem(0x1000, &desc(0x4000, 2048, WRITE, 0)));
    net.extend(mmio::mem(0x2000, &avail(&[0])));
    net.push(5);
    net.push(0);
    net.extend([6, 60]);
    net.extend(0..60u8);
    let mut tx = vec![0u8; 12];
    tx.extend([0xff; 60]);
    net.extend(mmio::mem(0x7000, &desc(0xa000, 72, 0, 0)));
    net.extend(mmio::mem(0xa000, &tx));
    net.extend(mmio::mem(0x8000, &avail(&[0])));
    net.extend(mmio::reg(0x50, 1));
    vec![("virtio_mmio", "blk_read", blk), ("virtio_mmio", "net_rx_tx", net)]
}

fn json(v: &str) -> Vec<u8> {
    v.as_bytes().to_vec()
}

fn config(args: &str, annotations: &str, linux_extra: &str) -> String {
    format!(
        r#"{{"ociVersion":"1.0.2","process":{{"args":[{args}],"cwd":"/","user":{{"uid":0,"gid":0}}}},"root":{{"path":"rootfs"}},"annotations":{{{annotations}}},"linux":{{"resources":{{"memory":{{"limit":67108864}},"cpu":{{"quota":150000,"period":100000}}}}{linux_extra}}}}}"#
    )
}

/// Standard base64 (the urunc values); the alphabet and padding only.
fn b64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn bundles() -> Vec<Seed> {
    let urunc = format!(
        r#""com.urunc.unikernel.binary":"{}","com.urunc.unikernel.hypervisor":"{}","com.urunc.unikernel.unikernelType":"{}","com.urunc.unikernel.cmdline":"{}""#,
        b64("/k"),
        b64("hvt"),
        b64("mirage"),
        b64("a b")
    );
    let netns = r#","namespaces":[{"type":"network","path":"/proc/self/ns/net"},{"type":"mount"}]"#;
    let mut from_json = json(&config(r#""/bin/sh""#, "", ""));
    from_json.push(0xff);
    from_json.extend(json(r#"{"dev.unik.kernel":"/hello.hvt","dev.unik.cmdline":"x y"}"#));
    let mut urunc_json = json(&config("", "", ""));
    urunc_json.push(0xff);
    urunc_json.extend(json("{}"));
    urunc_json.push(0xff);
    urunc_json.extend(json(&format!(
        r#"{{"com.urunc.unikernel.binary":"{}","hypervisor":"{}","unikernelType":"{}","block":"{}"}}"#,
        b64("/bzImage"),
        b64("qemu"),
        b64("unikraft"),
        b64("/disk.img")
    )));
    vec![
        (
            "bundle",
            "unik_hvt",
            json(&config(r#""/hello.hvt","a""#, r#""dev.unik.kernel":"/k","dev.unik.mem":"32""#, "")),
        ),
        (
            "bundle",
            "unik_devices",
            json(&config(
                "",
                r#""dev.unik.kernel":"bin/k","dev.unik.block.storage":"/disk.img","dev.unik.net.template":"mirage","dev.unik.net.interface":"eth0""#,
                netns,
            )),
        ),
        (
            "bundle",
            "unik_linux",
            json(&config(
                r#""/bzImage","console=ttyS0""#,
                r#""dev.unik.kernel":"/bzImage","dev.unik.kind":"linux","dev.unik.cpus":"2","dev.unik.initrd":"/disk.img","dev.unik.block.rootfs":"/disk.img","dev.unik.net.template":"ip={ip} gw={gateway}""#,
                "",
            )),
        ),
        ("bundle", "urunc", json(&config("", &urunc, ""))),
        ("bundle", "args0", json(&config(r#""/k","-x""#, "", ""))),
        ("bundle", "unik_json", from_json),
        ("bundle", "urunc_json", urunc_json),
    ]
}

/// Every seed.
pub fn all() -> Vec<Seed> {
    let mut seeds: Vec<Seed> = vec![
        ("elf_loader", "hvt_min", hvt_elf(&[], &[0xf4; 16])),
        (
            "elf_loader",
            "hvt_devices",
            hvt_elf(&[("storage", MFT_BLOCK), ("service0", MFT_NET)], &[0xf4; 16]),
        ),
        ("elf_loader", "bzimage", bzimage_head()),
        ("hvt_manifest", "reserved_only", [vec![0], manifest(&[])].concat()),
        (
            "hvt_manifest",
            "block_net",
            [vec![1], manifest(&[("storage", MFT_BLOCK), ("service0", MFT_NET)])].concat(),
        ),
        (
            "hvt_manifest",
            "same_names",
            [vec![3], manifest(&[("d", MFT_BLOCK), ("d", MFT_NET), ("x", 7)])].concat(),
        ),
        (
            "solo5_argv",
            "boot",
            b"unik\0--debug\0boot\0--mem=64\0--net:a=tap0\0--net-mac:a=02:00:00:00:00:01\0k\0--net:x=y".to_vec(),
        ),
        (
            "solo5_argv",
            "solo5_hvt",
            b"/usr/bin/solo5-hvt\0--mem\064\0--block:d=/f\0--block-sector-size:d=4096\0--\0k".to_vec(),
        ),
        ("solo5_argv", "other_command", b"unik\0state\0--net:a=b".to_vec()),
    ];
    // An ELF without Solo5 notes (a Linux ELF kernel to kind_of): the hvt image, one PT_LOAD.
    let mut linux_elf = hvt_elf(&[], &[0xf4; 16]);
    linux_elf[56..58].copy_from_slice(&1u16.to_le_bytes());
    seeds.push(("elf_loader", "linux_elf", linux_elf));
    seeds.extend(hypercalls());
    seeds.extend(queues());
    seeds.extend(mmio_seeds());
    seeds.extend(bundles());
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "writes fuzz/corpus; run by hand to regenerate the seeds"]
    fn write_seeds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for (target, name, data) in all() {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), data).unwrap();
        }
    }

    #[test]
    fn test_base64() {
        assert_eq!(b64("hvt"), "aHZ0");
        assert_eq!(b64("/k"), "L2s=");
        assert_eq!(b64("a b c"), "YSBiIGM=");
    }
}
