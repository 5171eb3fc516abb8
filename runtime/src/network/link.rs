//! The container's side: which interface the guest takes over, and its addresses.

use super::error::NetworkError;
use std::ffi::CStr;
use std::net::Ipv4Addr;

/// The container interface the guest takes over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name (any: eth0, net1, ...).
    pub name: String,
    /// ifindex.
    pub index: u32,
    /// MAC address, handed to the guest.
    pub mac: [u8; 6],
    /// MTU.
    pub mtu: u16,
    /// IPv4 address, handed to the guest.
    pub ip: Ipv4Addr,
    /// Prefix length of that address.
    pub prefix: u8,
}

/// An interface name with one of its IPv4 addresses and that address's prefix length.
type Ipv4Interface = (String, Ipv4Addr, u8);

/// Up, non-loopback interfaces with an IPv4 address, in the kernel's order; and a description of
/// every interface, for error messages.
fn ipv4_interfaces() -> std::io::Result<(Vec<Ipv4Interface>, Vec<String>)> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
        let loopback = ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
        let label = format!("{name}{}", if up { "" } else { " (down)" });
        if !seen.contains(&label) {
            seen.push(label);
        }
        if !up || loopback || ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr whose family we check first.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: AF_INET addresses (and their netmasks) are sockaddr_in.
        let (addr, mask) = unsafe {
            let a = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
            let m = &*ifa.ifa_netmask.cast::<libc::sockaddr_in>();
            (u32::from_be(a.sin_addr.s_addr), u32::from_be(m.sin_addr.s_addr))
        };
        out.push((name, Ipv4Addr::from(addr), u8::try_from(mask.count_ones()).unwrap_or(32)));
    }
    // SAFETY: frees the list getifaddrs returned; no reference into it survives.
    unsafe { libc::freeifaddrs(head) };
    Ok((out, seen))
}

/// The interface named `wanted`, or else the first up interface with an IPv4 address that is not
/// in `taken`.
pub fn find(wanted: Option<&str>, taken: &dyn Fn(&str) -> bool) -> Result<Interface, NetworkError> {
    let (candidates, seen) = ipv4_interfaces().map_err(NetworkError::Listing)?;
    let (name, ip, prefix) = candidates
        .into_iter()
        .find(|(name, ..)| wanted.map_or(!taken(name), |w| w == name))
        .ok_or_else(|| NetworkError::NoInterface {
            wanted: wanted.map_or("free interface".to_string(), |w| format!("interface '{w}'")),
            seen,
        })?;
    let index = index_of(&name).ok_or_else(|| NetworkError::NoSuchInterface(name.clone()))?;
    let property = |what| {
        let name = name.clone();
        move |source| NetworkError::Property { name, what, source }
    };
    let mac = vmm::host::tap::hw_addr(&name).map_err(property("MAC address"))?;
    let mtu = vmm::host::tap::interface_mtu(&name).map_err(property("MTU"))?;
    Ok(Interface {
        name,
        index,
        mac,
        mtu,
        ip,
        prefix,
    })
}

/// The default IPv4 gateway through `iface`, from `/proc/net/route`.
pub fn default_gateway(route_table: &str, iface: &str) -> Option<Ipv4Addr> {
    route_table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[0] != iface || f[1] != "00000000" {
            return None;
        }
        let gw = u32::from_str_radix(f[2], 16).ok()?;
        // The kernel prints the network-order address as a host-order integer.
        (gw != 0).then(|| Ipv4Addr::from(gw.to_ne_bytes()))
    })
}

/// The `nameserver` addresses of a resolv.conf.
pub fn nameservers(resolv_conf: &str) -> Vec<String> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// The index of interface `name` in the calling thread's network namespace, if it exists.
pub fn index_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex with a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_default_gateway_from_proc_net_route() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\n\
                     eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\n";
        assert_eq!(default_gateway(table, "eth0"), Some(Ipv4Addr::new(172, 17, 0, 1)));
        assert_eq!(default_gateway(table, "eth1"), None);
    }

    #[test]
    fn test_nameservers() {
        let conf = "# generated\nnameserver 10.0.0.2\nsearch example\n  nameserver 2001:db8::1 \noptions ndots:1\n";
        assert_eq!(nameservers(conf), ["10.0.0.2", "2001:db8::1"]);
    }
}
