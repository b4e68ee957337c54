#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, from Debian's packages, for the Slurm tests (make test-slurm).
#
#   tests/slurm/cluster.sh start DIR        start munged, slurmctld and slurmd; every file under DIR
#                                           (DIR/env holds `export SLURM_CONF=...` for clients)
#   tests/slurm/cluster.sh stop DIR         cancel its jobs, stop the three daemons (by their pid files), remove DIR
#   tests/slurm/cluster.sh run -- CMD...    start a cluster in a fresh temporary DIR, run CMD with SLURM_CONF set,
#                                           stop it on exit (also when CMD fails or is interrupted)
#
# Needs root (the daemons run as root: SlurmUser=root). Installs slurmctld, slurmd, slurm-client and munge with
# apt-get when they are missing. Ports are picked free at start, the munge socket and key live under DIR, so nothing
# of the machine's own Slurm or munge (if any) is touched. The node is this host with its CPUs; no GPUs.
set -euo pipefail

die() { echo "cluster.sh: $*" >&2; exit 1; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return 0
  command -v apt-get >/dev/null || die "slurmctld/slurmd/munge missing and no apt-get: install Slurm and munge"
  echo "installing Debian's slurmctld, slurmd, slurm-client and munge (apt-get; needs root or sudo)" >&2
  local sudo; sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    slurmctld slurmd slurm-client munge >/dev/null || die "apt-get could not install slurmctld slurmd munge"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# kill the process named by a pid file (only if it is still the daemon we started: its command line is checked)
stop_pidfile() {
  local file=$1 name=$2 pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  [ -n "$pid" ] && grep -qa "$name" "/proc/$pid/cmdline" 2>/dev/null || { rm -f "$file"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$file"
}

stop() {
  local dir=$1 i
  [ -d "$dir" ] || return 0
  if [ -f "$dir/slurm.conf" ] && [ -f "$dir/slurmctld.pid" ]; then
    export SLURM_CONF=$dir/slurm.conf
    scancel --quiet --full --signal=KILL --user=root 2>/dev/null || true  # every job of this cluster
    for i in $(seq 30); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  stop_pidfile "$dir/slurmd.pid" slurmd
  stop_pidfile "$dir/slurmctld.pid" slurmctld
  stop_pidfile "$dir/munged.pid" munged
  case "$dir" in /tmp/*|/var/tmp/*|"${TMPDIR:-/tmp}"/*) rm -rf "$dir" ;; *) echo "cluster.sh: left $dir" >&2 ;; esac
}

start() {
  local dir=$1
  [ "$(id -u)" = 0 ] || die "the test cluster runs its daemons as root (SlurmUser=root): run as root"
  install_packages
  mkdir -p "$dir"/{state,spool,log}
  dir=$(cd "$dir" && pwd)
  trap 'echo "cluster.sh: start failed, stopping what started (logs: $dir/log)" >&2; tail -n 20 "$dir"/log/* >&2 || true; stop "$dir"' ERR
  local host cpus ctld_port slurmd_port
  host=$(hostname -s); cpus=$(nproc)
  ctld_port=$(free_port); slurmd_port=$(free_port)
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done

  dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
  chmod 600 "$dir/munge.key"
  munged --force --socket="$dir/munge.sock" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed"

  cat > "$dir/slurm.conf" <<EOF
ClusterName=softthink-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
MessageTimeout=20
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  echo "export SLURM_CONF=$dir/slurm.conf" > "$dir/env"
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -c -f "$dir/slurm.conf"
  slurmd -f "$dir/slurm.conf" -N "$host"
  local i
  for i in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -qE '^idle' && break
    sleep 0.5
  done
  sinfo -h -o %T 2>/dev/null | grep -qE '^idle' || { echo "cluster.sh: node not idle after 30 s" >&2; false; }
  trap - ERR
  echo "cluster.sh: one-node Slurm up in $dir ($host, $cpus CPUs, slurmctld port $ctld_port); $(cat "$dir/env")" >&2
}

case "${1:-}" in
  start) [ -n "${2:-}" ] || die "usage: cluster.sh start DIR"; start "$2" ;;
  stop) [ -n "${2:-}" ] || die "usage: cluster.sh stop DIR"; stop "$2" ;;
  run)
    shift; [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || die "usage: cluster.sh run -- CMD..."
    dir=$(mktemp -d /tmp/softthink-slurm.XXXXXX)
    trap 'trap "" INT TERM; stop "$dir"' EXIT  # a second Ctrl-C does not cut the teardown short
    trap 'exit 130' INT TERM
    start "$dir"
    export SLURM_CONF=$dir/slurm.conf SOFTTHINK_SLURM_CLUSTER=$dir
    rc=0; "$@" || rc=$?
    exit $rc ;;
  *) die "usage: cluster.sh start DIR | stop DIR | run -- CMD..." ;;
esac
