//! Container networking for unikernels: inside the container's network namespace, a tap per
//! container is spliced to the container's interface with tc (ingress u32 + mirred redirect, both
//! ways), and the guest takes over the interface's MAC, IPv4 address, prefix, gateway and DNS,
//! passed on its command line through a template.
//!
//! The tap belongs to the monitor process (it is not persistent), so it and its filters vanish
//! when the monitor exits however it exits; the filter on the container interface is removed by
//! the monitor on its way out, or by `delete` after a SIGKILL.

mod error;
pub mod link;
mod netlink;
pub mod tc;
pub mod watch;

pub use error::NetworkError;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vmm::{MacAddr, NetBackend, NetConfig, VmConfig};

use crate::error::ContainerError;

/// Which network namespace the monitor runs in.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Netns {
    /// The caller's (the bundle has no network namespace).
    #[default]
    Host,
    /// A new, empty one (a network namespace without a path).
    New,
    /// An existing one (docker's, a CNI pod's).
    Path(PathBuf),
}

/// What the monitor must set up before building the VM (`network.json` in the state dir).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct NetPlan {
    /// The namespace to run in.
    pub netns: Netns,
    /// Manifest network devices to wire (at most one today).
    pub devices: Vec<String>,
    /// The container interface to take over (default: the first free one with IPv4).
    pub interface: Option<String>,
    /// Guest command-line template (placeholders: {ip} {prefix} {cidr} {netmask} {gateway}
    /// {dns} {mac} {args}); without {args} it is put before the guest's arguments, or, when they
    /// hold a standalone `--`, just before it.
    pub template: Option<String>,
    /// The bundle's resolv.conf (the source of its /etc/resolv.conf mount).
    pub resolv_conf: Option<PathBuf>,
    /// Name of the tap to create: [`TAP_TEMPLATE`], whose `%d` the kernel fills in (a plan
    /// written before held a fixed name, which still works).
    pub tap: String,
    /// The tap carries a virtio-net header before each frame (what the guest kind takes:
    /// `vmm::GuestKind::tap_vnet_hdr`).
    #[serde(default)]
    pub vnet_hdr: bool,
    /// The guest boots without a network card when there is no interface to give it (a
    /// Linux-boot guest's virtio-net card, in a container with `--network none` or the host's
    /// namespace); an hvt guest's manifest requires its devices.
    #[serde(default)]
    pub card_optional: bool,
}

/// Ready templates, by name (`dev.unik.net.template=mirage`).
pub const TEMPLATES: &[(&str, &str)] = &[
    ("mirage", "--ipv4={cidr} --ipv4-gateway={gateway}"),
    // Unikraft's lwIP netdev parameter: address/prefix, gateway, DNS.
    ("unikraft", "netdev.ip={cidr}:{gateway}:{dns}"),
    // Linux's ip= (nfsroot.rst): client::gateway:netmask::device:autoconf:dns.
    ("linux", "ip={ip}::{gateway}:{netmask}::eth0:off:{dns}"),
    (
        "rumprun",
        r#"{"cmdline":"{args}","net":{"if":"ukvmif0","cloner":"True","type":"inet","method":"static","addr":"{ip}","mask":"{prefix}","gw":"{gateway}"}}"#,
    ),
];

/// The name every container's tap is created with: the kernel replaces `%d` with the first free
/// number in the container's network namespace when the monitor wires it (`uk0`, `uk1`, …), so
/// containers sharing a namespace (docker's `--network container:X`, a pod) never collide, and a
/// name derived from the id (a hash of it, to fit IFNAMSIZ) cannot collide either. The tap is
/// not persistent: nothing needs its name after the monitor is gone (`delete` removes the
/// splice from the container interface, which `wired.json` names).
pub const TAP_TEMPLATE: &str = "uk%d";

/// Joins or creates the plan's network namespace (the calling thread; call it single-threaded).
pub fn enter(plan: &NetPlan) -> Result<(), ContainerError> {
    match &plan.netns {
        Netns::Host => Ok(()),
        Netns::New => {
            // SAFETY: unshare(2) of the network namespace for this single-threaded process.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(ContainerError::io("creating a network namespace")(std::io::Error::last_os_error()));
            }
            Ok(())
        }
        Netns::Path(path) => {
            // O_NONBLOCK: a FIFO given as the path must fail at setns, not hang here.
            let ns = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(ContainerError::io(format!("opening network namespace {}", path.display())))?;
            // SAFETY: setns(2) with a namespace fd we own.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(ContainerError::io(format!("joining network namespace {}", path.display()))(
                    std::io::Error::last_os_error(),
                ));
            }
            Ok(())
        }
    }
}

