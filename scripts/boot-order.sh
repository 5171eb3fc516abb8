#!/usr/bin/env bash
# Regenerates scripts/boot-order-x86_64.ld, the linker script that puts every function the boot
# path runs at the start of the static x86_64 binary's code (build.rs passes it to the linker for
# the x86_64 musl target). Packed together, the boot path maps a few hundred KiB of the binary's
# code instead of touching pages all over its 3 MiB: the kernel maps file pages around each fault
# (64 KiB windows, or the whole large folio the page cache holds), so scattered code costs
# resident memory out of proportion to what runs.
#
# Needs root, /dev/kvm, iproute2, flock, a C compiler and python3: it single-steps (scripts/boot-
# order/step.c) `unik boot` over the test guests, then containers (`unik create` + `unik start`,
# following the monitor `create` starts: its bundle, state, jail and network code), and names the
# functions that ran, in the order they first ran; functions only the container's clients (`create`,
# `start`) ran come after all those a monitor ran, so they do not dilute the monitor's pages. Run it
# after changes that move much code on or off the boot path; a stale script degrades gracefully
# (see the script's header).
#
# Usage: scripts/boot-order.sh   (after scripts/dist.sh x86_64, which builds the binary it steps)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/x86_64-unknown-linux-musl/release/unik # unstripped: the symbols name the functions
[ -x "$bin" ] || {
    echo "$bin is missing: run scripts/dist.sh x86_64 first" >&2
    exit 1
}
(cd tests/guests && CARGO_TARGET_DIR=../../target/guests cargo build --release --quiet \
    --target x86_64-unknown-none --features pc --bin halt --bin hello --bin net)
guests=target/guests/x86_64-unknown-none/release

