use super::*;

fn resources(json: serde_json::Value) -> LinuxResources {
    serde_json::from_value(json).unwrap()
}

const HVT: Guest = Guest { mem_mib: 64, tasks: 2 };

fn limits(json: serde_json::Value) -> Limits {
    Limits::from_resources(&resources(json), HVT, When::Create).unwrap()
}

fn error(json: serde_json::Value, guest: Guest, when: When) -> String {
    Limits::from_resources(&resources(json), guest, when).unwrap_err().to_string()
}

fn files(limits: &Limits, layout: Layout) -> Vec<(String, String, String)> {
    limits
        .writes(layout)
        .unwrap()
        .into_iter()
        .map(|w| (w.field, w.file, w.value))
        .collect()
}

fn row(field: &str, file: &str, value: &str) -> (String, String, String) {
    (field.into(), file.into(), value.into())
}

/// Every applied field, as docker (and runc's own flags) send them.
fn everything() -> serde_json::Value {
    serde_json::json!({
        "devices": [{ "allow": false, "access": "rwm" }],
        "memory": { "limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20, "swappiness": 10, "disableOOMKiller": true },
        "cpu": { "shares": 512, "quota": 50000, "period": 100_000, "burst": 1000, "idle": 1,
                 "realtimeRuntime": 950, "realtimePeriod": 1000, "cpus": "0", "mems": "0" },
        "pids": { "limit": 50 },
        "blockIO": { "weight": 0 },
        "hugepageLimits": [{ "pageSize": "2MB", "limit": 0 }]
    })
}

#[test]
fn test_cgroup_v2_files_per_field() {
    let memory = ((64u64 << 20) + MONITOR_OVERHEAD).to_string();
    assert_eq!(
        files(&limits(everything()), Layout::V2),
        [
            row("memory.limit", "memory.max", &memory),
            row("memory.swap", "memory.swap.max", &(64u64 << 20).to_string()),
            row("memory.reservation", "memory.low", &(32u64 << 20).to_string()),
            row("memory.swappiness", "memory.swappiness", "10"),
            row("memory.disableOOMKiller", "memory.oom_control", "1"),
            row("cpu.shares", "cpu.weight", "20"),
            row("cpu.quota", "cpu.max", "50000 100000"),
            row("cpu.burst", "cpu.max.burst", "1000"),
            row("cpu.idle", "cpu.idle", "1"),
            row("cpu.realtimePeriod", "cpu.rt_period_us", "1000"),
            row("cpu.realtimeRuntime", "cpu.rt_runtime_us", "950"),
            row("cpu.cpus", "cpuset.cpus", "0"),
            row("cpu.mems", "cpuset.mems", "0"),
            row("pids.limit", "pids.max", "50"),
        ]
    );
}

#[test]
fn test_cgroup_v1_files_per_field() {
    let memory = (64u64 << 20) + MONITOR_OVERHEAD;
    assert_eq!(
        files(&limits(everything()), Layout::V1),
        [
            row("memory.limit", "memory.limit_in_bytes", &memory.to_string()),
            // memory+swap: the cgroup's memory plus the swap docker allows beyond -m.
            row("memory.swap", "memory.memsw.limit_in_bytes", &(memory + (64 << 20)).to_string()),
            row("memory.reservation", "memory.soft_limit_in_bytes", &(32u64 << 20).to_string()),
            row("memory.swappiness", "memory.swappiness", "10"),
            row("memory.disableOOMKiller", "memory.oom_control", "1"),
            row("cpu.shares", "cpu.shares", "512"),
            row("cpu.period", "cpu.cfs_period_us", "100000"),
            row("cpu.quota", "cpu.cfs_quota_us", "50000"),
            row("cpu.burst", "cpu.cfs_burst_us", "1000"),
            row("cpu.idle", "cpu.idle", "1"),
            row("cpu.realtimePeriod", "cpu.rt_period_us", "1000"),
            row("cpu.realtimeRuntime", "cpu.rt_runtime_us", "950"),
            row("cpu.cpus", "cpuset.cpus", "0"),
            row("cpu.mems", "cpuset.mems", "0"),
            row("pids.limit", "pids.max", "50"),
        ]
    );
}

#[test]
fn test_unset_and_unlimited_values() {
    // What docker sends without any resource flag: zeros and empty strings mean "not set".
    let none = limits(serde_json::json!({
        "memory": {}, "cpu": { "quota": 0, "period": 0, "cpus": "", "mems": "" }, "blockIO": { "weight": 0 },
        "devices": [{ "allow": false, "access": "rwm" }]
    }));
    assert_eq!(none, Limits::default());
    assert_eq!(none.needs_cgroup(), None);
    assert!(files(&none, Layout::V2).is_empty());
    // -1: unlimited; the swappiness default arrives as Go's uint64 of -1.
    let unlimited = limits(serde_json::json!({
        "memory": { "limit": 64 << 20, "swap": -1, "swappiness": u64::MAX },
        "cpu": { "quota": -1, "period": 100_000 }, "pids": { "limit": 0 }
    }));
    assert_eq!(
        files(&unlimited, Layout::V2)[1..],
        [
            row("memory.swap", "memory.swap.max", "max"),
            row("cpu.quota", "cpu.max", "max 100000"),
            row("pids.limit", "pids.max", "max"),
        ]
    );
    assert_eq!(
        files(&unlimited, Layout::V1)[1..],
        [
            row("memory.swap", "memory.memsw.limit_in_bytes", "-1"),
            row("cpu.period", "cpu.cfs_period_us", "100000"),
            row("cpu.quota", "cpu.cfs_quota_us", "-1"),
            row("pids.limit", "pids.max", "max"),
        ]
    );
    assert_eq!(unlimited.needs_cgroup(), Some("memory.swap"));
    // memory.limit alone sizes the guest: no cgroup is needed for it.
    assert_eq!(limits(serde_json::json!({ "memory": { "limit": 64 << 20 } })).needs_cgroup(), None);
    assert_eq!(
        limits(serde_json::json!({ "pids": { "limit": 9 } })).needs_cgroup(),
        Some("pids.limit")
    );
}

#[test]
fn test_shares_become_runcs_weights() {
    for (shares, weight) in [(2, 1), (512, 20), (1024, 39), (262_144, 10_000), (0, 1), (1, 1), (1 << 30, 10_000)] {
        assert_eq!(shares_to_weight(shares), weight, "{shares} shares");
    }
}

#[test]
fn test_memory_limit_at_create_and_update() {
    // create: the limit sized the guest; the cgroup holds the guest and the monitor.
    let at_create = Limits::from_resources(
        &resources(serde_json::json!({ "memory": { "limit": (64 << 20) + 12345 } })),
        HVT,
        When::Create,
    )
    .unwrap();
    assert_eq!(at_create.memory_max, Some((64 << 20) + MONITOR_OVERHEAD));
    // update: the guest's memory is fixed; the limit plus the monitor's room, never below the guest.
    let grown = Limits::from_resources(
        &resources(serde_json::json!({ "memory": { "limit": 80 << 20 } })),
        HVT,
        When::Update,
    )
    .unwrap();
    assert_eq!(grown.memory_max, Some((80 << 20) + MONITOR_OVERHEAD));
    let err = error(serde_json::json!({ "memory": { "limit": 8 << 20 } }), HVT, When::Update);
    assert!(
        err.starts_with("linux.resources.memory.limit: 8388608 bytes is below the 64 MiB of guest memory"),
        "{err}"
    );
}

#[test]
fn test_pids_limit_leaves_room_for_the_monitors_tasks() {
    // 2 vCPUs, the device thread, KVM's worker.
    let linux = Guest { mem_mib: 64, tasks: 4 };
    let err = error(serde_json::json!({ "pids": { "limit": 3 } }), linux, When::Create);
    assert!(
        err.starts_with("linux.resources.pids.limit: 3 leaves no room for the monitor's 4 tasks"),
        "{err}"
    );
    assert!(err.ends_with("ask for at least 4"), "{err}");
    let at_update = error(serde_json::json!({ "pids": { "limit": 1 } }), linux, When::Update);
    assert!(at_update.contains("monitor's 4 tasks"), "{at_update}");
    let exact = Limits::from_resources(&resources(serde_json::json!({ "pids": { "limit": 4 } })), linux, When::Create).unwrap();
    assert_eq!(exact.pids_max, Some(4));
    // An hvt guest runs on one thread, beside KVM's worker.
    assert_eq!(limits(serde_json::json!({ "pids": { "limit": 2 } })).pids_max, Some(2));
    let err = error(serde_json::json!({ "pids": { "limit": 1 } }), HVT, When::Create);
    assert!(err.contains("monitor's 2 tasks"), "{err}");
}

#[test]
fn test_refused_fields_are_named() {
    for (json, field) in [
        (serde_json::json!({ "memory": { "kernel": 1 << 20 } }), "memory.kernel"),
        (serde_json::json!({ "memory": { "kernelTCP": 1 << 20 } }), "memory.kernelTCP"),
        (serde_json::json!({ "memory": { "swap": 1 << 30 } }), "memory.swap"),
        (
            serde_json::json!({ "memory": { "limit": 64 << 20, "swap": 32 << 20 } }),
            "memory.swap",
        ),
        (serde_json::json!({ "memory": { "limit": 64 << 20, "swap": -2 } }), "memory.swap"),
        (serde_json::json!({ "memory": { "swappiness": 101 } }), "memory.swappiness"),
        (serde_json::json!({ "blockIO": { "weight": 300 } }), "blockIO.weight"),
        (serde_json::json!({ "blockIO": { "leafWeight": 300 } }), "blockIO.leafWeight"),
        (
            serde_json::json!({ "blockIO": { "throttleReadBpsDevice": [{ "major": 8, "minor": 0, "rate": 1048576 }] } }),
            "blockIO.throttleReadBpsDevice",
        ),
        (
            serde_json::json!({ "blockIO": { "weightDevice": [{ "major": 8, "minor": 0, "weight": 10 }] } }),
            "blockIO.weightDevice",
        ),
        (serde_json::json!({ "network": { "classID": 1048577 } }), "network.classID"),
        (
            serde_json::json!({ "network": { "priorities": [{ "name": "eth0", "priority": 5 }] } }),
            "network.priorities",
        ),
        (serde_json::json!({ "rdma": { "mlx5_0": { "hcaHandles": 3 } } }), "rdma"),
        (serde_json::json!({ "unified": { "cgroup.procs": "1" } }), "unified.cgroup.procs"),
        (serde_json::json!({ "unified": { "../x.max": "1" } }), "unified.../x.max"),
    ] {
        let err = error(json.clone(), HVT, When::Create);
        assert!(err.starts_with(&format!("linux.resources.{field}: ")), "{json}: {err}");
    }
}

#[test]
fn test_unified_is_written_on_v2_and_refused_on_v1() {
    let unified = limits(serde_json::json!({ "unified": { "memory.high": "100000000", "pids.max": "7" } }));
    assert_eq!(
        files(&unified, Layout::V2),
        [
            row("unified.memory.high", "memory.high", "100000000"),
            row("unified.pids.max", "pids.max", "7"),
        ]
    );
    let err = unified.writes(Layout::V1).unwrap_err().to_string();
    assert!(
        err.starts_with("linux.resources.unified.memory.high: unified holds cgroup v2 files"),
        "{err}"
    );
}

#[test]
fn test_sizes_as_runcs_flags_take_them() {
    for (text, bytes) in [
        ("1024", 1024),
        ("64m", 64 << 20),
        ("64M", 64 << 20),
        ("1g", 1 << 30),
        ("1GiB", 1 << 30),
        ("2kb", 2048),
        ("-1", -1),
    ] {
        assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
    }
    for bad in ["", "m", "lots", "-2", "1x", "1.5g", "9999999999p"] {
        let err = parse_bytes(bad).unwrap_err();
        assert!(err.contains("is not a size"), "{bad}: {err}");
    }
}
