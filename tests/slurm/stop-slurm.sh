#!/usr/bin/env bash
# Stop the daemons started by start-slurm.sh DIR (by PID file only; munged only if it started it).
DIR=${1:?usage: stop-slurm.sh DIR}
export SLURM_CONF=$DIR/slurm.conf
scancel --user="$(id -un)" 2>/dev/null || true
for f in "$DIR/run/slurmd.pid" "$DIR/run/slurmctld.pid" "$DIR/run/munged.pid.ours"; do
  [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
done
for i in $(seq 50); do
  alive=0
  for f in "$DIR/run/slurmd.pid" "$DIR/run/slurmctld.pid"; do
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1
  done
  [ $alive = 0 ] && break
  sleep 0.1
done
rm -rf "$DIR/state" "$DIR/run/munged.pid.ours"
echo stopped
