//! `unik pack` arguments.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// The archive's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PackFormat {
    /// docker's (`docker save`): what `docker load` of any version and `ctr images import` take.
    Docker,
    /// An OCI image layout: what `ctr images import` (and docker 25 or later) take.
    Oci,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  unik pack -t hello:1.0 -o hello.tar hello.hvt
  docker load -i hello.tar && docker run --rm --runtime unik hello:1.0
  unik pack --block storage=disk.img --mem 64 --arg --verbose -t app:1.0 -o app.tar app.hvt
  unik pack --initrd initrd.cpio --cpus 2 --block root=rootfs.img --arg console=ttyS0 \\
            -t vm:1.0 --format oci -o vm.tar bzImage
  ctr images import vm.tar && ctr run --runtime io.containerd.runc.v2 --runc-binary unik \\
            docker.io/library/vm:1.0 vm1

The image holds the kernel at /<its file name>, each block image at /block/<NAME>.img, the
initrd at /<its file name> and /unik.json with the dev.unik.* settings (repeated as the image's
labels). Its entrypoint is the kernel and its command the --arg values, so `docker run IMAGE
ARGS...` replaces them. Everything is checked before anything is written; a failed pack leaves
no file. The same inputs give the same archive (times from SOURCE_DATE_EPOCH, else 1970).")]
pub struct PackArgs {
    /// The image's name and tag (default tag: latest).
    #[arg(short = 't', long = "tag", value_name = "NAME:TAG", value_parser = parse_reference)]
    pub reference: runtime::pack::Reference,

    /// The archive to write (replaced if it exists).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// The archive's format.
    #[arg(long, value_enum, default_value_t = PackFormat::Docker)]
    pub format: PackFormat,

    /// Block device NAME's disk image (a regular file), copied into the image. An hvt
    /// unikernel needs one for each block device its manifest declares, and takes no others.
    #[arg(long = "block", value_name = "NAME=FILE", value_parser = super::boot::parse_block)]
    pub blocks: Vec<(String, PathBuf)>,

    /// Initial ramdisk of a Linux-boot-protocol kernel, copied into the image.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,

    /// Guest memory in MiB (default: docker's -m, else 512).
    #[arg(long, value_name = "MiB")]
    pub mem: Option<u64>,

    /// vCPUs of a Linux-boot-protocol kernel (default: docker's --cpus rounded up, else 1).
    #[arg(long, value_name = "N")]
    pub cpus: Option<u8>,

    /// How the guest gets its network settings: a command-line template with {ip} {prefix}
    /// {cidr} {netmask} {gateway} {dns} {mac} {args}, or mirage, rumprun, unikraft, linux.
    #[arg(long, value_name = "TEMPLATE")]
    pub net_template: Option<String>,

    /// One argument for the guest (repeat, in order): the image's command.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,

    /// The kernel: a solo5-hvt unikernel, or a Linux-boot-protocol or multiboot kernel.
    #[arg(value_name = "KERNEL")]
    pub kernel: PathBuf,
}

fn parse_reference(s: &str) -> Result<runtime::pack::Reference, String> {
    s.parse()
}

impl From<PackArgs> for runtime::pack::PackSpec {
    fn from(a: PackArgs) -> Self {
        runtime::pack::PackSpec {
            kernel: a.kernel,
            blocks: a.blocks,
            initrd: a.initrd,
            mem_mib: a.mem,
            cpus: a.cpus,
            net_template: a.net_template,
            args: a.args,
            reference: a.reference,
            format: match a.format {
                PackFormat::Docker => runtime::pack::Format::Docker,
                PackFormat::Oci => runtime::pack::Format::Oci,
            },
        }
    }
}
