#!/usr/bin/env bash
# A second (third, ...) Docker engine on this machine, for multi-node swarm tests and benchmarks.
#
#   scripts/swarm-node.sh start NAME INDEX   # NAME: letters/digits/dashes; INDEX: 1..200 (picks the subnet)
#   scripts/swarm-node.sh stop NAME INDEX    # the engine and its network namespace go; its data-root too
#   scripts/swarm-node.sh engine-stop NAME INDEX  # stops the engine only (a node failure); start again to revive
#   scripts/swarm-node.sh addr NAME INDEX    # prints the node's address (what it advertises to the swarm)
#
# The node is a `dockerd` with its own --data-root, --exec-root, --pidfile and unix socket, in a network
# namespace of its own (`pd-NAME`) joined to the host by a veth pair: host side 10.231.INDEX.1/30, node side
# 10.231.INDEX.2/30. Its bridge and docker_gwbridge get distinct private ranges, so its containers never clash
# with the host's. The host's engine and its swarm state are not touched here.
#   socket:   /run/pd-NAME/docker.sock      (DOCKER_HOST=unix:///run/pd-NAME/docker.sock)
#   data:     /var/lib/pd-NAME              log: /run/pd-NAME/dockerd.log
set -euo pipefail
cmd=${1:?usage: $0 start|stop|addr NAME INDEX}; name=${2:?NAME}; idx=${3:?INDEX}
[[ $name =~ ^[a-z0-9-]{1,10}$ ]] || { echo "error: NAME must be 1-10 of [a-z0-9-]" >&2; exit 2; }
[[ $idx =~ ^[0-9]+$ ]] && (( idx >= 1 && idx <= 200 )) || { echo "error: INDEX must be 1..200" >&2; exit 2; }
ns=pd-$name; run=/run/$ns; data=/var/lib/$ns
host_if=pdh-$name; node_if=pdn-$name
host_addr=10.231.$idx.1; node_addr=10.231.$idx.2

start() {
  mkdir -p "$run" "$data"
  # its own (empty) daemon.json: the host's /etc/docker/daemon.json (bip, hosts, data-root...) is not for this engine
  [ -f "$run/daemon.json" ] || echo '{}' > "$run/daemon.json"
  ip netns list | grep -qx "$ns\( .*\)\?" || ip netns add "$ns"
  if ! ip link show "$host_if" >/dev/null 2>&1; then
    ip link add "$host_if" type veth peer name "$node_if"
    ip link set "$node_if" netns "$ns"
    ip addr add "$host_addr/30" dev "$host_if"
    ip link set "$host_if" up
    ip netns exec "$ns" ip addr add "$node_addr/30" dev "$node_if"
    ip netns exec "$ns" ip link set "$node_if" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip route add default via "$host_addr"
  fi
  if [ -S "$run/docker.sock" ] && DOCKER_HOST=unix://$run/docker.sock docker info >/dev/null 2>&1; then
    echo "$node_addr"; return 0
  fi
  # setsid: a signal to the caller's process group never reaches the engine.
  # --iptables stays on: the rules go into the namespace's own tables (published ports, NAT), not the host's.
  # nsenter, not `ip netns exec`: that one remounts /sys in a new mount namespace, hiding the cgroup mounts.
  # unshare --uts: a hostname of its own (pd-NAME), so `swarm:nodes` and `swarm:drain NODE` can tell the nodes apart.
  nsenter --net="/run/netns/$ns" unshare --uts setsid --fork sh -c 'hostname "$0" && exec dockerd "$@"' "$ns" \
    --config-file "$run/daemon.json" --data-root "$data" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
    -H "unix://$run/docker.sock" --containerd-namespace "$ns" --containerd-plugins-namespace "$ns-plugins" \
    --bip "172.30.$idx.1/24" --default-address-pool "base=10.232.0.0/16,size=24" \
    --storage-driver overlay2 --log-level warn \
    >>"$run/dockerd.log" 2>&1 </dev/null
  for _ in $(seq 1 120); do
    DOCKER_HOST=unix://$run/docker.sock docker info >/dev/null 2>&1 && { echo "$node_addr"; return 0; }
    sleep 0.25
  done
  echo "error: the engine of node $name did not start (log: $run/dockerd.log)" >&2; exit 1
}

engine_stop() {
  if [ -f "$run/dockerd.pid" ]; then
    pid=$(cat "$run/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    fi
  fi
}

stop() {
  engine_stop
  ip link del "$host_if" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  # container mounts left by a killed engine would keep the data-root busy
  grep -o " $data[^ ]*\| $run[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$data" "$run"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  engine-stop) engine_stop ;;  # the engine only (SIGTERM); `start` brings it back on the same network
  addr) echo "$node_addr" ;;
  *) echo "error: unknown command $cmd (start, stop, engine-stop, addr)" >&2; exit 2 ;;
esac
