#!/usr/bin/env bash
# One-time (idempotent) set-up for the muster benchmark harness, as root on Debian 12.
#
#   bench/setup.sh          # then: bench/run.sh
#
# - installs the peers from Debian: openssh-server pdsh pssh clustershell, plus GNU time
#   (peak RSS / CPU of the controller) and hyperfine (not required by run.sh, handy for
#   ad-hoc comparisons);
# - installs ansible-core from PyPI into a private venv ($BENCH_DIR/venv);
# - makes a bench-only ssh key pair and client config in $BENCH_DIR/ssh (the user's
#   ~/.ssh is never read or written);
# - makes the operator identity of the benchmark ($BENCH_DIR/operator, .pub) and the
#   agents' authorized_keys ($BENCH_DIR/muster_authorized_keys) with it;
# - builds muster in release mode into a separate target dir so it does not lock the
#   workspace's own target/ while other builds run.
#
# Environment: BENCH_DIR (default /var/tmp/muster-bench),
#              CARGO_TARGET_DIR (default /tmp/muster-bench-target),
#              SKIP_APT=1 / SKIP_PIP=1 / SKIP_BUILD=1 to skip a step.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

BENCH_DIR=${BENCH_DIR:-/var/tmp/muster-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/muster-bench-target}

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages and runs sshd)" >&2
  exit 1
fi

mkdir -p "$BENCH_DIR"
chmod 0755 "$BENCH_DIR"

