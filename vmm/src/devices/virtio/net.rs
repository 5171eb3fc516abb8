//! virtio-net on a tap: one RX and one TX queue, the MAC and MTU in configuration space.
//!
//! With a vnet-header tap the 12-byte `virtio_net_hdr_v1` passes through unchanged in both
//! directions, so checksum and TSO offloads work end to end and are offered; with a plain tap
//! (one handed over by fd without IFF_VNET_HDR) the header is added and stripped here and no
//! offload is offered. RX is driven by the tap fd (edge-triggered, in the event loop) and by RX
//! kicks when the guest posts buffers while a frame is waiting; TX by TX kicks.

use virtio_bindings::virtio_net::virtio_net_config;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{ByteValued, Bytes};

use super::{Mem, TYPE_NET, VirtioDevice};
use crate::host::tap::{TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, Tap, VNET_HDR_LEN};

/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;
/// Largest frame with its header: a 64 KiB TSO segment plus Ethernet header.
const FRAME_MAX: usize = VNET_HDR_LEN + 65_536 + 14;

/// Feature bits.
pub mod feature {
    /// Device handles packets with partial checksum.
    pub const CSUM: u64 = 1 << 0;
    /// Driver handles packets with partial checksum.
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// The MTU is in configuration space.
    pub const MTU: u64 = 1 << 3;
    /// The MAC is in configuration space.
    pub const MAC: u64 = 1 << 5;
    /// Driver takes TSOv4.
    pub const GUEST_TSO4: u64 = 1 << 7;
    /// Driver takes TSOv6.
    pub const GUEST_TSO6: u64 = 1 << 8;
    /// Device takes TSOv4.
    pub const HOST_TSO4: u64 = 1 << 11;
    /// Device takes TSOv6.
    pub const HOST_TSO6: u64 = 1 << 12;
}

/// The configuration space: virtio-bindings' `struct virtio_net_config`, little-endian.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default)]
struct ConfigSpace(virtio_net_config);

// SAFETY: `virtio_net_config` is `repr(C, packed)` and holds only integers and arrays of them:
// no padding, and every bit pattern is a valid value.
unsafe impl ByteValued for ConfigSpace {}

/// A virtio network card on a tap.
pub struct Net {
    tap: Tap,
    config: ConfigSpace,
    /// A frame read from the tap that no RX buffer has taken yet.
    held: Option<usize>,
    /// The tap may have more frames (edge-triggered: read until EAGAIN).
    rx_pending: bool,
    frame: Vec<u8>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("tap", &self.tap).finish_non_exhaustive()
    }
}

impl Net {
    /// A card with `mac` on `tap`.
    pub fn new(tap: Tap, mac: [u8; 6]) -> Net {
        let config = ConfigSpace(virtio_net_config {
            mac,
            max_virtqueue_pairs: 1u16.to_le(),
            mtu: tap.mtu().to_le(),
            ..virtio_net_config::default()
        });
        Net {
            tap,
            config,
            held: None,
            rx_pending: true,
            frame: vec![0; FRAME_MAX],
        }
    }

    /// Reads the next frame (header included) into `self.frame`, unless one is held.
    fn fetch(&mut self) -> Option<usize> {
        if self.held.is_none() && self.rx_pending {
            let (start, hdr) = if self.tap.vnet_hdr() {
                (0, 0)
            } else {
                (VNET_HDR_LEN, VNET_HDR_LEN)
            };
            match self.tap.read_frame(&mut self.frame[start..]) {
                Ok(Some(n)) => {
                    // A plain tap gives no header: "no offload, no GSO".
                    self.frame[..hdr].fill(0);
                    self.held = Some(n + hdr);
                }
                Ok(None) => self.rx_pending = false,
                Err(e) => {
                    log::warn!("virtio-net: reading {}: {e}", self.tap.name());
                    self.rx_pending = false;
                }
            }
        }
        self.held
    }

