#!/usr/bin/env bash
# TPU VM pod launcher (gcloud CLI): create / setup / run / ssh-all / delete.
# The same command runs on every worker; jax.distributed.initialize()
# discovers the pod topology by itself on TPU VMs.
#
#   bash launch/tpu_pod.sh create  --name=gc-v4 --zone=us-central2-b --type=v4-32
#   bash launch/tpu_pod.sh setup   --name=gc-v4 --zone=us-central2-b
#   bash launch/tpu_pod.sh run     --name=gc-v4 --zone=us-central2-b \
#        --workdir=gs://BUCKET/runs/cifar_gc -- --config=configs/cifar_gc.py
#   bash launch/tpu_pod.sh ssh-all --name=gc-v4 --zone=us-central2-b -- 'nvidia-smi || true'
#   bash launch/tpu_pod.sh delete  --name=gc-v4 --zone=us-central2-b
# Add --dry-run to print the gcloud commands instead of running them.
set -euo pipefail
action="${1:-}"; shift || true
name=""; zone=""; type="v4-32"; version="tpu-ubuntu2204-base"
repo="https://github.com/YOUR_ORG/gcflow_jax.git"; workdir=""; dry=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name=*) name="${1#*=}";; --zone=*) zone="${1#*=}";;
    --type=*) type="${1#*=}";; --version=*) version="${1#*=}";;
    --repo=*) repo="${1#*=}";; --workdir=*) workdir="${1#*=}";;
    --dry-run) dry=1;;
    --) shift; extra=("$@"); break;;
    *) echo "unknown argument: $1" >&2; exit 2;;
  esac
  shift
done
usage="usage: $0 {create|setup|run|ssh-all|delete} --name=NAME --zone=ZONE [--type=v4-32] [--workdir=gs://...] [--dry-run] [-- args]"
[ -n "$action" ] && [ -n "$name" ] && [ -n "$zone" ] || { echo "$usage" >&2; exit 2; }
run() { if [ $dry = 1 ]; then printf '%s\n' "$*"; else eval "$@"; fi; }
ssh_all() {
  run "gcloud compute tpus tpu-vm ssh $name --zone=$zone --worker=all --command=$(printf '%q' "$1")"
}
case "$action" in
  create)
    run "gcloud compute tpus tpu-vm create $name --zone=$zone --accelerator-type=$type --version=$version";;
  setup)
    ssh_all "git clone $repo gcflow_jax 2>/dev/null || (cd gcflow_jax && git pull); cd gcflow_jax && python3 -m venv .venv && .venv/bin/pip install -e '.[tf]' 'jax[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html";;
  run)
    [ -n "$workdir" ] || { echo "run needs --workdir=gs://BUCKET/PATH (shared by all workers)" >&2; exit 2; }
    ssh_all "cd gcflow_jax && .venv/bin/python -m gcflow_jax.main --workdir=$workdir --config.distributed.initialize=True ${extra[*]}";;
  ssh-all)
    ssh_all "${extra[*]}";;
  delete)
    run "gcloud compute tpus tpu-vm delete $name --zone=$zone --quiet";;
  *) echo "$usage" >&2; exit 2;;
esac
