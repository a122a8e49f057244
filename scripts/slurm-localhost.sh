#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, for trying madlib's submitit executor (docs/cluster.md) and for
# tests/test_sweep.py's Slurm test, on a machine without systemd (a container, a CI runner).
#
#   sudo scripts/slurm-localhost.sh          # install Debian's slurmctld slurmd slurm-client munge, start them
#   sudo scripts/slurm-localhost.sh stop     # stop the daemons this script started
#
# Project choices, all for a throw-away test cluster: the daemons run as root (SlurmUser=root), processes
# are tracked without cgroups (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none), accounting is off
# (submitit reads a job's result file; `sacct` is not needed), one partition "debug" holds the one node.
# The node declares the machine's CPUs and no GPUs. Nothing here is meant for a shared machine.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
STATE=/var/lib/slurm-localhost
LOGS=/var/log/slurm-localhost
NODE=$(hostname -s)

if [ "$(id -u)" != 0 ]; then
  echo "slurm-localhost.sh: run as root (it installs packages and starts daemons)" >&2
  exit 2
fi

stop() {
  for pidfile in /run/slurmd-localhost.pid /run/slurmctld-localhost.pid /run/munge/munged.pid; do
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" && echo "stopped $(basename "$pidfile" .pid) ($pid)"
    fi
  done
}

if [ "${1:-start}" = stop ]; then
  stop
  exit 0
fi

# 1. Packages. Debian's postinst scripts would try to start the services: a policy-rc.d keeps them quiet.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v srun >/dev/null \
    || ! command -v munged >/dev/null; then
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# 2. munge: a key, then the daemon as the munge user.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null; then mungekey --create --force; else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null

# 3. slurm.conf for one node on localhost.
install -d -m 0755 /etc/slurm "$STATE/ctld" "$STATE/d" "$LOGS"
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
cat > "$CONF" <<EOF
# Written by madlib's scripts/slurm-localhost.sh: a one-node test cluster on localhost.
ClusterName=localhost
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld-localhost.pid
SlurmdPidFile=/run/slurmd-localhost.pid
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

# 4. The daemons (each forks into the background), unless already up.
stop_old=0
if [ -s /run/slurmctld-localhost.pid ] && kill -0 "$(cat /run/slurmctld-localhost.pid)" 2>/dev/null; then
  stop_old=1
fi
if [ "$stop_old" = 0 ]; then
  slurmctld -c  # -c: a clean start, no state of an earlier cluster
  slurmd
fi

# 5. Wait until the node takes jobs, then prove it with one step.
for _ in $(seq 60); do
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
  case "$state" in idle*|mixed*|allocated*) break ;; esac
  sleep 0.5
done
case "${state:-}" in
  idle*|mixed*|allocated*) ;;
  *) echo "slurm-localhost.sh: node $NODE is '${state:-unknown}' (see $LOGS/)" >&2; exit 1 ;;
esac
srun -N1 -n1 -t 1 hostname >/dev/null
echo "Slurm on localhost is up: node $NODE ($CPUS CPUs, partition debug); logs in $LOGS; stop with: $0 stop"
