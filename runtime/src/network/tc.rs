//! The L2 splice: an ingress qdisc on each side and a u32 match-all filter whose mirred action
//! redirects every frame to the other side's egress (urunc's splice, built over netlink).

use std::io;

use super::netlink::{Message, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, request};

const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_NEWTFILTER: u16 = 44;
const TC_H_INGRESS: u32 = 0xFFFF_FFF1;
const TC_H_ROOT: u32 = 0xFFFF_FFFF;
const INGRESS_HANDLE: u32 = 0xFFFF_0000;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_U32_SEL: u16 = 5;
const TCA_U32_ACT: u16 = 7;
const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_MIRRED_PARMS: u16 = 2;
const TC_ACT_STOLEN: i32 = 4;
const TCA_EGRESS_REDIR: i32 = 1;
const TC_U32_TERMINAL: u8 = 1;
const ETH_P_ALL: u16 = 0x0003;
/// The filter priority unik uses.
pub const PRIO: u32 = 0xC0DE & 0xFFFF;

/// `struct tcmsg` for `ifindex`.
fn tcmsg(ifindex: u32, handle: u32, parent: u32, info: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0] = u8::try_from(libc::AF_UNSPEC).unwrap_or(0);
    b[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    b[8..12].copy_from_slice(&handle.to_ne_bytes());
    b[12..16].copy_from_slice(&parent.to_ne_bytes());
    b[16..20].copy_from_slice(&info.to_ne_bytes());
    b
}

/// Adds the ingress qdisc to `ifindex` (fails with EEXIST if it has one).
pub fn add_ingress(ifindex: u32) -> io::Result<()> {
    let mut m = Message::new(
        RTM_NEWQDISC,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        &tcmsg(ifindex, INGRESS_HANDLE, TC_H_INGRESS, 0),
    );
    m.attr(TCA_KIND, b"ingress\0");
    request(&mut m)
}

/// Makes `noqueue` the root qdisc of `ifindex`, before it is up (else the kernel gives it
/// `pfifo_fast`: three 8 KiB rings per tap that a tap never fills, since its transmit function
/// never stops the queue and drops when the guest's own ring is full).
pub fn set_noqueue(ifindex: u32) -> io::Result<()> {
    let mut m = Message::new(
        RTM_NEWQDISC,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        &tcmsg(ifindex, 0, TC_H_ROOT, 0),
    );
    m.attr(TCA_KIND, b"noqueue\0");
    request(&mut m)
}

/// Removes the ingress qdisc of `ifindex`, and with it its filters.
pub fn del_ingress(ifindex: u32) -> io::Result<()> {
    let mut m = Message::new(
        RTM_DELQDISC,
        NLM_F_REQUEST | NLM_F_ACK,
        &tcmsg(ifindex, INGRESS_HANDLE, TC_H_INGRESS, 0),
    );
    m.attr(TCA_KIND, b"ingress\0");
    request(&mut m)
}

/// Redirects every frame arriving on `from` to the egress of `to`.
pub fn add_redirect(from: u32, to: u32) -> io::Result<()> {
    let info = (PRIO << 16) | u32::from(ETH_P_ALL.to_be());
    let mut m = Message::new(
        RTM_NEWTFILTER,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        &tcmsg(from, 0, INGRESS_HANDLE, info),
    );
    // One key that matches everything: value 0 under mask 0 at offset 0.
    let mut sel = [0u8; 16 + 16];
    sel[0] = TC_U32_TERMINAL;
    sel[2] = 1;
    let mut mirred = [0u8; 28];
    mirred[8..12].copy_from_slice(&TC_ACT_STOLEN.to_ne_bytes());
    mirred[20..24].copy_from_slice(&TCA_EGRESS_REDIR.to_ne_bytes());
    mirred[24..28].copy_from_slice(&to.to_ne_bytes());
    m.attr(TCA_KIND, b"u32\0")
        .begin(TCA_OPTIONS)
        .attr(TCA_U32_SEL, &sel)
        .begin(TCA_U32_ACT)
        .begin(1);
    m.attr(TCA_ACT_KIND, b"mirred\0")
        .begin(TCA_ACT_OPTIONS)
        .attr(TCA_MIRRED_PARMS, &mirred)
        .end()
        .end()
        .end()
        .end();
    request(&mut m)
}
