#!/usr/bin/env bash
# Install what the SLURM integration tests need (Debian packages): slurmctld, slurmd, the client
# commands and munge. Idempotent: does nothing when every binary is already there. Needs root (or
# sudo) and apt; where neither is available it says so and exits 0, and the SLURM tests then skip
# with that reason (tests/slurm_fixture.py).
set -uo pipefail
need=(slurmctld slurmd sbatch squeue scancel sinfo munged munge)
missing=()
for b in "${need[@]}"; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-slurm: already installed ($(dpkg-query -W -f='${Package} ${Version}  ' slurmctld slurmd slurm-client munge 2>/dev/null)); nothing to do"
  exit 0
fi
echo "install-slurm: missing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "install-slurm: not root and no passwordless sudo; SLURM tests will be skipped"; exit 0; fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-slurm: no apt-get on this machine; SLURM tests will be skipped"; exit 0
fi
pkgs=(slurmctld slurmd slurm-client munge)
t0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends "${pkgs[@]}"; then
  echo "install-slurm: install failed; refreshing the package lists and retrying"
  $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends "${pkgs[@]}" || {
    echo "install-slurm: apt-get could not install ${pkgs[*]}; SLURM tests will be skipped"; exit 0; }
fi
echo "install-slurm: installed ${pkgs[*]} in $(( $(date +%s) - t0 )) s: $(dpkg-query -W -f='${Package} ${Version}  ' "${pkgs[@]}")"
