#!/usr/bin/env bash
# muster benchmark harness: muster `ctl run` side by side with pdsh, parallel-ssh,
# ClusterShell, Ansible ad-hoc, ssh loops and the local fork+exec floor, on N fake hosts
# that all live on this machine's loopback (127.0.X.Y). Run bench/setup.sh once first.
#
#   bench/run.sh              # full run, then bench/report.py writes BENCHMARKS.md
#   QUICK=1 bench/run.sh      # smoke test: N=10, R=3, muster scale row skipped
#
# Knobs (environment):
#   NS="10 50 200"            peer comparison sizes (every tool)
#   SCALE_NS="1000 5000"      muster-only sizes (one agent process per host)
#   R=5                       timed rounds per (N, command, tool), after one warm-up round
#   R_ANSIBLE_LARGE=3         timed rounds for ansible when N >= ANSIBLE_LARGE_N (200)
#   ANSIBLE_BUDGET=900        seconds of ansible samples in all; past it, ansible is skipped
#   ANSIBLE_LARGE_CMDS="true uname"  the commands ansible runs at N >= ANSIBLE_LARGE_N
#   SSH_LOOP_MAX_N=50         the plain sequential ssh loop only up to this N
#   TOOLS="..."               which rows (default: all; names as in the tables below)
#   CMDS="true uname"         which commands
#   SAMPLE_TIMEOUT=300        a sample taking longer is killed and counted invalid
#   SCALE_MEM_FRACTION=0.6    start SCALE_NS agents only while their estimated memory is
#                             below this fraction of MemAvailable
#   PHASES="run scale push pull"  which phases (run: the `ctl run` peer rows at NS; scale: SCALE_NS;
#                             push/pull: issue 5 item 3)
#   PUSH_NS="1 10"            push/pull: number of hosts
#   PUSH_SIZES="100 1024"     push/pull: file sizes in MiB (random content, generated once per run)
#   R_BIG=3 BIG_MIB=1024      timed rounds for sizes >= BIG_MIB (R for the smaller ones)
#   PUSH_TOOLS, PULL_TOOLS    which push/pull rows (names as in ALL_PUSH_TOOLS/ALL_PULL_TOOLS)
#   ANSIBLE_COPY_MAX_MIB=100  `ansible -m copy` only up to this size
#   SCP_LOOP_MAX_BYTES=1100   the sequential scp loop only while MiB x hosts is at most this
#   PSCP_MAX_BYTES=1100       parallel-scp/parallel-slurp only while MiB x hosts is at most this
#                             (1 GiB to 10 hosts took it about 200 s a round)
#   VERIFY_ROUNDS="0 1"       rounds in which every destination file is sha256-checked (size
#                             is checked in every round)
#   REPORT=1                  run bench/report.py at the end (0: leave the raw results only)
#   MUSTER_PREV_BIN=<dir>     a folder holding `ctl` and `agent` of another (previous) muster
#                             build: adds the row muster-prev to the run, push and pull phases
#                             (its own agents, from that folder, on the same fake hosts at
#                             port PREV_PORT, its own --log-dir), alternating with the others
#   MUSTER_PREV_REV=<text>    which revision that build is, for meta.txt (e.g. "e1bfee0 ...")
#   PREV_PORT=7071            the previous build's agents' port
#   BENCH_DIR=/var/tmp/muster-bench  CARGO_TARGET_DIR=/tmp/muster-bench-target
#
# What is measured per sample: wall time (bash EPOCHREALTIME around the whole command),
# the controller's CPU (user+sys of its whole process tree, from a cpuacct cgroup the
# sample runs in, ns resolution), its peak RSS (GNU time %M: the largest single process
# of the tree), the fake hosts' CPU (sshd/agents and the commands they ran, from their
# own cpuacct cgroup), and the CPU everything else on the machine used meanwhile (noise
# from other users of this shared machine). A sample counts only if every host answered.
#
# Only loopback addresses are contacted. Every loop is bounded. Every process started here
# is stopped by pid on exit (trap).
#
# Push/pull (issue 5 item 3): every fake host has its own folder $RUN/fs/K. The agent of
# host K gets it as --files-dir; the sshd of host K runs in its own mount namespace
# (unshare -m) where that folder is bind-mounted over the bench user's home, so the ssh
# tools writing to ~/dst.bin (absolute: $BENCH_DIR/home/dst.bin) on 10 hosts really write
# 10 files. Destinations are deleted, and the disk synced, before every sample (untimed);
# the time the sync after a sample takes (what the tool left unwritten) is recorded too.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

BENCH_DIR=${BENCH_DIR:-/var/tmp/muster-bench}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/muster-bench-target}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  NS=${NS:-10}
  SCALE_NS=${SCALE_NS:-}
  R=${R:-3}
else
  NS=${NS:-10 50 200}
  SCALE_NS=${SCALE_NS-1000 5000}
  R=${R:-5}
fi
R_ANSIBLE_LARGE=${R_ANSIBLE_LARGE:-3}
ANSIBLE_LARGE_N=${ANSIBLE_LARGE_N:-200}
ANSIBLE_BUDGET=${ANSIBLE_BUDGET:-900}
ANSIBLE_LARGE_CMDS=${ANSIBLE_LARGE_CMDS:-true uname}
SSH_LOOP_MAX_N=${SSH_LOOP_MAX_N:-50}
MUSTER_PREV_BIN=${MUSTER_PREV_BIN:-}
MUSTER_PREV_REV=${MUSTER_PREV_REV:-}
PREV_PORT=${PREV_PORT:-7071}
PREV=""                                           # "muster-prev" when MUSTER_PREV_BIN is given
[ -n "$MUSTER_PREV_BIN" ] && PREV=muster-prev
ALL_TOOLS="muster $PREV muster-batch50 muster-wave50 pdsh pdsh-fN pssh clush ansible-raw ansible-command ssh-loop ssh-mux-loop ssh-mux-xargs floor"
TOOLS=${TOOLS:-$ALL_TOOLS}
CMDS=${CMDS:-true uname}
SAMPLE_TIMEOUT=${SAMPLE_TIMEOUT:-300}
SCALE_MEM_FRACTION=${SCALE_MEM_FRACTION:-0.6}
REPORT=${REPORT:-1}
PHASES=${PHASES:-run scale push pull}
PUSH_NS=${PUSH_NS:-1 10}
PUSH_SIZES=${PUSH_SIZES:-100 1024}
R_BIG=${R_BIG:-3}
BIG_MIB=${BIG_MIB:-1024}
ALL_PUSH_TOOLS="muster $PREV pdcp pscp clush scp-loop scp-xargs ansible-copy tcp ssh-stream-gcm ssh-stream cp-sync sha256sum openssl-sha256"
PUSH_TOOLS=${PUSH_TOOLS:-$ALL_PUSH_TOOLS}
ALL_PULL_TOOLS="muster $PREV rpdcp pslurp clush scp-loop scp-xargs"
PULL_TOOLS=${PULL_TOOLS:-$ALL_PULL_TOOLS}
ANSIBLE_COPY_MAX_MIB=${ANSIBLE_COPY_MAX_MIB:-100}
SCP_LOOP_MAX_BYTES=${SCP_LOOP_MAX_BYTES:-1100}   # MiB x hosts: the sequential scp loop only up to this
PSCP_MAX_BYTES=${PSCP_MAX_BYTES:-1100}           # MiB x hosts: parallel-scp/-slurp only up to this
VERIFY_ROUNDS=${VERIFY_ROUNDS:-0 1}              # rounds whose every destination is sha256-checked
PY=/usr/bin/python3                               # not the pyenv shim (its start-up is ~0.1 s)

