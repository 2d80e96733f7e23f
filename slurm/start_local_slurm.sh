#!/usr/bin/env bash
# Starts a real one-node Slurm cluster on this machine, for tests and for trying `tessera launch`
# without a cluster:  slurm/start_local_slurm.sh DIR [CPUS]
#   - a munge key and munged (its socket under DIR/munge);
#   - DIR/slurm.conf: this host as controller and only node, declaring CPUS cpus (default 8;
#     SlurmdParameters=config_overrides lets a 2-core machine declare 8 for 8 ranks on CPU),
#     proctrack/linuxproc and task/none (no cgroups needed), select/cons_tres, the builtin
#     scheduler (jobs start as soon as they are submitted), requeued jobs eligible again after
#     cred_expire = 5 s (Slurm's default is 120 s);
#   - slurmctld -D -i and slurmd -D, each in its own session (setsid), logs under DIR/log.
# Waits until the node is idle, then prints the line to use it:  export SLURM_CONF=DIR/slurm.conf
# slurm/stop_local_slurm.sh DIR stops exactly what this started (the pids in DIR/pids).
# Ports: TESSERA_SLURM_PORT (default 6817) for slurmctld, the next one for slurmd.
# Needs Debian 12's slurm-wlm, munge and libpmix-dev (scripts/setup.sh installs them).
set -euo pipefail

dir=${1:?usage: start_local_slurm.sh DIR [CPUS]}
cpus=${2:-8}
port=${TESSERA_SLURM_PORT:-6817}
for tool in munged mungekey slurmctld slurmd sinfo; do
  command -v "$tool" >/dev/null || { echo "start_local_slurm: $tool not found (run scripts/setup.sh)" >&2; exit 77; }
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ -f "$dir/pids" ]; then
  echo "start_local_slurm: $dir/pids exists: a cluster may be running there (stop it with stop_local_slurm.sh $dir)" >&2
  exit 1
fi
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
chmod 700 "$dir/munge"
: >"$dir/pids"

# munge: a fresh key; --force because the folders may sit under a world-writable /tmp.
mungekey --create --keyfile="$dir/munge/munge.key" --force
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"
for _ in $(seq 50); do [ -s "$dir/munge/munged.pid" ] && break; sleep 0.1; done
echo "munged $(cat "$dir/munge/munged.pid")" >>"$dir/pids"

host=$(hostname -s)
user=$(id -un)
cat >"$dir/slurm.conf" <<CONF
# Written by slurm/start_local_slurm.sh: a one-node cluster for tests.
ClusterName=tessera-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
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
SlurmdParameters=config_overrides
MpiDefault=none
JobRequeue=1
ReturnToService=2
KillWait=5
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"

setsid slurmctld -D -i -f "$SLURM_CONF" >"$dir/log/slurmctld.stdout" 2>&1 </dev/null &
echo "slurmctld $!" >>"$dir/pids"
setsid slurmd -D -f "$SLURM_CONF" >"$dir/log/slurmd.stdout" 2>&1 </dev/null &
echo "slurmd $!" >>"$dir/pids"

for _ in $(seq 150); do
  state=$(sinfo -h -N -o %t 2>/dev/null || true)
  case "$state" in idle*)
    echo "start_local_slurm: node $host idle with $cpus cpus; use it with: export SLURM_CONF=$SLURM_CONF"
    exit 0 ;;
  esac
  sleep 0.2
done
echo "start_local_slurm: the node did not become idle within 30 s (state '${state:-none}'); see $dir/log" >&2
tail -n 5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
exit 1
