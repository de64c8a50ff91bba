#!/usr/bin/env bash
# `ctl bootstrap` on N fake hosts against the same steps written by hand with pdcp + pdsh
# (issue 14): copy the agent, write /etc/muster and its authorized_keys, start the agent
# detached, wait for its host key, read the keys back into ctl's known_hosts, and check
# every agent answers a muster ping. Run bench/setup.sh first (pdsh, the release build).
#
#   bench/bootstrap.sh            # N=50, R=5 timed rounds (after one warm-up), alternating
#
# Every fake host is a root sshd on 127.0.200.I:22 in a mount namespace of its own, where
# /usr/local/bin, /var/lib, /var/log and /run are folders of that host and /etc is an
# overlay on the machine's (as in tests/sshd.rs). Between samples every host is reset
# over ssh (agent stopped, its files removed) and known_hosts is emptied; untimed. Each
# sample must leave N agents that answer `ctl ping` with the recorded keys, or it does not
# count. Writes results.tsv and meta.txt into $BENCH_DIR/runs/bootstrap-<stamp>/.
# Only loopback addresses are used; every process started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-50}
R=${R:-5}
BENCH_DIR=${BENCH_DIR:-/var/tmp/muster-bench}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/muster-bench-target}
BIN=$CARGO_TARGET_DIR/release
CTL=$BIN/ctl
AGENT=$BIN/agent
OPERATOR=$BENCH_DIR/operator
[ "$N" -le 250 ] || { echo "N must be at most 250" >&2; exit 2; }
[ -x "$CTL" ] && [ -x "$AGENT" ] && [ -f "$OPERATOR" ] || {
  echo "run bench/setup.sh first (no $CTL, $AGENT or $OPERATOR)" >&2
  exit 2
}
[ "$(id -u)" = 0 ] || { echo "run as root (root sshd logins)" >&2; exit 2; }

stamp=$(date -u +%Y%m%dT%H%M%SZ)
RUN=$BENCH_DIR/runs/bootstrap-$stamp
mkdir -p "$RUN"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$RUN/log.txt"; }
addr() { echo "127.0.200.$1"; }

