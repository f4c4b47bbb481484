#!/usr/bin/env bash
# The README's one-command run: create the environment (if needed) and train
# the embedded default job (configs/toy_gc.py: iCT with the generator-induced
# coupling on a 2-D toy; CPU, no download). Extra arguments are passed to
# gcflow_jax.main, e.g. flow matching instead:
#   bash launch/local.sh --config=configs/toy_fm.py --workdir=runs/toy_fm
# --dry-run prints the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
args=()
for a in "$@"; do
  if [ "$a" = "--dry-run" ]; then dry=1; else args+=("$a"); fi
done
has_config=0; has_workdir=0
for a in "${args[@]+"${args[@]}"}"; do
  case "$a" in --config=*) has_config=1;; --workdir=*) has_workdir=1;; esac
done
[ $has_config = 1 ] || args+=("--config=configs/toy_gc.py")
[ $has_workdir = 1 ] || args+=("--workdir=runs/toy")
setup="python3 -m venv .venv && .venv/bin/pip install -e ."
runcmd=".venv/bin/python -m gcflow_jax.main ${args[*]}"
if [ $dry = 1 ]; then
  [ -x .venv/bin/python ] || echo "$setup"
  echo "$runcmd"
  exit 0
fi
[ -x .venv/bin/python ] || eval "$setup"
exec .venv/bin/python -m gcflow_jax.main "${args[@]}"
