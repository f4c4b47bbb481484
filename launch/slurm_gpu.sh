#!/usr/bin/env bash
# Multi-host GPU launcher for SLURM: writes an sbatch script that starts one
# process per GPU (srun), points every process at the first node as the
# jax.distributed coordinator, and submits it.
#
#   bash launch/slurm_gpu.sh --nodes=2 --gpus_per_node=8 --partition=gpu \
#       --workdir=/shared/runs/cifar_gc -- --config=configs/cifar_gc.py
# --dry-run prints the sbatch script instead of submitting it.
# --per_node runs one process per node that drives all its GPUs instead.
set -euo pipefail
nodes=1; gpus=8; partition=""; time_limit="48:00:00"; workdir=""; dry=0
per_node=0; port=12355; venv=".venv"; extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes=*) nodes="${1#*=}";; --gpus_per_node=*) gpus="${1#*=}";;
    --partition=*) partition="${1#*=}";; --time=*) time_limit="${1#*=}";;
    --workdir=*) workdir="${1#*=}";; --port=*) port="${1#*=}";;
    --venv=*) venv="${1#*=}";; --per_node) per_node=1;;
    --dry-run) dry=1;;
    --) shift; extra=("$@"); break;;
    *) echo "unknown argument: $1" >&2; exit 2;;
  esac
  shift
done
[ -n "$workdir" ] || { echo "needs --workdir=DIR on a filesystem shared by all nodes" >&2; exit 2; }
if [ $per_node = 1 ]; then tasks=1; else tasks=$gpus; fi
ntasks=$((nodes * tasks))
script=$(cat <<SBATCH
#!/bin/bash
#SBATCH --job-name=gcflow
#SBATCH --nodes=$nodes
#SBATCH --ntasks-per-node=$tasks
#SBATCH --gpus-per-node=$gpus
#SBATCH --time=$time_limit
${partition:+#SBATCH --partition=$partition}
#SBATCH --output=$workdir/slurm-%j.out
#SBATCH --signal=TERM@120
set -euo pipefail
export COORD=\$(scontrol show hostnames "\$SLURM_JOB_NODELIST" | head -n 1):$port
srun --kill-on-bad-exit=1 bash -c '$( [ $per_node = 1 ] || echo 'export CUDA_VISIBLE_DEVICES=$SLURM_LOCALID; ')$venv/bin/python -m gcflow_jax.main --workdir=$workdir --config.distributed.initialize=True --config.distributed.coordinator_address=\$COORD --config.distributed.num_processes=$ntasks --config.distributed.process_id=\$SLURM_PROCID ${extra[*]}'
SBATCH
)
if [ $dry = 1 ]; then
  printf '%s\n' "$script"
else
  mkdir -p "$workdir"
  printf '%s\n' "$script" | sbatch
fi