CTL=$CARGO_TARGET_DIR/release/ctl
AGENT=$CARGO_TARGET_DIR/release/agent
CTL_PREV=$MUSTER_PREV_BIN/ctl                     # only used when MUSTER_PREV_BIN is given
AGENT_PREV=$MUSTER_PREV_BIN/agent
ANSIBLE=$BENCH_DIR/venv/bin/ansible
SSHCFG=$BENCH_DIR/ssh/config
IDENTITY=$BENCH_DIR/operator                      # the operator's key (bench/setup.sh)
AUTHORIZED=$BENCH_DIR/muster_authorized_keys      # its .pub, for the agents
FLEET_KEY=$BENCH_DIR/fleet.key                    # only for a MUSTER_PREV_BIN from before identities
BENCH_USER=mbench

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

[ "$(id -u)" -eq 0 ] || die "run as root (it starts sshd)"
for f in "$CTL" "$AGENT" "$SSHCFG" "$IDENTITY" "$AUTHORIZED" /usr/bin/time; do
  [ -e "$f" ] || die "$f is missing: run bench/setup.sh first"
done
# Does the previous build take identities (--host-key), or the shared key of before?
PREV_USES_KEYS=0
if [ -n "$MUSTER_PREV_BIN" ]; then
  for f in "$CTL_PREV" "$AGENT_PREV"; do [ -x "$f" ] || die "MUSTER_PREV_BIN: $f is missing"; done
  "$AGENT_PREV" --help | grep -q -- '--host-key' && PREV_USES_KEYS=1
  [ "$PREV_USES_KEYS" = 1 ] || [ -f "$FLEET_KEY" ] || die "$FLEET_KEY is missing: run bench/setup.sh"
else
  case " $TOOLS $PUSH_TOOLS $PULL_TOOLS " in *" muster-prev "*) die "muster-prev needs MUSTER_PREV_BIN" ;; esac
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
RUN=$BENCH_DIR/runs/$stamp
mkdir -p "$RUN"/{out,hosts,sshd,cp,logs,fs}
[ -n "$PREV" ] && mkdir -p "$RUN/logs-prev"   # muster-prev's --log-dir
RESULTS=$RUN/results.tsv
NOTES=$RUN/notes.txt
: >"$NOTES"
note() { echo "$*" >>"$NOTES"; log "note: $*"; }
printf 'n\tcmd\ttool\tround\twarmup\tvalid\twall_s\ttime_e\tuser_s\tsys_s\tmaxrss_kb\tclient_cpu_s\thost_cpu_s\tother_cpu_s\tload1\treason\tagent_hwm_kb\tpost_sync_s\tverified\n' >"$RESULTS"
log "results in $RUN"

# --- cgroups (v1 cpuacct; v2 if that is what the machine has) ----------------------------
CG_ROOT=""
if [ -d /sys/fs/cgroup/cpuacct ] && [ -w /sys/fs/cgroup/cpuacct ]; then
  CG_ROOT=/sys/fs/cgroup/cpuacct/muster-bench-$stamp
  mkdir "$CG_ROOT" "$CG_ROOT/client" "$CG_ROOT/hosts"
  cg_usage() { cat "$CG_ROOT/$1/cpuacct.usage"; }          # ns
  cg_total() { cat /sys/fs/cgroup/cpuacct/cpuacct.usage; }  # ns, whole machine
  cg_tasks() { wc -l <"$CG_ROOT/$1/cgroup.procs"; }
  cg_join() { echo "$BASHPID" >"$CG_ROOT/$1/cgroup.procs"; }
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  CG_ROOT=/sys/fs/cgroup/muster-bench-$stamp
  mkdir "$CG_ROOT" "$CG_ROOT/client" "$CG_ROOT/hosts"
  cg_usage() { awk '/^usage_usec/ {print $2 * 1000}' "$CG_ROOT/$1/cpu.stat"; }
  cg_total() { awk '/^cpu / {print ($2+$3+$4+$6+$7+$8) * 10000000}' /proc/stat; }
  cg_tasks() { wc -l <"$CG_ROOT/$1/cgroup.procs"; }
  cg_join() { echo "$BASHPID" >"$CG_ROOT/$1/cgroup.procs"; }
else
  die "no writable cpuacct cgroup: cannot attribute CPU"
fi

# --- cleanup -------------------------------------------------------------------------------
pids=()          # every sshd and agent we started
mux_pids=()      # ssh ControlMaster processes (they daemonize: pids from `ssh -O check`)
cleanup() {
  set +e
  log "stopping ${#pids[@]} fake-host processes and ${#mux_pids[@]} ssh masters"
  for p in "${mux_pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  local i
  for i in $(seq 100); do                        # 10 s at most for them to go
    local alive=0 p
    for p in "${pids[@]}" "${mux_pids[@]}"; do kill -0 "$p" 2>/dev/null && { alive=1; break; }; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}" "${mux_pids[@]}"; do kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  # Generated files and copies of them go even after an interruption.
  rm -rf "$RUN/src" "$RUN/pulled" "$RUN"/fs/*/*.bin "$RUN"/fs/*/.muster-tmp.* 2>/dev/null
  # Empty cgroups can go; one still holding a process (should not happen) is left.
  if [ -n "$CG_ROOT" ]; then
    rmdir "$CG_ROOT/client" "$CG_ROOT/hosts" "$CG_ROOT" 2>/dev/null
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- fake hosts ----------------------------------------------------------------------------
# Host i (1-based) lives on 127.0.X.Y with X = 1 + (i-1)/250, Y = 1 + (i-1)%250.
addr() { echo "127.0.$((1 + ($1 - 1) / 250)).$((1 + ($1 - 1) % 250))"; }

host_dir() {      # host K's own folder: its agent's --files-dir, its sshd user's home
  [ -d "$RUN/fs/$1" ] && return 0
  mkdir -p "$RUN/fs/$1"
  chown "$BENCH_USER:" "$RUN/fs/$1"
}

