"""Launchers: check the commands their --dry-run prints."""

import os
import subprocess

from gcflow_jax import config_utils


def _run(*args):
  proc = subprocess.run(["bash", *args], capture_output=True, text=True,
                        cwd=config_utils.repo_root(), timeout=60)
  assert proc.returncode == 0, proc.stderr
  return proc.stdout


FIRST = "-m gcflow_jax.main --config=configs/toy_gc.py --workdir=runs/toy"


def test_local_dry_run_defaults_to_the_readme_first_command():
  # The README's first command, the launcher's default and the flagship
  # (iCT, GC coupling, mu = 0.5) are one and the same; flow matching is
  # one flag away.
  out = _run("launch/local.sh", "--dry-run")
  assert FIRST in out
  with open(os.path.join(config_utils.repo_root(), "README.md")) as f:
    readme = f.read()
  first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
  assert FIRST in first_block
  c = config_utils.load_config("configs/toy_gc.py")
  assert (c.method, c.ict.coupling, c.ict.gc_mu) == ("ict", "gc", 0.5)
  out = _run("launch/local.sh", "--dry-run", "--config=configs/toy_fm.py")
  assert "--config=configs/toy_fm.py --workdir=runs/toy" in out
  assert "toy_gc" not in out


def test_tpu_pod_dry_run():
  out = _run("launch/tpu_pod.sh", "run", "--name=gc", "--zone=z1",
             "--workdir=gs://b/r", "--dry-run", "--",
             "--config=configs/cifar_gc.py")
  assert "gcloud compute tpus tpu-vm ssh gc --zone=z1 --worker=all" in out
  assert "--config.distributed.initialize=True" in out
  assert "--config=configs/cifar_gc.py" in out and "gs://b/r" in out
  out = _run("launch/tpu_pod.sh", "create", "--name=gc", "--zone=z1",
             "--type=v4-64", "--dry-run")
  assert "tpu-vm create gc --zone=z1 --accelerator-type=v4-64" in out
  out = _run("launch/tpu_pod.sh", "delete", "--name=gc", "--zone=z1",
             "--dry-run")
  assert "tpu-vm delete gc --zone=z1 --quiet" in out


def test_slurm_dry_run_one_process_per_gpu():
  out = _run("launch/slurm_gpu.sh", "--nodes=2", "--gpus_per_node=4",
             "--workdir=/shared/r", "--dry-run", "--",
             "--config=configs/cifar_gc.py")
  assert "#SBATCH --nodes=2" in out and "#SBATCH --ntasks-per-node=4" in out
  assert "--config.distributed.num_processes=8" in out
  assert "process_id=$SLURM_PROCID" in out
  assert "CUDA_VISIBLE_DEVICES=$SLURM_LOCALID" in out
  assert "coordinator_address=$COORD" in out
  per_node = _run("launch/slurm_gpu.sh", "--nodes=3", "--per_node",
                  "--workdir=/r", "--dry-run")
  assert "--config.distributed.num_processes=3" in per_node
  assert "CUDA_VISIBLE_DEVICES" not in per_node


def test_missing_required_argument_fails():
  proc = subprocess.run(["bash", "launch/slurm_gpu.sh", "--dry-run"],
                        capture_output=True, text=True,
                        cwd=config_utils.repo_root())
  assert proc.returncode == 2 and "--workdir" in proc.stderr