    /// Moves waiting frames into posted RX buffers; true when any was used.
    fn rx(&mut self, mem: &Mem, queue: &mut Queue) -> bool {
        let mut used = false;
        while let Some(len) = self.fetch() {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                // No buffer: keep the frame until the guest posts one (an RX kick).
                break;
            };
            let head = chain.head_index();
            // num_buffers = 1 (no mergeable buffers).
            self.frame[10..12].copy_from_slice(&1u16.to_le_bytes());
            let descs: Vec<Descriptor> = chain.collect();
            let written = scatter(mem, &descs, &self.frame[..len]).unwrap_or_else(|| {
                log::debug!("virtio-net: RX buffer (head {head}) too small or invalid for a {len}-byte frame; dropped");
                0
            });
            self.held = None;
            if let Err(e) = queue.add_used(mem, head, written) {
                guest_warn!("virtio-net: returning an RX buffer failed: {e}");
                return used;
            }
            used = true;
        }
        used
    }

    /// Sends every frame the guest queued; true when any buffer was returned.
    fn tx(&mut self, mem: &Mem, queue: &mut Queue) -> bool {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let descs: Vec<Descriptor> = chain.collect();
            match gather(mem, &descs, &mut self.frame) {
                Some(len) if len > VNET_HDR_LEN => {
                    let start = if self.tap.vnet_hdr() { 0 } else { VNET_HDR_LEN };
                    if let Err(e) = self.tap.write_frame(&self.frame[start..len]) {
                        log::debug!("virtio-net: writing to {}: {e}; frame dropped", self.tap.name());
                    }
                }
                _ => log::debug!("virtio-net: malformed TX chain (head {head}); dropped"),
            }
            if let Err(e) = queue.add_used(mem, head, 0) {
                guest_warn!("virtio-net: returning a TX buffer failed: {e}");
                return used;
            }
            used = true;
        }
        used
    }
}

/// Copies `data` into the device-writable descriptors of a chain; `None` if they are invalid or
/// too small (a frame is never truncated).
fn scatter(mem: &Mem, descs: &[Descriptor], data: &[u8]) -> Option<u32> {
    let room: u64 = descs.iter().filter(|d| d.is_write_only()).map(|d| u64::from(d.len())).sum();
    if descs.iter().any(|d| !d.is_write_only()) || room < data.len() as u64 {
        return None;
    }
    let mut rest = data;
    for d in descs {
        let n = rest.len().min(d.len() as usize);
        mem.write_slice(&rest[..n], d.addr()).ok()?;
        rest = &rest[n..];
        if rest.is_empty() {
            break;
        }
    }
    u32::try_from(data.len()).ok()
}

/// Copies the device-readable descriptors of a chain into `buf`; `None` if the chain has a
/// writable descriptor, an invalid address or more than `buf` holds.
fn gather(mem: &Mem, descs: &[Descriptor], buf: &mut [u8]) -> Option<usize> {
    let mut len = 0usize;
    for d in descs {
        if d.is_write_only() {
            return None;
        }
        let n = d.len() as usize;
        let dst = buf.get_mut(len..len.checked_add(n)?)?;
        mem.read_slice(dst, d.addr()).ok()?;
        len += n;
    }
    Some(len)
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        use feature::*;
        let offloads = if self.tap.vnet_hdr() {
            CSUM | GUEST_CSUM | GUEST_TSO4 | GUEST_TSO6 | HOST_TSO4 | HOST_TSO6
        } else {
            0
        };
        MAC | MTU | offloads
    }

    fn config(&self) -> Vec<u8> {
        self.config.as_slice().to_vec()
    }

    fn activate(&mut self, acked: u64) -> Result<(), String> {
        if self.tap.vnet_hdr() {
            let mut flags = 0;
            if acked & feature::GUEST_CSUM != 0 {
                flags |= TUN_F_CSUM;
                if acked & feature::GUEST_TSO4 != 0 {
                    flags |= TUN_F_TSO4;
                }
                if acked & feature::GUEST_TSO6 != 0 {
                    flags |= TUN_F_TSO6;
                }
            }
            self.tap
                .set_offload(flags)
                .map_err(|e| format!("{}: TUNSETOFFLOAD {flags:#x}: {e}", self.tap.name()))?;
        }
        log::debug!("virtio-net: {} active (features {acked:#x})", self.tap.name());
        Ok(())
    }

    fn reset(&mut self) {
        self.held = None;
        self.rx_pending = true;
    }

    fn process_queue(&mut self, mem: &Mem, queues: &mut [Queue], index: usize) -> bool {
        let Some(queue) = queues.get_mut(index) else { return false };
        let used = match index {
            RX => self.rx(mem, queue),
            TX => self.tx(mem, queue),
            _ => false,
        };
        used && queue.needs_notification(mem).unwrap_or(true)
    }

    fn backend_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.tap.raw_fd())
    }

    fn process_backend(&mut self, mem: &Mem, queues: &mut [Queue]) -> bool {
        self.rx_pending = true;
        let Some(queue) = queues.get_mut(RX) else { return false };
        self.rx(mem, queue) && queue.needs_notification(mem).unwrap_or(true)
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