tmp=$(mktemp -d)
netns=unik-boot-order-$$
cleanup() {
    ip netns del "$netns" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
cc -O2 -o "$tmp/step" scripts/boot-order/step.c
# The executable segment: every function's address lies in it.
read -r lo hi < <(readelf -lW "$bin" | python3 -c 'import sys
for line in sys.stdin:
    f = line.split()
    if f[:1] == ["LOAD"] and "E" in f[6:-1]:
        print(int(f[2], 16), int(f[2], 16) + int(f[5], 16))')
runs=(
    "--mem=512 $guests/halt"
    "--mem=4096 $guests/halt"
    "--mem=512 $guests/hello"
    "--mem=64 $guests/hello ticks=3"
)
traces=()
i=0
for run in "${runs[@]}"; do
    # shellcheck disable=SC2086 # each run is a list of words
    env -u RUST_BACKTRACE "$tmp/step" "$lo" "$hi" "$tmp/boot.$i" "$bin" boot $run >/dev/null
    traces+=("$tmp/boot.$i")
    i=$((i + 1))
done

# Containers: a guest in a bundle, created and started; the monitor `create` leaves behind runs the
# guest to its end. The network one runs in a namespace of ours with a veth, wired by a template.
ip netns add "$netns"
ip -n "$netns" link add eth0 type veth peer name p0
ip -n "$netns" addr add 10.77.0.2/24 dev eth0
ip -n "$netns" link set eth0 up
ip -n "$netns" link set p0 up
bundle() { # DIR GUEST NETWORK ARGS...: a bundle of the guest (in or out of $netns)
    local dir=$1 guest=$2 network=$3
    shift 3
    mkdir -p "$dir/rootfs"
    cp "$guests/$guest" "$dir/rootfs/$guest.hvt"
    python3 - "$dir/config.json" "$netns" "$network" "/$guest.hvt" "$@" <<'PY'
import json, sys

path, netns, network, args = sys.argv[1], sys.argv[2], sys.argv[3] == "yes", sys.argv[4:]
namespaces = [{"type": t} for t in ("mount", "pid", "ipc", "uts")]
config = {
    "ociVersion": "1.0.2",
    "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "cwd": "/", "args": args, "env": []},
    "root": {"path": "rootfs"},
    "linux": {"namespaces": namespaces},
}
if network:
    config["annotations"] = {"dev.unik.net.template": "ip={ip}"}
    namespaces.insert(0, {"type": "network", "path": f"/run/netns/{netns}"})
json.dump(config, open(path, "w"))
PY
}
bundle "$tmp/hello" hello no
bundle "$tmp/net" net yes timeout=1
unik=(env -u RUST_BACKTRACE "$bin" --root "$tmp/root")
for c in hello net; do
    # create returns with the monitor waiting for start; step -b leaves a tracer following it,
    # which holds a lock on its trace until the monitor has ended.
    env -u RUST_BACKTRACE "$tmp/step" -b "$lo" "$hi" "$tmp/container.$c" \
        "$bin" --root "$tmp/root" create --bundle "$tmp/$c" "boot-order-$c" >/dev/null
    [[ $("${unik[@]}" state "boot-order-$c") == *'"status": "created"'* ]] || {
        echo "container boot-order-$c is not created" >&2
        exit 1
    }
    env -u RUST_BACKTRACE "$tmp/step" "$lo" "$hi" "$tmp/start.$c" \
        "$bin" --root "$tmp/root" start "boot-order-$c"
    flock "$tmp/container.$c" true
    [[ $("${unik[@]}" state "boot-order-$c") == *'"status": "stopped"'* ]] || {
        echo "container boot-order-$c is not stopped" >&2
        exit 1
    }
    "${unik[@]}" delete "boot-order-$c"
    traces+=("$tmp/container.$c" "$tmp/start.$c")
done
nm -n --defined-only "$bin" >"$tmp/nm"
python3 - "$tmp/nm" "${traces[@]}" >"$tmp/ld" <<'PY'
import bisect, re, sys

# Function symbols by address; aliases (a C library's weak names) share one.
names = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 3 and f[1] in "tTwW":
        names.setdefault(int(f[0], 16), []).append(f[2])
starts = sorted(names)
# Function start -> (tier, first-run rank): tier 0 for what a monitor ran (`unik boot`, or the
# container monitor: step's "ADDR 2"), tier 1 for what only the container's clients ran.
ran, order = {}, 0
for path in sys.argv[2:]:
    for line in open(path):
        addr, who = line.split()
        tier = 1 if "/boot." not in path and who == "1" else 0
        i = bisect.bisect_right(starts, int(addr, 16)) - 1
        if i >= 0 and (tier, order) < ran.get(starts[i], (2,)):
            ran[starts[i]] = (tier, order)
            order += 1

exact, loose = [], []
for start in sorted(ran, key=ran.get):
    for name in sorted(names[start]):
        if name in ("_init", "_fini"):  # their own output sections
            continue
        if name == "_start":  # the C start file's, in a plain .text
            exact.append("*crt1.o(.text)")
            continue
        # rustc names a function's section after its symbol; LLVM may move it to .text.unlikely.
        exact.append(f"*(.text.{name} .text.unlikely.{name})")
        # A legacy-mangled Rust symbol ends in a hash that changes with the compiler and the
        # dependencies' versions: a second, hash-free pattern still finds the function then (and
        # any other instance of the same generic, which is why the loose patterns come after all
        # the exact names: a section goes to the first pattern that matches it).
        m = re.match(r"(_ZN.*17h)[0-9a-f]{16}E(\.llvm\.\d+)?$", name)
        if m:
            loose.append(f"*(.text.{m.group(1)}* .text.unlikely.{m.group(1)}*)")
        elif name.startswith("_R"):
            # A v0-mangled one (the standard library's) names its crates by hash (Cs..._), and
            # LTO numbers the local copies it makes (write_str.1348) differently in every build.
            free = re.sub(r"\.\d+$", ".*", re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", name))
            loose.append(f"*(.text.{free} .text.unlikely.{free})")
        elif re.search(r"\.\d+$", name):
            free = re.sub(r"\.\d+$", ".*", name)
            loose.append(f"*(.text.{free} .text.unlikely.{free})")
        elif not name.startswith(("_Z", "_R")):
            # The C library's assembly functions (memcpy...) sit in their member's plain .text.
            exact.append(f"*libc.a:{name}.lo(.text)")

print("""/* Generated by scripts/boot-order.sh: do not edit. The functions `unik boot` and a container's
 * monitor run, in the order they first ran, then those only `unik create` and `start` ran, placed
 * together at the start of the code (build.rs passes this to the linker for the static x86_64
 * binary). INSERT keeps the linker's default script for everything else.
 * A pattern that matches nothing is ignored: once code changes, functions that left the boot
 * path cost nothing but their own bytes here, and new ones land in .text as before. */
SECTIONS
{
  .text.boot :
  {""")
seen = set()
for pattern in exact + loose:
    if pattern not in seen:
        seen.add(pattern)
        print("    " + pattern)
print("""  }
}
INSERT BEFORE .text;""")
PY
mv "$tmp/ld" scripts/boot-order-x86_64.ld
echo "scripts/boot-order-x86_64.ld: $(grep -c '^    \*' scripts/boot-order-x86_64.ld) patterns from ${#runs[@]} boots and 2 containers"