n_sshd=0
start_sshds() {   # start sshd for hosts n_sshd+1..$1
  local want=$1 i a
  for ((i = n_sshd + 1; i <= want; i++)); do
    a=$(addr "$i")
    cat >"$RUN/sshd/$i.conf" <<EOF
ListenAddress $a:22
HostKey /etc/ssh/ssh_host_ed25519_key
AuthorizedKeysFile $BENCH_DIR/authorized_keys
AllowUsers $BENCH_USER
UsePAM no
StrictModes no
PidFile $RUN/sshd/$i.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 1000
Subsystem sftp internal-sftp
EOF
    host_dir "$i"
    # -D: no daemonizing, so $! is sshd itself (unshare and sh exec it); in the hosts'
    # cgroup, as are its sessions. Its own mount namespace: the host's folder is the bench
    # user's home there (unshare makes the namespace's mounts private: nothing leaks out).
    ( cg_join hosts
      exec unshare -m sh -c 'mount --bind "$1" "$2" && exec /usr/sbin/sshd -D -e -f "$3"' sh \
        "$RUN/fs/$i" "$BENCH_DIR/home" "$RUN/sshd/$i.conf" ) 2>"$RUN/sshd/$i.log" &
    pids+=("$!")
  done
  for i in $(seq 200); do                         # 20 s at most
    local up
    up=$(ss -ltnH 'sport = :22' | grep -c ' 127\.0\.[0-9]*\.[0-9]*:22 ' || true)
    [ "$up" -ge "$want" ] && break
    [ "$i" = 200 ] && die "only $up of $want sshd listening after 20 s (see $RUN/sshd/*.log)"
    sleep 0.1
  done
  n_sshd=$want
  log "$want sshd up"
}

n_agents=0
agent_pids=()
n_prev_agents=0
prev_agent_pids=()   # the previous build's agents (MUSTER_PREV_BIN), on PREV_PORT
start_agents() {  # [prev] n: start agents for hosts n_agents+1..n (prev: the previous build's)
  local bin=$AGENT port=7070 o=agents have=$n_agents keys=1
  if [ "$1" = prev ]; then
    bin=$AGENT_PREV port=$PREV_PORT o=agents-prev have=$n_prev_agents keys=$PREV_USES_KEYS
    shift
  fi
  local want=$1 i
  mkdir -p "$RUN/hostkeys/$o"
  for ((i = have + 1; i <= want; i++)); do
    host_dir "$i"
    local auth=(--host-key "$RUN/hostkeys/$o/$i" --authorized-keys "$AUTHORIZED")
    [ "$keys" = 1 ] || auth=(--key-file "$FLEET_KEY")
    ( cg_join hosts; exec "$bin" --listen "$(addr "$i"):$port" "${auth[@]}" -q \
        --files-dir "$RUN/fs/$i" ) \
      >>"$RUN/$o.out" 2>>"$RUN/$o.err" &
    pids+=("$!")
    if [ "$o" = agents ]; then agent_pids+=("$!"); else prev_agent_pids+=("$!"); fi
  done
  for i in $(seq 600); do                         # 60 s at most
    local up
    up=$(grep -c '^listening on' "$RUN/$o.out" || true)
    [ "$up" -ge "$want" ] && break
    if [ -s "$RUN/$o.err" ]; then cat "$RUN/$o.err" >&2; die "an agent ($o) failed to start"; fi
    [ "$i" = 600 ] && die "only $up of $want agents ($o) listening after 60 s"
    sleep 0.1
  done
  if [ "$o" = agents ]; then n_agents=$want; else n_prev_agents=$want; fi
  # Trust them as ctl trust would, from the host keys they wrote (no handshake is timed).
  if [ "$keys" = 1 ]; then
    for ((i = have + 1; i <= want; i++)); do
      printf '[%s]:%s,h%05d %s\n' "$(addr "$i")" "$port" "$i" \
        "$(cut -d' ' -f1,2 "$RUN/hostkeys/$o/$i.pub")" >>"$RUN/known_hosts-$o"
    done
  fi
  log "$want $o up"
}

