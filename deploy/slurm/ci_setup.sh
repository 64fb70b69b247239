#!/usr/bin/env bash
# Install Debian's SLURM (slurmctld, slurmd, client commands) and MUNGE for the one-node test
# cluster of tests/test_cluster_slurm.py. Idempotent: does nothing where they are installed.
# Needs root and apt-get (Debian/Ubuntu); exits 3 without installing where either is missing.
set -euo pipefail
need=(slurmctld slurmd sbatch squeue scancel munged)
missing=0
for b in "${need[@]}"; do command -v "$b" >/dev/null 2>&1 || missing=1; done
if [ "$missing" = 0 ]; then
  echo "slurm and munge already installed"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "cannot install slurm here: needs root and apt-get (got uid $(id -u))" >&2
  exit 3
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: 9 packages instead of 43 (no mail server, no docs)
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
echo "installed: $(slurmctld -V)"
