#!/usr/bin/env bash
# Start a throw-away single-node Slurm (munged + slurmctld + slurmd) as root, no systemd, no cgroups.
# Usage: ./start-slurm.sh DIR [CTLD_PORT [SLURMD_PORT]]     (ports default 6817 6818)
# Then:  export SLURM_CONF=DIR/slurm.conf ; sbatch/squeue/sinfo/srun work.  Stop: ./stop-slurm.sh DIR
# Needs root and: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
# (.ci/install-slurm.sh). Adapted from ../shared/slurm/; used by tests/slurm_fixture.py.
set -euo pipefail
DIR=${1:?usage: start-slurm.sh DIR [CTLD_PORT [SLURMD_PORT]]}
CTLD_PORT=${2:-6817}
D_PORT=${3:-6818}
HERE=$(cd "$(dirname "$0")" && pwd)
export SLURM_CONF=$DIR/slurm.conf
t0=$(date +%s.%N)
mkdir -p "$DIR"/{state/ctld,state/d,run,log,out}

# 1. slurm.conf for this host (NodeName must equal `hostname -s`; slurmd -C gives CPUs/sockets)
HOST=$(hostname -s)
NODELINE=$(slurmd -C | head -1 | sed -E 's/RealMemory=[0-9]+/RealMemory=8000/')
sed -e "s#@DIR@#$DIR#g" -e "s#@HOST@#$HOST#g" -e "s#@CTLDPORT@#$CTLD_PORT#g" -e "s#@DPORT@#$D_PORT#g" \
    -e "s#@NODELINE@#$NODELINE NodeAddr=127.0.0.1 State=UNKNOWN#" \
    "$HERE/slurm.conf.in" > "$SLURM_CONF"

# 2. munge: reuse a running munged; otherwise start one and remember that we did (stop-slurm.sh
#    stops only a munged it started). Debian's package relies on systemd's RuntimeDirectory.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  install -d -o munge -g munge -m 0755 /run/munge
  [ -s /etc/munge/munge.key ] || { mungekey --create --force; chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged
  for i in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  cp /run/munge/munged.pid "$DIR/run/munged.pid.ours" 2>/dev/null || true
fi

# 3. controller + node daemon (daemonize themselves; PIDs in $DIR/run)
pgrep -F "$DIR/run/slurmctld.pid" >/dev/null 2>&1 || slurmctld -f "$SLURM_CONF"
pgrep -F "$DIR/run/slurmd.pid"    >/dev/null 2>&1 || slurmd    -f "$SLURM_CONF"

# 4. wait for the node to be idle
st=""
for i in $(seq 150); do
  st=$(sinfo -h -N -o %T 2>/dev/null || true)
  [[ $st == idle* ]] && break
  [[ $st == down* || $st == drain* ]] && scontrol update nodename="$HOST" state=resume || true
  sleep 0.2
done
sinfo
[[ $st == idle* ]] || { echo "slurm node not idle (state '$st'); see $DIR/log" >&2; exit 1; }
echo "slurm up in $(echo "$(date +%s.%N) - $t0" | bc) s; export SLURM_CONF=$SLURM_CONF"