agent_mem_kb() {  # mean VmRSS or Pss (field $1) of up to 50 idle agents, the newest
  # ones: the first ten have served the transfers, and an estimate for agents still to be
  # started should come from agents that, like them, have done little.
  # Only the build under test's agents (agent_pids), not muster-prev's.
  local field=$1 total=0 p c=0 i
  for ((i = ${#agent_pids[@]} - 1; i >= 0; i--)); do
    p=${agent_pids[$i]}
    if [ -r "/proc/$p/status" ] && grep -q '^Name:.*agent' "/proc/$p/status"; then
      total=$((total + $(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/smaps_rollup")))
      c=$((c + 1))
      [ "$c" -ge 50 ] && break
    fi
  done
  [ "$c" -gt 0 ] && echo $((total / c)) || echo 0
}
agent_rss_kb() { agent_mem_kb Rss; }

write_hosts() {   # inventories and host files for N hosts
  local n=$1 i d=$RUN/hosts/$n
  mkdir -p "$d"
  : >"$d/hosts"
  {
    echo "defaults:"
    echo "  port: 7070"
    echo "  identity: $IDENTITY"
    echo "  known_hosts: $RUN/known_hosts-agents"
    echo "hosts:"
  } >"$d/inventory.yaml"
  {
    echo "[all:vars]"
    echo "ansible_user=$BENCH_USER"
    echo "ansible_ssh_common_args='-F $SSHCFG'"
    echo "[bench]"
  } >"$d/ansible.ini"
  for ((i = 1; i <= n; i++)); do
    a=$(addr "$i")
    echo "$a" >>"$d/hosts"
    printf '  h%05d: %s\n' "$i" "$a" >>"$d/inventory.yaml"
    echo "$a" >>"$d/ansible.ini"
  done
  # The previous build's inventory: the same hosts, at its agents' port.
  if [ -n "$PREV" ] && [ "$PREV_USES_KEYS" = 1 ]; then
    sed -e "s/^  port: 7070\$/  port: $PREV_PORT/" -e "s|known_hosts-agents|known_hosts-agents-prev|" \
      "$d/inventory.yaml" >"$d/inventory-prev.yaml"
  elif [ -n "$PREV" ]; then
    sed -e "s/^  port: 7070\$/  port: $PREV_PORT/" -e "s|^  identity: .*|  key_file: $FLEET_KEY|" \
      -e "/^  known_hosts: /d" "$d/inventory.yaml" >"$d/inventory-prev.yaml"
  fi
  return 0
}

# --- ssh ControlPersist masters for the warm-mux rows ---------------------------------------
# A second client config with a ControlPath: only the mux rows use it, so no other tool
# can ride on an open master.
SSHCFG_MUX=$RUN/ssh_config_mux
{ echo "Host 127.*"; echo "  ControlMaster no"; echo "  ControlPath $BENCH_DIR/ssh/cm/%C"; cat "$SSHCFG"; } >"$SSHCFG_MUX"
open_masters() {  # masters for hosts 1..$1, opened in the client cgroup (their CPU is the rows')
  local n=$1 i
  ( cg_join client
    xargs -P 16 -I{} ssh -F "$SSHCFG_MUX" -o ControlMaster=yes -o ControlPersist=yes -fN {} \
      <"$RUN/hosts/$n/hosts" ) || die "could not open the ssh masters"
  mux_pids=()
  for ((i = 1; i <= n; i++)); do
    local p
    p=$(ssh -F "$SSHCFG_MUX" -O check "$(addr "$i")" 2>&1 | sed -n 's/.*pid=\([0-9]*\).*/\1/p')
    [ -n "$p" ] || die "no master for $(addr "$i")"
    mux_pids+=("$p")
  done
  log "$n ssh masters open"
}
close_masters() {
  local p
  for p in "${mux_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  mux_pids=()
  rm -f "$BENCH_DIR/ssh/cm/"* 2>/dev/null || true
}

# --- the rows ------------------------------------------------------------------------------
export PDSH_SSH_ARGS_APPEND="-F $SSHCFG"
export ANSIBLE_HOST_KEY_CHECKING=False
export ANSIBLE_PYTHON_INTERPRETER=auto_silent  # the stock discovery, without its warning
export PDSH_RCMD_TYPE=ssh

remote_cmd() { case $1 in true) echo "true" ;; uname) echo "uname -n" ;; esac; }

tool_cmdline() {  # tool cmd n -> the shell command line the sample runs
  local tool=$1 c n=$3 d=$RUN/hosts/$3
  c=$(remote_cmd "$2")
  case $tool in
    muster) echo "$CTL run -i $d/inventory.yaml -g all --log-dir $RUN/logs '$c'" ;;
    muster-prev) echo "$CTL_PREV run -i $d/inventory-prev.yaml -g all --log-dir $RUN/logs-prev '$c'" ;;
    # Issue 15: a rollout in windows of 50, against one wave of 50 hosts alone.
    muster-batch50) echo "$CTL run -i $d/inventory.yaml -g all --batch 50 --log-dir $RUN/logs '$c'" ;;
    muster-wave50) echo "$CTL run -i $d/inventory.yaml -g 'h[00001:00050]' --log-dir $RUN/logs '$c'" ;;
    pdsh) echo "pdsh -R ssh -l $BENCH_USER -w ^$d/hosts '$c'" ;;
    pdsh-fN) echo "pdsh -R ssh -l $BENCH_USER -f $n -w ^$d/hosts '$c'" ;;
    pssh) echo "parallel-ssh -h $d/hosts -l $BENCH_USER -x '-F $SSHCFG' -p $n -i '$c'" ;;
    clush) echo "clush --hostfile $d/hosts -l $BENCH_USER -o '-F $SSHCFG' -f $n -b '$c'" ;;
    ansible-raw) echo "$ANSIBLE all -i $d/ansible.ini -m raw -a '$c' -f $n" ;;
    ansible-command) echo "$ANSIBLE all -i $d/ansible.ini -m command -a '$c' -f $n" ;;
    ssh-loop) echo "for h in \$(cat $d/hosts); do ssh -F $SSHCFG \$h '$c' || exit 1; done" ;;
    ssh-mux-loop) echo "for h in \$(cat $d/hosts); do ssh -F $SSHCFG_MUX \$h '$c' || exit 1; done" ;;
    ssh-mux-xargs) echo "xargs -P $n -I{} ssh -F $SSHCFG_MUX {} '$c' <$d/hosts" ;;
    floor)
      case $2 in
        true) echo "seq $n | xargs -P $n -n1 true" ;;
        uname) echo "seq $n | xargs -P $n -I{} uname -n" ;;
      esac ;;
  esac
}

# validate tool cmd n rc out err -> prints "" when every host answered, else the reason
validate() {
  local tool=$1 cmd=$2 n=$3 rc=$4 out=$5 err=$6 got
  [ "$rc" = 0 ] || { echo "exit $rc"; return; }
  case $tool in
    muster-wave50)
      grep -q "^ctl: 50 hosts in .*: 50 ok\$" "$err" || { echo "summary is not '50 ok'"; return; } ;;
    muster | muster-prev | muster-batch50)
      grep -q "^ctl: $n hosts in .*: $n ok\$" "$err" || { echo "summary is not '$n ok'"; return; }
      if [ "$cmd" = uname ]; then
        got=$(grep -c '^h[0-9]*: ' "$out" || true)
        [ "$got" = "$n" ] || { echo "$got of $n output lines"; return; }
      fi ;;
    pdsh | pdsh-fN)
      [ -s "$err" ] && { echo "stderr: $(head -c 200 "$err")"; return; }
      if [ "$cmd" = uname ]; then
        got=$(cut -d: -f1 "$out" | sort -u | wc -l)
        [ "$got" = "$n" ] || { echo "$got of $n hosts answered"; return; }
      fi ;;
    pssh)
      got=$(grep -c '\[SUCCESS\]' "$out" || true)
      [ "$got" = "$n" ] || { echo "$got of $n SUCCESS"; return; }
      if [ "$cmd" = uname ]; then
        got=$(grep -cx 'vm\|'"$(hostname)" "$out" || true)
        [ "$got" = "$n" ] || { echo "$got of $n output lines"; return; }
      fi ;;
    clush)
      # clush -b draws a progress meter ("clush: 16/50") on stderr when gathering takes a
      # while; anything else on stderr is a failure.
      if [ -s "$err" ] && [ -n "$(sed -E 's#clush: *[0-9]+/[0-9]+[ \r\b]*##g' "$err" | tr -d ' \r\n\b')" ]; then
        echo "stderr: $(head -c 200 "$err")"; return
      fi
      if [ "$cmd" = uname ]; then
        grep -q "($n)\$" "$out" || { echo "gathered header does not say ($n)"; return; }
      fi ;;
    ansible-raw | ansible-command)
      got=$(grep -E ' \| (CHANGED|SUCCESS) \| rc=0' "$out" | cut -d' ' -f1 | sort -u | wc -l)
      [ "$got" = "$n" ] || { echo "$got of $n hosts CHANGED/SUCCESS"; return; } ;;
    ssh-loop | ssh-mux-loop | ssh-mux-xargs | floor)
      if [ "$cmd" = uname ]; then
        got=$(grep -cx "$(hostname)" "$out" || true)
        [ "$got" = "$n" ] || { echo "$got of $n output lines"; return; }
      elif [ "$tool" != floor ]; then
        [ -s "$err" ] && { echo "stderr: $(head -c 200 "$err")"; return; }
      fi ;;
  esac
  echo ""
}

