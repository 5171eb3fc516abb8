#!/usr/bin/env bash
# The quick start: install prerequisites, build unik and the bundled example unikernel, boot it
# with `unik boot`, then run it as a container with `docker run --runtime unik` (a private dockerd
# in a network namespace of its own, removed afterwards). Extra arguments go to the unikernel.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --bin unik
(cd tests/guests && CARGO_TARGET_DIR=../../target/guests cargo build --release --target x86_64-unknown-none --bin hello)
unik=$PWD/target/release/unik
hello=$PWD/target/guests/x86_64-unknown-none/release/hello

echo "== unik boot"
"$unik" boot --mem=16 "$hello" "$@"

echo "== docker run --runtime unik"
work=$(mktemp -d)
ns="unik-example-$$"
cleanup() {
    [ -f "$work/docker.pid" ] && kill "$(cat "$work/docker.pid")" 2>/dev/null && sleep 2
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
nsenter --net="/run/netns/$ns" dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    --storage-driver=vfs --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/docker.pid" \
    --host "unix://$work/docker.sock" --add-runtime "unik=$unik" >"$work/dockerd.log" 2>&1 &
docker=(/usr/bin/docker -H "unix://$work/docker.sock")
for _ in $(seq 100); do "${docker[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
mkdir "$work/rootfs" && cp "$hello" "$work/rootfs/hello.hvt"
tar -C "$work/rootfs" -c . | "${docker[@]}" import --change 'CMD ["/hello.hvt"]' - hello:unik >/dev/null
set -x
"${docker[@]}" run --rm --runtime unik --network none hello:unik /hello.hvt "$@"
{ set +x; } 2>/dev/null