/// A spliced tap; dropping it removes the splice from the container interface, unless
/// [`leave_for_delete`](Wired::leave_for_delete) said not to.
#[derive(Debug)]
pub struct Wired {
    /// The tap's fd, handed to the VM as `NetBackend::Fd`.
    pub tap: File,
    /// The tap's name (what the kernel made of [`NetPlan::tap`]).
    pub tap_name: String,
    /// The container interface.
    pub interface: link::Interface,
    /// Placeholder values.
    pub values: BTreeMap<&'static str, String>,
    /// Whether dropping removes the splice.
    remove_on_drop: bool,
}

impl Wired {
    /// Leaves the splice for `unik delete` to remove (it reads `wired.json`): a monitor that ran
    /// its guest has no capabilities left and its seccomp filter allows no netlink socket.
    pub fn leave_for_delete(mut self) {
        self.remove_on_drop = false;
    }
}

impl Drop for Wired {
    fn drop(&mut self) {
        if !self.remove_on_drop {
            return;
        }
        if let Err(e) = tc::del_ingress(self.interface.index) {
            log::warn!("removing the splice from {}: {e}", self.interface.name);
        }
    }
}

/// After the monitor ended (a monitor that ran its guest is confined and leaves the splice; one
/// killed by SIGKILL had no chance to clean up), its tap is gone but the container interface
/// `interface` still has the ingress qdisc redirecting into it: removes that, inside the plan's
/// network namespace (from a thread, so only that thread changes namespace). A namespace the
/// monitor created itself died with it; a named one or the host's can hold leftovers.
pub fn remove_splice(plan: &NetPlan, interface: &str) -> std::io::Result<()> {
    if plan.netns == Netns::New {
        return Ok(());
    }
    let (plan, interface) = (plan.clone(), interface.to_string());
    let removed = std::thread::spawn(move || {
        enter(&plan).map_err(std::io::Error::other)?;
        match link::index_of(&interface) {
            Some(index) => tc::del_ingress(index),
            None => Ok(()),
        }
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the thread removing the splice panicked")));
    match removed {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => Ok(()),
        other => other,
    }
}

/// Creates the tap, splices it to the container interface and adds the device to `cfg` (with
/// the interface's MAC) and the expanded template to its command line. `None` when the kernel
/// declares no network device.
pub fn wire(plan: &NetPlan, cfg: &mut VmConfig) -> Result<Option<Wired>, ContainerError> {
    let Some(device) = plan.devices.first() else { return Ok(None) };
    if plan.devices.len() > 1 {
        return Err(NetworkError::TooManyDevices(plan.devices.len()).into());
    }
    // Without a namespace of its own the container sees the host's interfaces: redirecting one
    // of those into a guest would cut the host off, so only an interface named on purpose is.
    if plan.netns == Netns::Host && plan.interface.is_none() {
        if plan.card_optional {
            log::debug!("the container shares the host's network namespace; booting without a network card");
            return Ok(None);
        }
        return Err(NetworkError::HostNamespace {
            device: device.clone(),
            annotation: crate::annotations::NET_INTERFACE,
        }
        .into());
    }
    // An interface another unikernel already spliced has an ingress qdisc: take the next one.
    let mut tried = Vec::new();
    let interface = loop {
        let iface = match link::find(plan.interface.as_deref(), &|name| tried.iter().any(|t: &String| t == name)) {
            Ok(iface) => iface,
            Err(e) if plan.card_optional && plan.interface.is_none() && tried.is_empty() => {
                log::debug!("no container interface for the guest's network card ({e}); booting without one");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        match tc::add_ingress(iface.index) {
            Ok(()) => break iface,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && plan.interface.is_none() => tried.push(iface.name),
            Err(source) => return Err(NetworkError::Ingress { name: iface.name, source }.into()),
        }
    };
    let undo = |e: NetworkError| {
        let _ = tc::del_ingress(interface.index);
        ContainerError::from(e)
    };
    let (tap, tap_name) = open_tap(plan, interface.mtu).map_err(|e| undo(e.into()))?;
    let tap_index = link::index_of(&tap_name).ok_or_else(|| undo(NetworkError::NoSuchInterface(tap_name.clone())))?;
    if let Err(e) = tc::set_noqueue(tap_index) {
        // Only memory is at stake: the kernel's default qdisc works too.
        log::debug!("{tap_name}: no noqueue root qdisc ({e}); keeping the kernel's default");
    }
    vmm::host::tap::bring_up(&tap_name).map_err(|e| undo(e.into()))?;
    let splice = tc::add_ingress(tap_index)
        .and_then(|()| tc::add_redirect(interface.index, tap_index))
        .and_then(|()| tc::add_redirect(tap_index, interface.index));
    splice.map_err(|source| {
        undo(NetworkError::Splice {
            tap: tap_name.clone(),
            interface: interface.name.clone(),
            source,
        })
    })?;

    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let gateway = link::default_gateway(&routes, &interface.name)
        .map(|g| g.to_string())
        .unwrap_or_default();
    let dns = plan
        .resolv_conf
        .as_ref()
        .and_then(|p| vmm::host::files::read_regular(vmm::host::files::Root::Host, p, 1 << 16, "allowed").ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .map(|c| link::nameservers(&c))
        .unwrap_or_default();
    let mask = u32::MAX.checked_shl(32 - u32::from(interface.prefix)).unwrap_or(0);
    let values = BTreeMap::from([
        ("ip", interface.ip.to_string()),
        ("prefix", interface.prefix.to_string()),
        ("cidr", format!("{}/{}", interface.ip, interface.prefix)),
        ("netmask", std::net::Ipv4Addr::from(mask).to_string()),
        ("gateway", gateway),
        ("dns", dns.first().cloned().unwrap_or_default()),
        ("mac", MacAddr(interface.mac).to_string()),
    ]);
    if let Some(template) = &plan.template {
        cfg.cmdline = expand(template, &values, &cfg.cmdline);
    }
    cfg.nets.push(NetConfig {
        name: device.clone(),
        backend: NetBackend::Fd(tap.as_raw_fd()),
        mac: Some(MacAddr(interface.mac)),
    });
    Ok(Some(Wired {
        tap,
        tap_name,
        interface,
        values,
        remove_on_drop: true,
    }))
}

/// Creates the plan's tap with `mtu`: its fd and the name the kernel gave it.
fn open_tap(plan: &NetPlan, mtu: u16) -> Result<(File, String), vmm::host::tap::TapError> {
    vmm::host::tap::create(&plan.tap, mtu, plan.vnet_hdr)
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 8] = ["ip", "prefix", "cidr", "netmask", "gateway", "dns", "mac", "args"];

/// Checks a template (a ready template's name or the template itself): every `{word}` in it
/// must be a known placeholder, so a typo is an error rather than text handed to the guest.
pub fn check_template(template: &str) -> Result<(), String> {
    if TEMPLATES.iter().any(|(name, _)| *name == template) {
        return Ok(());
    }
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let word = &rest[..close];
        let is_word = !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if is_word && !PLACEHOLDERS.contains(&word) {
            return Err(format!(
                "unknown placeholder {{{word}}} (known: {})",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
            ));
        }
    }
    Ok(())
}

/// Expands a command-line template (a ready template's name or the template itself).
pub fn expand(template: &str, values: &BTreeMap<&'static str, String>, args: &[String]) -> Vec<String> {
    let template = TEMPLATES.iter().find(|(name, _)| *name == template).map_or(template, |(_, t)| *t);
    let mut text = template.to_string();
    for (key, value) in values {
        text = text.replace(&format!("{{{key}}}"), value);
    }
    if text.contains("{args}") {
        return vec![text.replace("{args}", &args.join(" "))];
    }
    // Kernel parameters come before a standalone `--` (what follows it is the application's, for
    // Linux's init and Unikraft's `main` alike); without one, before every argument.
    let words = text.split_whitespace().map(String::from);
    match args.iter().position(|a| a == "--") {
        Some(at) => args[..at].iter().cloned().chain(words).chain(args[at..].iter().cloned()).collect(),
        None => words.chain(args.iter().cloned()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("ip", "10.0.0.5".to_string()),
            ("prefix", "20".to_string()),
            ("cidr", "10.0.0.5/20".to_string()),
            ("gateway", "10.0.0.1".to_string()),
        ])
    }

    #[test]
    fn test_templates() {
        let args = vec!["--x".to_string()];
        assert_eq!(
            expand("mirage", &values(), &args),
            ["--ipv4=10.0.0.5/20", "--ipv4-gateway=10.0.0.1", "--x"]
        );
        assert_eq!(expand("ip={ip}", &values(), &args), ["ip=10.0.0.5", "--x"]);
        // Before the application's arguments, after a program name.
        let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            expand("unikraft", &values(), &words("app -- -c /conf -- x")),
            words("app netdev.ip=10.0.0.5/20:10.0.0.1:{dns} -- -c /conf -- x")
        );
        let rump = expand("rumprun", &values(), &["a".into(), "b".into()]);
        assert_eq!(rump.len(), 1);
        let json: serde_json::Value = serde_json::from_str(&rump[0]).unwrap();
        assert_eq!(json["cmdline"], "a b");
        assert_eq!(json["net"]["addr"], "10.0.0.5");
        assert_eq!(json["net"]["mask"], "20");
        assert_eq!(json["net"]["gw"], "10.0.0.1");
    }

    #[test]
    fn test_template_placeholders_are_checked() {
        check_template("ip={ip} gw={gateway} {args}").unwrap();
        check_template("rumprun").unwrap();
        check_template(r#"{"addr":"{ip}"}"#).unwrap();
        let err = check_template("ip={ip} {fooo}").unwrap_err();
        assert!(err.starts_with("unknown placeholder {fooo} (known: {ip} {prefix}"), "{err}");
    }

    #[test]
    fn test_host_namespace_is_not_spliced_by_default() {
        let mut plan = NetPlan {
            netns: Netns::Host,
            devices: vec!["service0".into()],
            tap: "uk0".into(),
            ..NetPlan::default()
        };
        let mut cfg = VmConfig::new("/unused");
        let err = wire(&plan, &mut cfg).unwrap_err().to_string();
        assert!(err.contains("network device 'service0'"), "{err}");
        assert!(err.contains("shares the host's network namespace"), "{err}");
        assert!(err.contains("dev.unik.net.interface"), "{err}");
        // A Linux-boot guest's card is optional: it boots without one.
        plan.card_optional = true;
        assert!(wire(&plan, &mut cfg).unwrap().is_none());
        assert!(cfg.nets.is_empty());
    }

    #[test]
    fn test_a_fifo_as_the_namespace_fails_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ns");
        crate::bundle::tests::mkfifo(&fifo);
        let plan = NetPlan {
            netns: Netns::Path(fifo),
            ..NetPlan::default()
        };
        // On its own thread: had it worked, only that thread would have changed namespace.
        let err = std::thread::spawn(move || enter(&plan).unwrap_err().to_string()).join().unwrap();
        assert!(err.contains("joining network namespace"), "{err}");
    }

    /// Runs `f` on a thread of its own in a new, empty network namespace (only that thread
    /// changes namespace); `None` when namespaces cannot be created here, after reporting
    /// `test` as not run (scripts/test.sh counts it as skipped, not passed).
    fn in_new_netns<T: Send + 'static>(test: &'static str, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        std::thread::spawn(move || {
            // SAFETY: unshare(2) of the network namespace, for this thread only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let reason = format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
                vmm::test_report::report_not_run(test, &reason);
                return None;
            }
            Some(f())
        })
        .join()
        .unwrap()
    }

    #[test]
    fn test_two_containers_in_one_namespace_get_distinct_taps() {
        // Containers c693596 and c1170850, whose ids' 32-bit FNV-1a hashes collide, once got
        // taps of the same name; the second failed with EBUSY. Every plan now names the same
        // template, and the kernel numbers the taps.
        let plan = || NetPlan {
            tap: TAP_TEMPLATE.into(),
            ..NetPlan::default()
        };
        let taps = in_new_netns("test_two_containers_in_one_namespace_get_distinct_taps", move || {
            let a = open_tap(&plan(), 1400).unwrap();
            let b = open_tap(&plan(), 1400).unwrap();
            let names = (a.1.clone(), b.1.clone());
            // Both exist at once, each under its own name, as long as their fds are open.
            for name in [&names.0, &names.1] {
                assert_eq!(vmm::host::tap::interface_mtu(name).unwrap(), 1400, "{name}");
                assert!(name.len() < 16, "{name} does not fit IFNAMSIZ");
            }
            names
        });
        let Some((a, b)) = taps else { return };
        assert_ne!(a, b);
    }
}
