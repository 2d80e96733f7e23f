#!/usr/bin/env bash
# Stops the one-node Slurm cluster that start_local_slurm.sh DIR started: cancels its jobs, then
# ends exactly the processes recorded in DIR/pids (slurmd, slurmctld, munged; each by pid, TERM
# then KILL after 10 s) and removes DIR/pids. Safe to run when nothing is running.
set -uo pipefail

dir=${1:?usage: stop_local_slurm.sh DIR}
[ -f "$dir/pids" ] || { echo "stop_local_slurm: nothing started in $dir"; exit 0; }
if [ -f "$dir/slurm.conf" ] && command -v scancel >/dev/null; then
  SLURM_CONF="$dir/slurm.conf" timeout 10 scancel --full --user "$(id -un)" 2>/dev/null || true
fi
# Newest first: slurmd before slurmctld before munged.
tac "$dir/pids" | while read -r name pid; do
  kill -TERM "$pid" 2>/dev/null || continue
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "stop_local_slurm: $name ($pid) ignored TERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
done
rm -f "$dir/pids"
echo "stop_local_slurm: stopped the cluster in $dir"
