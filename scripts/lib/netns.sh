# scripts/lib/netns.sh — a throwaway cluster of network namespaces on one machine (source it
# after common.sh; needs root and iproute2, openssh-server).
#
# Layout, nothing in the machine's own namespace is touched:
#
#   <prefix>-sw     a "switch": bridge br0 and one veth end per node
#   <prefix>-login  198.18.0.100  where the launcher runs (like a cluster's login node)
#   <prefix>-n1..   198.18.0.1... the nodes, each with a real sshd on port 22
#
# Addresses come from 198.18.0.0/15 (reserved for benchmark testing); traffic stays on the
# bridge and loopback. Everything made here is registered with on_exit and removed on exit.

netns_prefix=""
netns_nodes=()          # namespace names of the nodes, n1 first
netns_addresses=()      # their addresses
netns_login=""
netns_dir=""            # keys, sshd configs, logs
netns_ssh_options=""    # what the launcher's --ssh-opts needs to reach every node
sshd_pids=()

netns_supported() {  # -> 0 if namespaces can be made here; prints why not otherwise
  [ "$(id -u)" -eq 0 ] || { echo "needs root for network namespaces (running as uid $(id -u))"; return 1; }
  command -v ip >/dev/null || { echo "iproute2 ('ip') is missing"; return 1; }
  local probe="recur-probe-$$"
  ip netns add "$probe" 2>/dev/null || { echo "'ip netns add' is not permitted here"; return 1; }
  ip netns del "$probe"
}

# Makes the switch, the login namespace and `count` nodes with addresses; registers removal.
netns_create() {  # count
  local count=$1 i ns
  netns_prefix="rc$$"
  netns_dir=$(mktemp -d /tmp/recur-netns.XXXXXX)
  on_exit "rm -rf '$netns_dir'"
  on_exit "netns_delete_all"
  ip netns add "$netns_prefix-sw"
  ip -n "$netns_prefix-sw" link add br0 type bridge
  ip -n "$netns_prefix-sw" link set br0 up
  netns_login="$netns_prefix-login"
  netns_attach "$netns_login" 198.18.0.100 login
  for ((i = 1; i <= count; i++)); do
    ns="$netns_prefix-n$i"
    netns_attach "$ns" "198.18.0.$i" "n$i"
    netns_nodes+=("$ns") netns_addresses+=("198.18.0.$i")
  done
}

# One namespace with loopback and eth0 (address/24), whose peer `port` sits on the bridge.
netns_attach() {  # namespace address port-name
  ip netns add "$1"
  ip -n "$1" link set lo up
  ip link add "$3" netns "$netns_prefix-sw" type veth peer name eth0 netns "$1"
  ip -n "$netns_prefix-sw" link set "$3" master br0 up
  ip -n "$1" addr add "$2/24" dev eth0
  ip -n "$1" link set eth0 up
}

# Kills every process still inside our namespaces (all started by this test), then deletes them.
netns_delete_all() {
  local ns pid
  for pid in "${sshd_pids[@]}"; do stop_pid "$pid"; done
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$netns_prefix-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

# Shapes every node's link: `delay` ms with netem (when the kernel has it) and `rate` (e.g.
# 1gbit) with netem or, without netem, tbf. Prints what it could apply.
netns_shape() {  # delay-ms rate
  local delay=$1 rate=$2 ns
  for ns in "${netns_nodes[@]}"; do
    if [ "$delay" != 0 ] && ip netns exec "$ns" tc qdisc add dev eth0 root netem delay "${delay}ms" ${rate:+rate "$rate"} 2>/dev/null; then
      continue
    elif [ "$delay" != 0 ]; then
      say "tc netem is not available in this kernel (CONFIG_NET_SCH_NETEM): no latency added on $ns"
    fi
    if [ -n "$rate" ]; then
      ip netns exec "$ns" tc qdisc replace dev eth0 root tbf rate "$rate" burst 256kb latency 100ms \
        || fail "tc tbf could not limit $ns to $rate"
    fi
  done
  say "links shaped: delay ${delay} ms${rate:+, rate $rate} ($(ip netns exec "${netns_nodes[0]}" tc qdisc show dev eth0 | head -1))"
}

# Keys for the test (host key, a client key), one sshd per node, and the ssh options to reach
# them from the login namespace. Waits (bounded) until each sshd answers.
netns_start_sshd() {
  local i ns address config
  mkdir -p /run/sshd
  ssh-keygen -q -t ed25519 -N '' -C recur-test-host -f "$netns_dir/host_key"
  ssh-keygen -q -t ed25519 -N '' -C recur-test-client -f "$netns_dir/client_key"
  cp "$netns_dir/client_key.pub" "$netns_dir/authorized_keys"
  : >"$netns_dir/known_hosts"
  for i in "${!netns_nodes[@]}"; do
    ns=${netns_nodes[i]} address=${netns_addresses[i]}
    config="$netns_dir/sshd_config.$i"
    cat >"$config" <<EOF
Port 22
ListenAddress $address
HostKey $netns_dir/host_key
AuthorizedKeysFile $netns_dir/authorized_keys
PidFile $netns_dir/sshd.$i.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxStartups 100
MaxSessions 100
LogLevel ERROR
EOF
    # Own UTS namespace too, so each node has its own host name (n1, n2, ...).
    ip netns exec "$ns" unshare --uts sh -c "hostname n$((i + 1)) && exec /usr/sbin/sshd -D -e -f '$config'" \
      2>>"$netns_dir/sshd.$i.log" &
    sshd_pids+=("$!")
    echo "$address $(cut -d' ' -f1,2 "$netns_dir/host_key.pub")" >>"$netns_dir/known_hosts"
  done
  netns_ssh_options="-F /dev/null -p 22 -i $netns_dir/client_key -o IdentitiesOnly=yes -o UserKnownHostsFile=$netns_dir/known_hosts -o StrictHostKeyChecking=yes -o LogLevel=ERROR"
  local ssh_options
  read -r -a ssh_options <<<"$netns_ssh_options"
  for address in "${netns_addresses[@]}"; do
    wait_until 10 ip netns exec "$netns_login" ssh "${ssh_options[@]}" -o BatchMode=yes -o ConnectTimeout=2 "$address" true \
      || { cat "$netns_dir"/sshd.*.log >&2; fail "sshd on $address did not answer within 10 s"; }
  done
}

# Prints the pids of processes in namespace `ns` whose command is the recur binary.
netns_recur_pids() {  # namespace
  local pid
  for pid in $(ip netns pids "$1" 2>/dev/null); do
    case $(readlink "/proc/$pid/exe" 2>/dev/null) in */recur) echo "$pid" ;; esac
  done
}
