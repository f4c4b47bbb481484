r"""GCM latent matching on digits / MNIST for latent dimensions 256 and 50
(paper 000; benchmark 4 of its issue).

python benchmarks/gcm_latent.py [--datasets=digits,mnist] [--latents=256,50]
    [--digits_steps=1400] [--mnist_steps=1050] [--eval_every=350]

* digits: configs/digits_latent_gcm.py as is (8×8×1 sklearn digits, conv
  decoder g, f_t an MLP on the flattened image, minibatch OT, T_f/T_g =
  50/20), scored with the evaluation library's `fd_digits` (Fréchet
  distance in the offline digits classifier's features, 1000 samples vs
  1000 reference images).
* mnist: configs/mnist_latent_gcm.py on the 10k official MNIST test images
  (`data.offline_fallback='mnist_test'`, offline), reduced to what 2 CPU
  cores can train in minutes: f an MLP (512, 512, 512) on the flattened
  image instead of the SongUNet, and the MLP latent decoder (512, 512) for
  g instead of the conv decoder (a conv decoder step costs ~0.6 CPU-s here);
  lr 1e-3. Scored with `fd_mnist` (1000 samples).

Each run logs ‖g(z) − f_0(g(z))‖² (summed over pixels, window mean) to show
whether f_0 -> id. For scale the script also scores a second set of real
images against the reference (the floor) and the untrained generator (step
0). Writes results/gcm_latent.json.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top
from gcm_moons import load, train_curve  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import evaluation, train  # noqa: E402

SETUPS = {
    "digits": ("configs/digits_latent_gcm.py", "fd_digits", {}),
    "mnist": ("configs/mnist_latent_gcm.py", "fd_mnist", {
        "data.offline_fallback": "mnist_test", "model.name": "mlp",
        "model.mlp.hidden": (512, 512, 512), "gcm.generator": "mlp",
        "gcm.generator_hidden": (512, 512), "optim.lr": 1e-3,
        "ema.decay": 0.99}),
}


def image_score(metric: str, reference: np.ndarray):
  def score(samples):
    if not np.isfinite(samples).all():
      return {metric: float("nan")}
    samples = np.clip(samples, -1.0, 1.0)
    return {metric: float(evaluation.evaluate(samples, reference,
                                              metrics=[metric])[metric])}
  return score


def main():
  load_start = os.getloadavg()  # shared host: report the contention
  ap = argparse.ArgumentParser()
  ap.add_argument("--datasets", default="digits,mnist")
  ap.add_argument("--latents", default="256,50")
  ap.add_argument("--digits_steps", type=int, default=1400)
  ap.add_argument("--mnist_steps", type=int, default=1050)
  ap.add_argument("--eval_every", type=int, default=350)
  ap.add_argument("--num_samples", type=int, default=1000)
  args = ap.parse_args()
  rows, table = [], []
  for name in args.datasets.split(","):
    spec, metric, over = SETUPS[name]
    steps = args.digits_steps if name == "digits" else args.mnist_steps
    floor = None
    for latent in (int(v) for v in args.latents.split(",")):
      cfg = load(spec, {**over, "gcm.latent_dim": latent,
                        "train.steps": steps})
      run = train.build(cfg)
      ref = np.asarray(run.dataset.reference(args.num_samples))
      score = image_score(metric, ref)
      if floor is None:
        # A disjoint batch of real training images (same source).
        real = np.asarray(run.dataset.global_batch(7, args.num_samples))
        floor = score(real)[metric]
      print(f"== {name} latent_dim={latent} ({run.dataset.source})",
            flush=True)
      curve = train_curve(cfg, args.eval_every, score, args.num_samples)
      rows += [{"dataset": name, "latent_dim": latent, **r} for r in curve]
      table.append({"dataset": name, "latent_dim": latent, "steps": steps,
                    "metric": metric, "initial": curve[0][metric],
                    "final": curve[-1][metric],
                    "real_vs_ref": floor,
                    "f0_err_first": curve[1]["f0_identity_err"],
                    "f0_err_last": curve[-1]["f0_identity_err"],
                    "train_sec": curve[-1]["train_sec"],
                    "data": run.dataset.source})
  print()
  cols = ["dataset", "latent_dim", "steps", "metric", "initial", "final",
          "real_vs_ref", "f0_err_first", "f0_err_last", "train_sec"]
  print_table(table, cols)
  path = write_result("gcm_latent", rows, {
      "table": table, "load_average": {"start": load_start,
                                       "end": os.getloadavg()}})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