# --- Debian packages --------------------------------------------------------------------
pkgs=(openssh-server openssh-client pdsh pssh clustershell time hyperfine)
if [ "${SKIP_APT:-0}" != 1 ]; then
  echo "==> apt-get update"
  apt-get update -q >/dev/null
  missing=()
  for p in "${pkgs[@]}"; do
    cand=$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
      echo "setup.sh: package $p has no install candidate; skipping it" >&2
      continue
    fi
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    # The packaged sshd must not start a system-wide daemon on :22 that we then leave
    # running: policy-rc.d 101 forbids service starts during this install.
    had_policy=0
    [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    if [ "$had_policy" = 0 ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod 0755 /usr/sbin/policy-rc.d
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    [ "$had_policy" = 0 ] && rm -f /usr/sbin/policy-rc.d
  else
    echo "==> Debian packages already installed"
  fi
fi
# sshd wants its privilege-separation directory and host keys.
mkdir -p /run/sshd
chmod 0755 /run/sshd
ssh-keygen -A >/dev/null

# --- ansible-core from PyPI -------------------------------------------------------------
if [ "${SKIP_PIP:-0}" != 1 ]; then
  if [ ! -x "$BENCH_DIR/venv/bin/ansible" ]; then
    echo "==> ansible-core into $BENCH_DIR/venv"
    python3 -m venv "$BENCH_DIR/venv"
    "$BENCH_DIR/venv/bin/pip" install -q ansible-core
  else
    echo "==> ansible-core already in $BENCH_DIR/venv"
  fi
fi

# --- the fake hosts' login user ----------------------------------------------------------
# root's ~/.bashrc here runs `pyenv init`, and Debian's bash reads ~/.bashrc for ssh
# commands, which would charge every ssh-based peer ~0.1 s of shell start-up that has
# nothing to do with the tool. The fake hosts are therefore logged into as a bench-only
# user whose shell is /bin/sh (dash: no rc files), which is also the shell the agent uses
# for `sh -c`. Its home (ansible's remote tmp) is in $BENCH_DIR.
bench_user=mbench
if ! getent passwd "$bench_user" >/dev/null; then
  echo "==> user $bench_user (shell /bin/sh, home $BENCH_DIR/home)"
  useradd --system --shell /bin/sh --home-dir "$BENCH_DIR/home" --create-home "$bench_user"
fi
# '*' instead of useradd's locked '!': no password login, but sshd accepts its key.
usermod -p '*' "$bench_user"
mkdir -p "$BENCH_DIR/home"
chown "$bench_user:" "$BENCH_DIR/home"

# --- bench-only ssh identity and client config ------------------------------------------
sshdir=$BENCH_DIR/ssh
mkdir -p "$sshdir" "$sshdir/cm"
chmod 0700 "$sshdir" "$sshdir/cm"
if [ ! -f "$sshdir/id_ed25519" ]; then
  echo "==> bench ssh key $sshdir/id_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C muster-bench -f "$sshdir/id_ed25519"
fi
# The fake hosts' sshd reads this (AuthorizedKeysFile) as the login user: world-readable,
# outside the 0700 client dir.
cp "$sshdir/id_ed25519.pub" "$BENCH_DIR/authorized_keys"
chmod 0644 "$BENCH_DIR/authorized_keys"
# Every ssh-based peer (pdsh, pssh, clush, ansible, the loops) is pointed at this file
# with -F, or at this key with -i, so only loopback bench hosts are ever trusted.
cat >"$sshdir/config" <<CFG
Host 127.*
  User mbench
  IdentityFile $sshdir/id_ed25519
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  GlobalKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
  PasswordAuthentication no
  KbdInteractiveAuthentication no
  GSSAPIAuthentication no
  ConnectTimeout 20
  # No ControlPath here: only run.sh's warm-mux rows (their own config) multiplex.
  ControlMaster no
  ControlPath none
Host *
  BatchMode yes
CFG
chmod 0600 "$sshdir/config"

# --- muster ----------------------------------------------------------------------------
# Other people edit this work tree while benchmarks run, so by default the build is of a
# committed revision (MUSTER_REV, default HEAD) exported with `git archive` into
# $BENCH_DIR/src: the figures then belong to one commit, recorded in BENCHMARKS.md.
# MUSTER_REV=worktree builds the work tree as it is instead.
rev=${MUSTER_REV:-HEAD}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  if [ "$rev" = worktree ]; then
    src=$repo
    desc="work tree of $(git -C "$repo" rev-parse --short HEAD) (uncommitted changes included)"
  else
    commit=$(git -C "$repo" rev-parse --verify "$rev^{commit}")
    src=$BENCH_DIR/src
    rm -rf "$src.tmp" && mkdir -p "$src.tmp"
    git -C "$repo" archive "$commit" | tar -x -C "$src.tmp"
    # git archive stamps files with the commit time; cargo's freshness check is by mtime and
    # its hashes are relative to the workspace, so units built earlier from another tree
    # into the same target dir would be taken as fresh. New mtimes force a real rebuild.
    find "$src.tmp" -type f -exec touch {} +
    rm -rf "$src" && mv "$src.tmp" "$src"
    desc="$(git -C "$repo" log -1 --format='%h %s' "$commit")"
  fi
  echo "==> cargo build --release -p agent -p controller of $desc (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$src" && cargo build --release --quiet -p agent -p controller)
  echo "$desc" >"$BENCH_DIR/muster-build.txt"
fi
if [ ! -f "$BENCH_DIR/operator" ]; then
  ssh-keygen -q -t ed25519 -N '' -C muster-bench-operator -f "$BENCH_DIR/operator"
fi
cp "$BENCH_DIR/operator.pub" "$BENCH_DIR/muster_authorized_keys"
chmod 0644 "$BENCH_DIR/muster_authorized_keys"
# A build from before identities (MUSTER_PREV_BIN) still takes a shared fleet key.
if [ ! -f "$BENCH_DIR/fleet.key" ]; then
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$BENCH_DIR/fleet.key"
  echo >>"$BENCH_DIR/fleet.key"
  chmod 0600 "$BENCH_DIR/fleet.key"
fi

echo "==> ready: $BENCH_DIR ($(ls "$BENCH_DIR" | tr '\n' ' '))"
echo "    next: bench/run.sh   (QUICK=1 bench/run.sh for a smoke test)"