# --- push / pull rows (issue 5 item 3) ------------------------------------------------------
declare -A SRCF SHA
HOME_R=$BENCH_DIR/home      # the bench user's home as each fake host's sshd sees it
is_xfer() { case $1 in push* | pull*) return 0 ;; esac; return 1; }
xfer_size() { echo "${1#pu[sl][hl]}"; }   # push100 -> 100

make_files() {    # the source files, random, on the run's disk; pull sources hard-linked per host
  local mib f i
  mkdir -p "$RUN/src"
  for mib in $PUSH_SIZES; do
    f=$RUN/src/f$mib.bin
    log "generating $f ($mib MiB, random)"
    head -c $((mib * 1048576)) /dev/urandom >"$f"
    sync "$f"
    SRCF[$mib]=$f
    SHA[$mib]=$(openssl dgst -sha256 -r "$f" | cut -d' ' -f1)
    echo "file_${mib}_sha256=${SHA[$mib]}" >>"$RUN/meta.txt"
  done
}
link_pull_sources() {  # host K's pull source: a hard link of the file in its folder
  local n=$1 mib i
  for mib in $PUSH_SIZES; do
    for ((i = 1; i <= n; i++)); do
      ln -f "${SRCF[$mib]}" "$RUN/fs/$i/src$mib.bin"
    done
  done
}

xfer_cmdline() {  # tool cmd n
  local tool=$1 cmd=$2 n=$3 d=$RUN/hosts/$3 mib src
  mib=$(xfer_size "$cmd")
  src=${SRCF[$mib]}
  local cfg="-F $SSHCFG"
  case $cmd in
    push*)
      local dst=$HOME_R/dst.bin
      case $tool in
        muster) echo "$CTL push -i $d/inventory.yaml -g all --log-dir $RUN/logs $src --dest dst.bin" ;;
        muster-prev) echo "$CTL_PREV push -i $d/inventory-prev.yaml -g all --log-dir $RUN/logs-prev $src --dest dst.bin" ;;
        pdcp) echo "pdcp -R ssh -l $BENCH_USER -w ^$d/hosts $src $dst" ;;
        pscp) echo "parallel-scp -h $d/hosts -l $BENCH_USER -x '$cfg' -p $n $src $dst" ;;
        clush) echo "clush --hostfile $d/hosts -l $BENCH_USER -o '$cfg' -f $n --copy $src --dest $dst" ;;
        scp-loop) echo "for h in \$(cat $d/hosts); do scp -q $cfg $src \$h:$dst || exit 1; done" ;;
        scp-xargs) echo "xargs -P $n -I{} scp -q $cfg $src {}:$dst <$d/hosts" ;;
        ansible-copy) echo "$ANSIBLE all -i $d/ansible.ini -m copy -a 'src=$src dest=$dst' -f $n" ;;
        tcp) echo "$PY $repo/bench/tcp_stream.py $src" ;;
        ssh-stream-gcm) echo "ssh $cfg -c aes128-gcm@openssh.com $(addr 1) 'cat >/dev/null' <$src" ;;
        ssh-stream) echo "ssh $cfg $(addr 1) 'cat >/dev/null' <$src" ;;
        cp-sync) echo "seq $n | xargs -P $n -I{} sh -c 'cp $src $RUN/fs/{}/dst.bin && sync $RUN/fs/{}/dst.bin'" ;;
        sha256sum) echo "sha256sum $src" ;;
        openssl-sha256) echo "openssl dgst -sha256 $src" ;;
      esac ;;
    pull*)
      local rsrc=$HOME_R/src$mib.bin pd=$RUN/pulled
      case $tool in
        muster) echo "$CTL pull -i $d/inventory.yaml -g all --log-dir $RUN/logs src$mib.bin --dest $pd" ;;
        muster-prev) echo "$CTL_PREV pull -i $d/inventory-prev.yaml -g all --log-dir $RUN/logs-prev src$mib.bin --dest $pd" ;;
        rpdcp) echo "rpdcp -R ssh -l $BENCH_USER -w ^$d/hosts $rsrc $pd" ;;
        pslurp) echo "parallel-slurp -h $d/hosts -l $BENCH_USER -x '$cfg' -p $n -L $pd $rsrc src$mib.bin" ;;
        clush) echo "clush --hostfile $d/hosts -l $BENCH_USER -o '$cfg' -f $n --rcopy $rsrc --dest $pd" ;;
        scp-loop) echo "for h in \$(cat $d/hosts); do scp -q $cfg \$h:$rsrc $pd/src$mib.bin.\$h || exit 1; done" ;;
        scp-xargs) echo "xargs -P $n -I{} scp -q $cfg {}:$rsrc $pd/src$mib.bin.{} <$d/hosts" ;;
      esac ;;
  esac
}

xfer_prepare() {  # before a sample (untimed): no destination left, nothing dirty, agents' peak reset
  local n=$1 i
  rm -f "$RUN"/fs/*/dst.bin "$RUN"/fs/*/.muster-tmp.* 2>/dev/null || true
  rm -rf "$RUN/pulled"
  mkdir -p "$RUN/pulled"
  sync
  local p
  for p in "${agent_pids[@]:0:n}" "${prev_agent_pids[@]:0:n}"; do
    echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true
  done
}
agents_hwm_kb() { # n tool: the largest VmHWM (peak RSS since xfer_prepare) of hosts 1..n's agents
  local n=$1 m=0 v p ps=("${agent_pids[@]:0:n}")
  [ "$2" = muster-prev ] && ps=("${prev_agent_pids[@]:0:n}")
  for p in "${ps[@]}"; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    [ "${v:-0}" -gt "$m" ] && m=$v
  done
  echo "$m"
}

