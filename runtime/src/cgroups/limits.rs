//! What a container asks of its cgroup (`linux.resources`), checked per field, and the files
//! each cgroup version holds it in.
//!
//! Per field (README, "What docker's flags do for a unikernel"):
//! * applied: `memory.limit` (as guest memory plus [`MONITOR_OVERHEAD`]), `memory.reservation`,
//!   `memory.swap`, `memory.swappiness`, `memory.disableOOMKiller`, every `cpu` field (shares,
//!   quota, period, burst, idle, realtime runtime and period, cpus, mems), `pids.limit` (never
//!   below the monitor's tasks) and, on cgroup v2, `unified`;
//! * refused: `memory.kernel`, `memory.kernelTCP`, `blockIO` (any weight or device list),
//!   `network` (class id, priorities), `rdma`;
//! * not applied, harmlessly: `devices` (the monitor's own access to `/dev/kvm` and
//!   `/dev/net/tun` is the runtime's business, and the guest reaches no host device; docker
//!   always sends a deny-all list), `hugepageLimits` (guest memory is ordinary anonymous memory,
//!   never hugetlb pages, so any such limit already holds), `memory.useHierarchy` and
//!   `memory.checkBeforeUpdate` (runc's internals).
//!
//! A field whose file the host lacks (its controller is not mounted, or the value has no
//! counterpart in this cgroup version) is an error naming the field and the file, never a skip.

use std::collections::BTreeMap;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use super::CgroupError;

/// Headroom on top of guest memory for the monitor itself (its own RSS is about 3 MiB; the rest
/// covers page tables and kernel accounting of the guest mapping).
pub const MONITOR_OVERHEAD: u64 = 32 << 20;

/// The cgroup layout of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One hierarchy per controller.
    V1,
    /// The unified hierarchy.
    V2,
}

/// When the resources are applied: at `create` a memory limit sizes the guest, at `update` the
/// guest's memory is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// `create`.
    Create,
    /// `update`.
    Update,
}

/// What the guest's monitor needs whatever the limits say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guest {
    /// Guest memory, in MiB.
    pub mem_mib: u64,
    /// Tasks the monitor runs (see `vmm::VmConfig::monitor_tasks`).
    pub tasks: u32,
}

/// Swap on top of the memory limit.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Swap {
    /// No swap limit (`memory.swap` -1).
    Unlimited,
    /// This many bytes of swap beyond the memory limit (`memory.swap` minus `memory.limit`).
    Extra(u64),
}

/// The checked limits, in cgroup terms.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Limits {
    /// Memory limit of the cgroup, bytes (guest memory plus the monitor's overhead).
    pub memory_max: Option<u64>,
    /// Memory reservation (soft limit), bytes.
    pub memory_low: Option<u64>,
    /// Swap.
    pub swap: Option<Swap>,
    /// Swappiness, 0 to 100.
    pub swappiness: Option<u64>,
    /// The OOM killer is disabled.
    pub oom_kill_disable: bool,
    /// CPU shares (cgroup v1's scale; converted to a weight on v2).
    pub cpu_shares: Option<u64>,
    /// CFS quota, µs per period; -1 for none.
    pub cpu_quota: Option<i64>,
    /// CFS period, µs.
    pub cpu_period: Option<u64>,
    /// CFS burst, µs.
    pub cpu_burst: Option<u64>,
    /// SCHED_IDLE for the cgroup.
    pub cpu_idle: Option<i64>,
    /// Realtime runtime, µs per realtime period.
    pub rt_runtime: Option<i64>,
    /// Realtime period, µs.
    pub rt_period: Option<u64>,
    /// CPUs allowed (cpuset list).
    pub cpus: Option<String>,
    /// Memory nodes allowed (cpuset list).
    pub mems: Option<String>,
    /// Pids limit; -1 for none.
    pub pids_max: Option<i64>,
    /// cgroup v2 files by name, written as given.
    pub unified: BTreeMap<String, String>,
}

/// One file to write for one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The `linux.resources` field, e.g. `cpu.quota`.
    pub field: String,
    /// The file, e.g. `cpu.max`.
    pub file: String,
    /// What to write.
    pub value: String,
}