pids=()
cleanup() {
  for i in $(seq "$N"); do
    p=$RUN/hosts/$i/run/muster/agent.pid
    [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# --- fake hosts -------------------------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C bench-sshd -f "$RUN/ssh_host_key"
cp "$OPERATOR.pub" "$RUN/authorized_keys"
: >"$RUN/ssh_known_hosts"
: >"$RUN/hostlist"
for i in $(seq "$N"); do
  a=$(addr "$i")
  h=$RUN/hosts/$i
  mkdir -p "$h/usr/local/bin" "$h/etc" "$h/etc-work" "$h/var/lib" "$h/var/log" "$h/run/sshd"
  chmod 0755 "$h/run/sshd"
  cat >"$h/sshd_config" <<EOF
ListenAddress $a:22
HostKey $RUN/ssh_host_key
AuthorizedKeysFile $RUN/authorized_keys
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PidFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 200
EOF
  echo "$a $(cut -d' ' -f1-2 "$RUN/ssh_host_key.pub")" >>"$RUN/ssh_known_hosts"
  echo "$a" >>"$RUN/hostlist"
  unshare -m sh -c "set -e
    mount --bind $h/usr/local/bin /usr/local/bin
    mount -t overlay overlay -o lowerdir=/etc,upperdir=$h/etc,workdir=$h/etc-work /etc
    mount --bind $h/var/lib /var/lib
    mount --bind $h/var/log /var/log
    mount --bind $h/run /run
    exec /usr/sbin/sshd -D -e -f $h/sshd_config" 2>"$h/sshd.log" &
  pids+=("$!")
done
for t in $(seq 200); do
  up=$(ss -ltnH 'sport = :22' | grep -c ' 127\.0\.200\.' || true)
  [ "$up" -ge "$N" ] && break
  [ "$t" = 200 ] && { echo "only $up of $N sshd up" >&2; exit 1; }
  sleep 0.1
done
log "$N sshd up"

cat >"$RUN/ssh_config" <<EOF
Host 127.0.200.*
  User root
  IdentityFile $OPERATOR
  IdentitiesOnly yes
  UserKnownHostsFile $RUN/ssh_known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
EOF
{
  echo "defaults:"
  echo "  identity: $OPERATOR"
  echo "  known_hosts: $RUN/known_hosts"
  echo "hosts:"
  echo "  h[1:$N]: { address: \"127.0.200.[1:$N]\", port: 7070 }"
} >"$RUN/inventory.yaml"
ssh_opts=(--ssh-user root)
for o in "IdentityFile=$OPERATOR" IdentitiesOnly=yes "UserKnownHostsFile=$RUN/ssh_known_hosts" \
  GlobalKnownHostsFile=/dev/null StrictHostKeyChecking=yes LogLevel=ERROR; do
  ssh_opts+=(--ssh-option "$o")
done
export PDSH_RCMD_TYPE=ssh PDSH_SSH_ARGS_APPEND="-F $RUN/ssh_config"

# --- the two ways -----------------------------------------------------------------------
muster_way() {
  "$CTL" bootstrap -i "$RUN/inventory.yaml" --log-dir "$RUN/logs" -g all -q \
    --service none --agent-address inventory "${ssh_opts[@]}" >"$RUN/last.out"
}

# The same steps with pdcp and pdsh: what an operator would write without ctl bootstrap.
by_hand() {
  local keys start
  keys=$(cat "$OPERATOR.pub")
  pdcp -w "^$RUN/hostlist" -l root "$AGENT" /usr/local/bin/muster-agent
  # shellcheck disable=SC2016 # expanded on the host
  start='set -e
    set -- $SSH_CONNECTION
    mkdir -p -m 0700 /etc/muster
    printf "%s\n" "'"$keys"'" >/etc/muster/authorized_keys
    chmod 0600 /etc/muster/authorized_keys
    mkdir -p /run/muster /var/lib/muster/files /var/log/muster
    (exec setsid /usr/local/bin/muster-agent --listen "$3:7070" --host-key /etc/muster/host_key \
       --authorized-keys /etc/muster/authorized_keys --log-dir /var/log/muster \
       --files-dir /var/lib/muster/files </dev/null >/dev/null 2>&1) &
    echo $! >/run/muster/agent.pid
    while [ ! -s /etc/muster/host_key.pub ]; do sleep 0.05; done'
  pdsh -w "^$RUN/hostlist" -l root "$start"
  pdsh -w "^$RUN/hostlist" -l root 'cut -d" " -f1-2 /etc/muster/host_key.pub' |
    awk -F': ' '{ split($1, o, "."); printf "[%s]:7070,h%s %s\n", $1, o[4], $2 }' \
      >"$RUN/known_hosts"
  "$CTL" ping -i "$RUN/inventory.yaml" -g all >/dev/null
}

reset_hosts() {
  pdsh -w "^$RUN/hostlist" -l root \
    '[ -f /run/muster/agent.pid ] && kill -9 "$(cat /run/muster/agent.pid)" 2>/dev/null;
     rm -rf /usr/local/bin/muster-agent* /etc/muster /run/muster /var/lib/muster /var/log/muster' \
    2>/dev/null || true
  rm -f "$RUN/known_hosts"
}

check() {
  "$CTL" ping -i "$RUN/inventory.yaml" -g all --json >"$RUN/ping.json" 2>/dev/null &&
    [ "$(grep -c '"status":"ok"' "$RUN/ping.json")" = "$N" ]
}

{
  echo "stamp=$stamp"
  echo "N=$N R=$R nproc=$(nproc)"
  echo "muster=$(cat "$BENCH_DIR/muster-build.txt" 2>/dev/null || echo unknown)"
  echo "pdsh=$(pdsh -V 2>&1 | head -1)"
  echo "openssh=$(ssh -V 2>&1)"
  echo "agent_bytes=$(stat -c %s "$AGENT")"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RUN/meta.txt"
printf 'tool\tround\twarmup\tvalid\twall_s\n' >"$RUN/results.tsv"
for round in $(seq 0 "$R"); do
  for tool in muster_way by_hand; do
    reset_hosts
    sync
    t0=$EPOCHREALTIME
    ok=1
    $tool >/dev/null 2>>"$RUN/errors.txt" || ok=0
    t1=$EPOCHREALTIME
    check || ok=0
    wall=$(echo "$t1 - $t0" | bc)
    warm=$([ "$round" = 0 ] && echo 1 || echo 0)
    printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$round" "$warm" "$ok" "$wall" >>"$RUN/results.tsv"
    log "$tool r$round: ${wall}s valid=$ok"
  done
done
log "done: $RUN"