# xfer_validate tool cmd n rc out err verify -> "" when every destination is right
XFER_VERIFIED=0
xfer_validate() {
  local tool=$1 cmd=$2 n=$3 rc=$4 out=$5 err=$6 verify=$7 mib size got files=() f h
  mib=$(xfer_size "$cmd")
  size=$((mib * 1048576))
  XFER_VERIFIED=0
  [ "$rc" = 0 ] || { echo "exit $rc: $(head -c 200 "$err")"; return; }
  case $tool in
    muster | muster-prev)
      grep -qE "^ctl: $n hosts? in .*: $n ok\$" "$err" || { echo "summary is not '$n ok': $(tail -n 1 "$err")"; return; }
      got=$(grep -c ': ok ' "$out" || true)
      [ "$got" = "$n" ] || { echo "$got of $n hosts 'ok'"; return; }
      grep -q unchanged "$out" && { echo "a host answered unchanged"; return; } ;;
    pscp | pslurp)
      got=$(grep -c '\[SUCCESS\]' "$out" || true)
      [ "$got" = "$n" ] || { echo "$got of $n SUCCESS"; return; } ;;
    ansible-copy)
      got=$(grep -cE ' \| CHANGED' "$out" || true)
      [ "$got" = "$n" ] || { echo "$got of $n CHANGED"; return; } ;;
    sha256sum | openssl-sha256)
      grep -q "${SHA[$mib]}" "$out" || { echo "wrong digest"; return; }
      XFER_VERIFIED=1; echo ""; return ;;
    tcp)
      grep -q " ok\$" "$out" || { echo "tcp: $(cat "$out")"; return; }
      XFER_VERIFIED=1; echo ""; return ;;
    ssh-stream*)
      [ -s "$err" ] && { echo "stderr: $(head -c 200 "$err")"; return; }
      echo ""; return ;;
    *)
      if [ -s "$err" ] && [ -n "$(sed -E 's#clush: *[0-9]+/[0-9]+[ \r\b]*##g' "$err" | tr -d ' \r\n\b')" ]; then
        echo "stderr: $(head -c 200 "$err")"; return
      fi ;;
  esac
  case $cmd in
    push*) for ((h = 1; h <= n; h++)); do files+=("$RUN/fs/$h/dst.bin"); done ;;
    pull*) mapfile -t files < <(find "$RUN/pulled" -type f -name "src$mib.bin*" | sort) ;;
  esac
  [ "${#files[@]}" = "$n" ] || { echo "${#files[@]} of $n destination files"; return; }
  for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "missing $f"; return; }
    [ "$(stat -c %s "$f")" = "$size" ] || { echo "$f: size $(stat -c %s "$f"), not $size"; return; }
  done
  if [ "$verify" = 1 ]; then
    got=$(printf '%s\n' "${files[@]}" | xargs -P 2 -n 1 openssl dgst -sha256 -r | cut -d' ' -f1 | sort | uniq -c || true)
    [ "$got" = "$(printf '%7d %s' "$n" "${SHA[$mib]}")" ] || { echo "sha256 mismatch: $got"; return; }
    XFER_VERIFIED=1
  fi
  echo ""
}

phase_xfer() {    # kind (push|pull) n mib
  local kind=$1 n=$2 mib=$3 cmd=$1$3 tools=() t all rounds
  [ "$kind" = push ] && all=$ALL_PUSH_TOOLS || all=$ALL_PULL_TOOLS
  for t in $all; do
    if [ "$kind" = push ]; then case " $PUSH_TOOLS " in *" $t "*) ;; *) continue ;; esac
    else case " $PULL_TOOLS " in *" $t "*) ;; *) continue ;; esac; fi
    case $t in
      scp-xargs) [ "$n" -gt 1 ] || continue ;;
      pscp | pslurp)
        if [ $((n * mib)) -gt "$PSCP_MAX_BYTES" ]; then
          note "$cmd N=$n: $t skipped ($n x $mib MiB > PSCP_MAX_BYTES=$PSCP_MAX_BYTES), for time (about 200 s a round at 1 GiB x 10)"
          continue
        fi ;;
      scp-loop)
        if [ "$n" -gt 1 ] && [ $((n * mib)) -gt "$SCP_LOOP_MAX_BYTES" ]; then
          note "$cmd N=$n: sequential scp loop skipped ($n x $mib MiB > SCP_LOOP_MAX_BYTES=$SCP_LOOP_MAX_BYTES), for time; scp-xargs stands in"
          continue
        fi ;;
      ansible-copy)
        if [ "$mib" -gt "$ANSIBLE_COPY_MAX_MIB" ]; then
          grep -q "ansible -m copy only up to" "$NOTES" || note "ansible -m copy only up to $ANSIBLE_COPY_MAX_MIB MiB (ANSIBLE_COPY_MAX_MIB), for time"
          continue
        fi ;;
      tcp | ssh-stream* | sha256sum | openssl-sha256) [ "$n" = 1 ] || continue ;;
    esac
    tools+=("$t")
  done
  write_hosts "$n"
  rounds=$R
  [ "$mib" -ge "$BIG_MIB" ] && rounds=$R_BIG
  for t in "${tools[@]}"; do echo "$cmd N=$n $t: $(xfer_cmdline "$t" "$cmd" "$n")" >>"$RUN/cmdlines.txt"; done
  local round k nt=${#tools[@]}
  for ((round = 0; round <= rounds; round++)); do
    for ((k = 0; k < nt; k++)); do
      t=${tools[$(((k + round) % nt))]}
      case $t in ansible-*)
        if awk -v a="$ansible_spent" -v b="$ANSIBLE_BUDGET" 'BEGIN {exit !(a > b)}'; then
          continue
        fi ;;
      esac
      R_CUR=$rounds run_sample "$n" "$cmd" "$t" "$round"
    done
  done
  xfer_prepare "$n"
}