impl Write {
    /// The controller the file belongs to (`cpu.max` → `cpu`).
    pub fn controller(&self) -> &str {
        self.file.split('.').next().unwrap_or_default()
    }
}

fn refused(field: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::Refused {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// cgroup v2's `cpu.weight` for v1 `cpu.shares`: the shares range 2..=262144 mapped linearly
/// onto 1..=10000 (the conversion runc and systemd use); shares outside it are clamped first, as
/// the v1 kernel clamps them.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + (shares - 2) * 9999 / 262_142
}

/// A size as runc's flags take it: bytes, or a number with a binary unit (`k`, `m`, `g`, `t`,
/// `p`, optionally followed by `b` or `ib`, any case: `64m`, `1GiB`); `-1` for unlimited.
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a size (bytes, or a number with k, m, g, t or p; -1 for unlimited)");
    let t = text.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    number.checked_mul(1 << shift).ok_or_else(bad)
}

impl Limits {
    /// Checks `res` field by field and turns it into cgroup limits for `guest` (see the module
    /// documentation for what is applied, refused or left alone).
    pub fn from_resources(res: &LinuxResources, guest: Guest, when: When) -> Result<Limits, CgroupError> {
        let mut limits = Limits::default();
        if let Some(mem) = res.memory() {
            for (field, value) in [("memory.kernel", mem.kernel()), ("memory.kernelTCP", mem.kernel_tcp())] {
                if value.is_some_and(|v| v != 0) {
                    return Err(refused(
                        field,
                        "kernel memory limits are not applied (Linux deprecated them; the monitor's kernel memory counts in memory.limit): drop --kernel-memory",
                    ));
                }
            }
            let limit = mem.limit().filter(|l| *l > 0).map(i64::unsigned_abs);
            let guest_bytes = guest.mem_mib.saturating_mul(1 << 20);
            limits.memory_max = match (limit, when) {
                (None, _) => None,
                (Some(_), When::Create) => Some(guest_bytes.saturating_add(MONITOR_OVERHEAD)),
                (Some(l), When::Update) if l < guest_bytes => {
                    return Err(CgroupError::MemoryBelowGuest {
                        limit: l,
                        mem_mib: guest.mem_mib,
                        overhead: MONITOR_OVERHEAD,
                    });
                }
                (Some(l), When::Update) => Some(l.saturating_add(MONITOR_OVERHEAD)),
            };
            limits.memory_low = mem.reservation().filter(|r| *r > 0).map(i64::unsigned_abs);
            limits.swap = match mem.swap() {
                None | Some(0) => None,
                Some(-1) => Some(Swap::Unlimited),
                Some(s) if s < 0 => {
                    return Err(refused(
                        "memory.swap",
                        format!("{s} is neither a number of bytes nor -1 (unlimited)"),
                    ));
                }
                Some(s) => {
                    let Some(l) = limit else {
                        return Err(refused(
                            "memory.swap",
                            "a swap limit needs memory.limit in the same request (docker: -m with --memory-swap)",
                        ));
                    };
                    let s = s.unsigned_abs();
                    if s < l {
                        return Err(refused(
                            "memory.swap",
                            format!("{s} bytes is below memory.limit ({l} bytes); it counts memory plus swap"),
                        ));
                    }
                    Some(Swap::Extra(s - l))
                }
            };
            limits.swappiness = match mem.swappiness() {
                // -1 ("the default") as Go's uint64 cast of it.
                None | Some(u64::MAX) => None,
                Some(s) if s <= 100 => Some(s),
                Some(s) => return Err(refused("memory.swappiness", format!("{s} is not from 0 to 100"))),
            };
            limits.oom_kill_disable = mem.disable_oom_killer() == Some(true);
        }
        if let Some(cpu) = res.cpu() {
            limits.cpu_shares = cpu.shares().filter(|s| *s != 0);
            limits.cpu_quota = cpu.quota().filter(|q| *q != 0).map(|q| q.max(-1));
            limits.cpu_period = cpu.period().filter(|p| *p != 0);
            limits.cpu_burst = cpu.burst();
            limits.cpu_idle = cpu.idle();
            limits.rt_runtime = cpu.realtime_runtime().filter(|r| *r != 0);
            limits.rt_period = cpu.realtime_period().filter(|p| *p != 0);
            limits.cpus = cpu.cpus().clone().filter(|c| !c.trim().is_empty());
            limits.mems = cpu.mems().clone().filter(|m| !m.trim().is_empty());
        }
        if let Some(pids) = res.pids() {
            let limit = pids.limit();
            if limit > 0 && limit < i64::from(guest.tasks) {
                return Err(CgroupError::PidsBelowTasks { limit, tasks: guest.tasks });
            }
            limits.pids_max = Some(if limit > 0 { limit } else { -1 });
        }
        if let Some(io) = res.block_io() {
            let lists = [
                ("blockIO.weightDevice", io.weight_device().as_ref().map_or(0, Vec::len)),
                (
                    "blockIO.throttleReadBpsDevice",
                    io.throttle_read_bps_device().as_ref().map_or(0, Vec::len),
                ),
                (
                    "blockIO.throttleWriteBpsDevice",
                    io.throttle_write_bps_device().as_ref().map_or(0, Vec::len),
                ),
                (
                    "blockIO.throttleReadIOPSDevice",
                    io.throttle_read_iops_device().as_ref().map_or(0, Vec::len),
                ),
                (
                    "blockIO.throttleWriteIOPSDevice",
                    io.throttle_write_iops_device().as_ref().map_or(0, Vec::len),
                ),
            ];
            let weights = [("blockIO.weight", io.weight()), ("blockIO.leafWeight", io.leaf_weight())];
            let set = weights
                .iter()
                .find(|(_, w)| w.is_some_and(|w| w != 0))
                .map(|(f, _)| *f)
                .or(lists.iter().find(|(_, n)| *n > 0).map(|(f, _)| *f));
            if let Some(field) = set {
                return Err(refused(
                    field,
                    "block I/O weights and throttles are not applied to a unikernel's disk images: drop --blkio-weight*/--device-*-bps/--device-*-iops",
                ));
            }
        }
        if let Some(net) = res.network() {
            if net.class_id().is_some_and(|c| c != 0) {
                return Err(refused(
                    "network.classID",
                    "the guest's packets leave through a tap, not the monitor's sockets: a class id would not mark them",
                ));
            }
            if net.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(refused(
                    "network.priorities",
                    "the guest's packets leave through a tap, not the monitor's sockets: priorities would not apply to them",
                ));
            }
        }
        if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(refused("rdma", "no RDMA device reaches a unikernel"));
        }
        for (key, value) in res.unified().iter().flatten() {
            let plain = !key.is_empty() && !key.contains('/') && !key.starts_with('.') && key.contains('.');
            if !plain || key.starts_with("cgroup.") {
                return Err(refused(
                    &format!("unified.{key}"),
                    "not a controller's file of the container's cgroup",
                ));
            }
            limits.unified.insert(key.clone(), value.clone());
        }
        Ok(limits)
    }

    /// The first field that only a cgroup (`linux.cgroupsPath`) can apply, if any.
    /// `memory.limit` is not one: without a cgroup it still sizes the guest.
    pub fn needs_cgroup(&self) -> Option<&'static str> {
        let fields: [(&'static str, bool); 15] = [
            ("memory.reservation", self.memory_low.is_some()),
            ("memory.swap", self.swap.is_some()),
            ("memory.swappiness", self.swappiness.is_some()),
            ("memory.disableOOMKiller", self.oom_kill_disable),
            ("cpu.shares", self.cpu_shares.is_some()),
            ("cpu.quota", self.cpu_quota.is_some()),
            ("cpu.period", self.cpu_period.is_some()),
            ("cpu.burst", self.cpu_burst.is_some()),
            ("cpu.idle", self.cpu_idle.is_some()),
            ("cpu.realtimeRuntime", self.rt_runtime.is_some()),
            ("cpu.realtimePeriod", self.rt_period.is_some()),
            ("cpu.cpus", self.cpus.is_some()),
            ("cpu.mems", self.mems.is_some()),
            ("pids.limit", self.pids_max.is_some()),
            ("unified", !self.unified.is_empty()),
        ];
        fields.iter().find(|(_, set)| *set).map(|(f, _)| *f)
    }

    /// The files to write, in order, for `layout`. On cgroup v1 the memory limit precedes the
    /// memory+swap limit and the CFS period its quota (the kernel checks each against the other;
    /// [`super::apply`] reorders the memory pair when the limit grows).
    pub fn writes(&self, layout: Layout) -> Result<Vec<Write>, CgroupError> {
        let mut out = Vec::new();
        let mut put = |field: &str, file: &str, value: String| {
            out.push(Write {
                field: field.to_string(),
                file: file.to_string(),
                value,
            });
        };
        let v2 = layout == Layout::V2;
        if let Some(max) = self.memory_max {
            put(
                "memory.limit",
                if v2 { "memory.max" } else { "memory.limit_in_bytes" },
                max.to_string(),
            );
        }
        match (self.swap, v2) {
            (None, _) => {}
            (Some(Swap::Unlimited), true) => put("memory.swap", "memory.swap.max", "max".into()),
            (Some(Swap::Extra(extra)), true) => put("memory.swap", "memory.swap.max", extra.to_string()),
            (Some(Swap::Unlimited), false) => put("memory.swap", "memory.memsw.limit_in_bytes", "-1".into()),
            (Some(Swap::Extra(extra)), false) => {
                let total = self.memory_max.map_or("-1".to_string(), |m| m.saturating_add(extra).to_string());
                put("memory.swap", "memory.memsw.limit_in_bytes", total);
            }
        }
        if let Some(low) = self.memory_low {
            put(
                "memory.reservation",
                if v2 { "memory.low" } else { "memory.soft_limit_in_bytes" },
                low.to_string(),
            );
        }
        // Neither has a cgroup v2 file: the v1 name makes the error say which file is missing.
        if let Some(s) = self.swappiness {
            put("memory.swappiness", "memory.swappiness", s.to_string());
        }
        if self.oom_kill_disable {
            put("memory.disableOOMKiller", "memory.oom_control", "1".into());
        }
        if let Some(shares) = self.cpu_shares {
            if v2 {
                put("cpu.shares", "cpu.weight", shares_to_weight(shares).to_string());
            } else {
                put("cpu.shares", "cpu.shares", shares.to_string());
            }
        }
        let quota = |q: i64| if q > 0 { q.to_string() } else { "max".to_string() };
        match (self.cpu_quota, self.cpu_period, v2) {
            (None, None, _) => {}
            (q, p, true) => {
                let mut value = q.map_or("max".to_string(), quota);
                if let Some(p) = p {
                    value = format!("{value} {p}");
                }
                put(if q.is_some() { "cpu.quota" } else { "cpu.period" }, "cpu.max", value);
            }
            (q, p, false) => {
                if let Some(p) = p {
                    put("cpu.period", "cpu.cfs_period_us", p.to_string());
                }
                if let Some(q) = q {
                    put("cpu.quota", "cpu.cfs_quota_us", q.to_string());
                }
            }
        }
        if let Some(burst) = self.cpu_burst {
            put(
                "cpu.burst",
                if v2 { "cpu.max.burst" } else { "cpu.cfs_burst_us" },
                burst.to_string(),
            );
        }
        if let Some(idle) = self.cpu_idle {
            put("cpu.idle", "cpu.idle", idle.to_string());
        }
        // Realtime bandwidth has no cgroup v2 file (the v1 names make the error say so).
        if let Some(p) = self.rt_period {
            put("cpu.realtimePeriod", "cpu.rt_period_us", p.to_string());
        }
        if let Some(r) = self.rt_runtime {
            put("cpu.realtimeRuntime", "cpu.rt_runtime_us", r.to_string());
        }
        if let Some(cpus) = &self.cpus {
            put("cpu.cpus", "cpuset.cpus", cpus.clone());
        }
        if let Some(mems) = &self.mems {
            put("cpu.mems", "cpuset.mems", mems.clone());
        }
        if let Some(pids) = self.pids_max {
            put("pids.limit", "pids.max", if pids > 0 { pids.to_string() } else { "max".into() });
        }
        if let Some(key) = self.unified.keys().next().filter(|_| !v2) {
            return Err(refused(
                &format!("unified.{key}"),
                "unified holds cgroup v2 files; this host runs cgroup v1",
            ));
        }
        for (key, value) in &self.unified {
            put(&format!("unified.{key}"), key, value.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