ansible_spent=0
sample_no=0
run_sample() {    # n cmd tool round
  local n=$1 cmd=$2 tool=$3 round=$4 line tag out err tf t0 t1 c0 c1 h0 h1 m0 m1 rc reason
  local warm=0
  [ "$round" = 0 ] && warm=1
  if is_xfer "$cmd"; then
    line=$(xfer_cmdline "$tool" "$cmd" "$n")
    xfer_prepare "$n"
  else
    line=$(tool_cmdline "$tool" "$cmd" "$n")
  fi
  sample_no=$((sample_no + 1))
  tag="$RUN/out/$n-$cmd-$tool-$round"
  out=$tag.out err=$tag.err tf=$tag.time
  local envs=()
  case $tool in
    ansible-*)
      # A fresh ControlPath dir per sample: every sample is a cold start, as a first
      # ad-hoc run is (stock ansible keeps masters 60 s, which would otherwise make the
      # later rounds warm). The masters are closed after the sample.
      envs=(env "ANSIBLE_SSH_CONTROL_PATH_DIR=$RUN/cp/$sample_no")
      mkdir -p "$RUN/cp/$sample_no" ;;
  esac
  local base_tasks
  base_tasks=$(cg_tasks hosts)
  c0=$(cg_usage client); h0=$(cg_usage hosts); m0=$(cg_total)
  t0=$EPOCHREALTIME
  set +e
  ( cg_join client
    exec "${envs[@]}" /usr/bin/time -f '%e %U %S %M' -o "$tf" \
      timeout -k 5 "$SAMPLE_TIMEOUT" sh -c "$line" ) >"$out" 2>"$err" </dev/null
  rc=$?
  set -e
  t1=$EPOCHREALTIME
  # Let the hosts' side finish (sshd sessions closing), 3 s at most, so its CPU is
  # charged to this sample and not the next.
  case $tool in
    ansible-*)
      # Close the masters ansible left (ControlPersist) first, so their sshd sessions end
      # and the wait below does not time out on them. Closing costs the sample nothing:
      # its wall time is already taken.
      local s
      for s in "$RUN/cp/$sample_no"/*; do
        [ -S "$s" ] && echo "$s"
      done | xargs -r -P 16 -I{} ssh -o ControlPath={} -O exit dummy >/dev/null 2>&1 || true
      ansible_spent=$(awk -v a="$ansible_spent" -v b="$t0" -v c="$t1" 'BEGIN {print a + c - b}') ;;
  esac
  local i
  for i in $(seq 60); do
    [ "$(cg_tasks hosts)" -le "$base_tasks" ] && break
    sleep 0.05
  done
  c1=$(cg_usage client); h1=$(cg_usage hosts); m1=$(cg_total)
  local hwm="" psync="" verified=""
  if is_xfer "$cmd"; then
    hwm=$(agents_hwm_kb "$n" "$tool")
    local s0=$EPOCHREALTIME
    sync
    psync=$(awk -v a="$s0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.4f", b - a}')
    local vf=0
    case " $VERIFY_ROUNDS " in *" $round "*) vf=1 ;; esac
    xfer_validate "$tool" "$cmd" "$n" "$rc" "$out" "$err" "$vf" >"$tag.reason"
    reason=$(cat "$tag.reason"); rm -f "$tag.reason"
    verified=$XFER_VERIFIED
  else
    # One line, no tabs: it is a field of results.tsv (progress meters write \r).
    reason=$(validate "$tool" "$cmd" "$n" "$rc" "$out" "$err")
  fi
  reason=${reason//[$'\t\r\n\b']/ }
  local valid=1
  [ -n "$reason" ] && valid=0
  local te us ss mr
  read -r te us ss mr < <(tail -n 1 "$tf" 2>/dev/null || echo "nan nan nan nan")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$n" "$cmd" "$tool" "$round" "$warm" "$valid" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", b - a}')" \
    "$te" "$us" "$ss" "$mr" \
    "$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.4f", (b - a) / 1e9}')" \
    "$(awk -v a="$h0" -v b="$h1" 'BEGIN {printf "%.4f", (b - a) / 1e9}')" \
    "$(awk -v a="$m0" -v b="$m1" -v c="$c0" -v d="$c1" -v e="$h0" -v f="$h1" \
        'BEGIN {x = ((b - a) - (d - c) - (f - e)) / 1e9; if (x < 0) x = 0; printf "%.4f", x}')" \
    "$(cut -d' ' -f1 /proc/loadavg)" "$reason" "$hwm" "$psync" "$verified" >>"$RESULTS"
  if [ "$valid" = 1 ]; then
    log "N=$n $cmd $tool r$round: $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') s"
    # Keep the raw output of a valid sample only for the last round (space).
    [ "$round" -lt "${R_CUR:-$R}" ] && rm -f "$out" "$err"
  else
    log "N=$n $cmd $tool r$round: INVALID ($reason)"
  fi
  rm -f "$tf"
}

has_tool() { case " $TOOLS " in *" $1 "*) return 0 ;; esac; return 1; }
has_phase() { case " $PHASES " in *" $1 "*) return 0 ;; esac; return 1; }

phase_run() {     # the peer comparison at one N
  local n=$1 tools=() t
  for t in $ALL_TOOLS; do
    has_tool "$t" || continue
    if [ "$t" = ssh-loop ] && [ "$n" -gt "$SSH_LOOP_MAX_N" ]; then
      note "N=$n: the plain sequential ssh loop is skipped above N=$SSH_LOOP_MAX_N (SSH_LOOP_MAX_N)"
      continue
    fi
    tools+=("$t")
  done
  write_hosts "$n"
  local need_mux=0
  for t in "${tools[@]}"; do case $t in ssh-mux-*) need_mux=1 ;; esac; done
  [ "$need_mux" = 1 ] && open_masters "$n"
  local cmd round k nt=${#tools[@]}
  for cmd in $CMDS; do
    for ((round = 0; round <= R; round++)); do
      # Alternate: every tool once per round, the starting tool rotating per round.
      for ((k = 0; k < nt; k++)); do
        t=${tools[$(((k + round) % nt))]}
        case $t in
          ansible-*)
            if [ "$n" -ge "$ANSIBLE_LARGE_N" ]; then
              [ "$round" -gt "$R_ANSIBLE_LARGE" ] && continue
              case " $ANSIBLE_LARGE_CMDS " in *" $cmd "*) ;; *)
                grep -q "N=$n $cmd: ansible" "$NOTES" ||
                  note "N=$n $cmd: ansible rows not run at N >= $ANSIBLE_LARGE_N (ANSIBLE_LARGE_CMDS=$ANSIBLE_LARGE_CMDS), for time"
                continue ;;
              esac
            fi
            if awk -v a="$ansible_spent" -v b="$ANSIBLE_BUDGET" 'BEGIN {exit !(a > b)}'; then
              grep -q "ansible budget" "$NOTES" ||
                note "ansible budget of ${ANSIBLE_BUDGET}s spent at N=$n $cmd round $round: later ansible samples skipped"
              continue
            fi ;;
        esac
        run_sample "$n" "$cmd" "$t" "$round"
      done
    done
  done
  [ "$need_mux" = 1 ] && close_masters
  return 0
}

phase_scale() {   # muster alone at large N
  local n=$1 cmd round
  write_hosts "$n"
  for cmd in $CMDS; do
    for ((round = 0; round <= R; round++)); do
      run_sample "$n" "$cmd" muster "$round"
    done
  done
}

# --- machine and versions --------------------------------------------------------------------
{
  echo "stamp=$stamp"
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "cpu_flags_sha=$(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)"
  echo "mem=$(free -g | awk '/^Mem:/ {print $2}') GiB"
  echo "kernel=$(uname -srm)"
  echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "muster=$(cat "$BENCH_DIR/muster-build.txt" 2>/dev/null || echo unknown) ($($CTL --version))"
  if [ -n "$PREV" ]; then
    echo "muster_prev=${MUSTER_PREV_REV:-unknown (MUSTER_PREV_REV not given)} ($($CTL_PREV --version); $MUSTER_PREV_BIN)"
    echo "PREV_PORT=$PREV_PORT"
  fi
  echo "rustc=$(rustc --version)"
  echo "openssh=$(ssh -V 2>&1)"
  echo "pdsh=$(pdsh -V 2>&1 | head -1)"
  echo "pssh=parallel-ssh $(parallel-ssh --version 2>&1)"
  echo "clush=$(clush --version 2>&1)"
  echo "ansible=$($ANSIBLE --version 2>/dev/null | head -1) (python $("$BENCH_DIR/venv/bin/python" -c 'import sys; print(sys.version.split()[0])'))"
  echo "xargs=$(xargs --version | head -1)"
  echo "R=$R"
  echo "R_ANSIBLE_LARGE=$R_ANSIBLE_LARGE"
  echo "ANSIBLE_LARGE_N=$ANSIBLE_LARGE_N"
  echo "ANSIBLE_BUDGET=$ANSIBLE_BUDGET"
  echo "ANSIBLE_LARGE_CMDS=$ANSIBLE_LARGE_CMDS"
  echo "SSH_LOOP_MAX_N=$SSH_LOOP_MAX_N"
  echo "NS=$NS"
  echo "SCALE_NS=$SCALE_NS"
  echo "QUICK=$QUICK"
  echo "env=PDSH_SSH_ARGS_APPEND='$PDSH_SSH_ARGS_APPEND' ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_PYTHON_INTERPRETER=auto_silent ANSIBLE_SSH_CONTROL_PATH_DIR=<fresh per sample>"
} >"$RUN/meta.txt"
cp "$SSHCFG" "$RUN/ssh_config"

# --- the run ---------------------------------------------------------------------------------
maxn=0
for n in $NS; do [ "$n" -gt "$maxn" ] && maxn=$n; done
t_start=$EPOCHREALTIME
if [ "$maxn" -gt 0 ] && has_phase run; then
  need_sshd=0
  for t in $TOOLS; do case $t in muster* | floor) ;; *) need_sshd=1 ;; esac; done
  [ "$need_sshd" = 1 ] && start_sshds "$maxn"
  { has_tool muster || has_tool muster-batch50 || has_tool muster-wave50; } && start_agents "$maxn"
  has_tool muster-prev && start_agents prev "$maxn"
  for n in $NS; do
    for t in $ALL_TOOLS; do has_tool "$t" && echo "N=$n $t: $(tool_cmdline "$t" true "$n")" >>"$RUN/cmdlines.txt"; done
    phase_run "$n"
  done
fi

if has_phase push || has_phase pull; then
  pmax=0
  for n in $PUSH_NS; do [ "$n" -gt "$pmax" ] && pmax=$n; done
  [ "$pmax" -gt "$n_sshd" ] && start_sshds "$pmax"
  [ "$pmax" -gt "$n_agents" ] && start_agents "$pmax"
  if [ -n "$PREV" ] && [ "$pmax" -gt "$n_prev_agents" ]; then
    case " $PUSH_TOOLS $PULL_TOOLS " in *" muster-prev "*) start_agents prev "$pmax" ;; esac
  fi
  echo "PHASES=$PHASES" >>"$RUN/meta.txt"
  echo "PUSH_NS=$PUSH_NS" >>"$RUN/meta.txt"
  echo "PUSH_SIZES=$PUSH_SIZES" >>"$RUN/meta.txt"
  echo "R_BIG=$R_BIG" >>"$RUN/meta.txt"
  echo "BIG_MIB=$BIG_MIB" >>"$RUN/meta.txt"
  echo "ANSIBLE_COPY_MAX_MIB=$ANSIBLE_COPY_MAX_MIB" >>"$RUN/meta.txt"
  echo "SCP_LOOP_MAX_BYTES=$SCP_LOOP_MAX_BYTES" >>"$RUN/meta.txt"
  echo "PSCP_MAX_BYTES=$PSCP_MAX_BYTES" >>"$RUN/meta.txt"
  echo "VERIFY_ROUNDS=$VERIFY_ROUNDS" >>"$RUN/meta.txt"
  echo "disk=$(df -h --output=source,fstype,size "$RUN" | tail -n 1 | tr -s ' ')" >>"$RUN/meta.txt"
  echo "openssl_version=$(openssl version)" >>"$RUN/meta.txt"
  echo "sha256sum=$(sha256sum --version | head -1)" >>"$RUN/meta.txt"
  log "disk before: $(df -h --output=avail "$RUN" | tail -n 1)"
  make_files
  link_pull_sources "$pmax"
  for kind in push pull; do
    has_phase "$kind" || continue
    for mib in $PUSH_SIZES; do
      for n in $PUSH_NS; do
        phase_xfer "$kind" "$n" "$mib"
      done
    done
  done
  # The generated files and every copy go (the raw results stay).
  rm -rf "$RUN/src" "$RUN/pulled" "$RUN"/fs/*/*.bin "$RUN"/fs/*/.muster-tmp.* 2>/dev/null || true
  log "disk after: $(df -h --output=avail "$RUN" | tail -n 1)"
fi

if [ -n "$SCALE_NS" ] && has_tool muster && has_phase scale; then
  for n in $SCALE_NS; do
    if [ "$n" -gt "$n_agents" ]; then
      # Measure a few agents before estimating the rest.
      [ "$n_agents" -eq 0 ] && start_agents $((n < 50 ? n : 50))
      # Memory: an idle agent's own memory is its Pss (the binary's pages are shared);
      # add 3 threads' kernel stacks and page tables, ~100 KiB, and 50% margin.
      pss=$(agent_mem_kb Pss)
      avail=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
      est=$(( (n - n_agents) * ((pss > 0 ? pss : 2000) + 100) * 3 / 2 ))
      if awk -v e="$est" -v a="$avail" -v f="$SCALE_MEM_FRACTION" 'BEGIN {exit !(e > a * f)}'; then
        note "N=$n skipped: $((n - n_agents)) more agents (Pss ${pss} KiB each) would need ~$((est / 1024)) MiB, over ${SCALE_MEM_FRACTION} of MemAvailable ($((avail / 1024)) MiB)"
        continue
      fi
      # Tasks: an agent is 3 threads; a run adds up to --forks (1024) shells. Stay under
      # 70% of kernel.pid_max so other users of the machine can still fork.
      pid_max=$(cat /proc/sys/kernel/pid_max)
      tasks=$(ps -eLf --no-headers | wc -l)
      if [ $(( (n - n_agents) * 3 + 1024 + tasks )) -gt $((pid_max * 7 / 10)) ]; then
        note "N=$n skipped: $((n - n_agents)) more agents (3 tasks each) would come near kernel.pid_max=$pid_max ($tasks tasks now)"
        continue
      fi
      start_agents "$n"
      echo "agents_rss_kb_at_$n=$(agent_rss_kb)" >>"$RUN/meta.txt"
      echo "agents_pss_kb_at_$n=$(agent_mem_kb Pss)" >>"$RUN/meta.txt"
    fi
    echo "N=$n muster: $(tool_cmdline muster true "$n")" >>"$RUN/cmdlines.txt"
    phase_scale "$n"
  done
fi
echo "agent_rss_kb=$(agent_rss_kb)" >>"$RUN/meta.txt"
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RUN/meta.txt"
echo "elapsed_s=$(awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.0f", b - a}')" >>"$RUN/meta.txt"
log "done: $RUN"

cleanup
trap - EXIT
if [ "$REPORT" = 1 ]; then
  python3 "$repo/bench/report.py" "$RUN"
fi
