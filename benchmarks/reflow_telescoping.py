r"""The telescoping total-variation bound of paper 003 on the 2-D checkerboard:
per-interval discrepancies vs the final-time distance.

python benchmarks/reflow_telescoping.py [--variants=piecewise,piecewise_align]
    [--seed=0] [--steps=600] [--n=200000] [--bins=50] [--n_kl=20000]
    [--teacher_steps=64] [--tags=variant:suffix,...] [--set=k=v ...]

Bound (docs/reflow_marginal_alignment.md §6): with q_k the student's
marginal after k intervals and ε_k = TV(Ψ_k # p_{t_k}, p_{t_{k+1}}) the
student's error on interval k applied to the *teacher's* marginal,
    TV(q_K, p_1) ≤ Σ_k ε_k ≤ Σ_k √(KL_k / 2)   (Pinsker).

For each K = 2 student (piecewise reflow without / with the regulariser;
reused from benchmarks/reflow_quality.py's runs/bench_reflow/ if present,
else trained for --steps steps):
* teacher marginals p_t: the teacher ODE (RK4, --teacher_steps steps per
  interval) from two independent noise sets A (fed to the student) and B
  (reference);
* "sampler" maps Ψ_k: the K-step Euler sampler's step on interval k;
  "ODE" maps: the student ODE solved accurately (RK4, 32 steps) on
  [t_k, τ_k] (τ_{K-1} = 1 − ε, the regulariser's clamp);
* ε_k and the final TV from 2-D histograms (bins × bins on the reference's
  0.05–99.95% box plus one overflow cell). Binning is a push-forward, so a
  histogram TV never exceeds the true TV of the two distributions; finite
  samples add the upward bias shown as the `floor` (TV between A and B
  teacher samples of the same marginal);
* KL_k = mean κ over the first --n_kl points of A (the regulariser's
  estimator, RK4 32 steps, exact divergence), Pinsker term √(max(KL_k, 0)/2).
Prints the table and writes results/reflow_telescoping.json.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top
import reflow_quality as rq  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, train  # noqa: E402
from gcflow_jax.math import interpolants as interp_lib  # noqa: E402
from gcflow_jax.math import ode  # noqa: E402
from gcflow_jax.methods import reflow  # noqa: E402
from gcflow_jax.models import make_network  # noqa: E402


def hist_tv(x, y, box, bins):
  """Plug-in TV between two 2-D sample sets on a bins×bins grid + overflow.
  """
  def h(z):
    inside = np.all((z >= box[0]) & (z < box[1]), axis=1)
    hh, _, _ = np.histogram2d(z[inside, 0], z[inside, 1], bins=bins,
                              range=[[box[0][0], box[1][0]],
                                     [box[0][1], box[1][1]]])
    return np.append(hh.ravel(), (~inside).sum()) / len(z)
  return 0.5 * float(np.abs(h(x) - h(y)).sum())


def box_of(ref):
  lo = np.percentile(ref, 0.05, axis=0)
  hi = np.percentile(ref, 99.95, axis=0)
  pad = 0.02 * (hi - lo)
  return lo - pad, hi + pad


def load_or_train(variant, seed, steps, sets=(), tag=""):
  path = rq.student_path("checkerboard", variant + tag, seed)
  spec = rq.CONFIGS["checkerboard"][variant]
  if not os.path.exists(path):
    print(f"training {variant} (seed {seed}, {steps} steps)", flush=True)
    rq.run_one(spec, "checkerboard", seed, steps, 0, list(sets),
               save_to=path, num_eval=1000)
  config = config_utils.load_config(spec)
  config.unlock()
  config.seed = seed
  config.train.steps = steps
  rq._apply_sets(config, sets)  # pylint: disable=protected-access
  config.lock()
  run = train.build(config)
  template = jax.eval_shape(run.init_state).params
  with open(path, "rb") as f:
    params = serialization.from_bytes(template, f.read())
  return config, run, params


def analyse(config, run, params, n, bins, key, n_kl=20000,
            teacher_steps=64):
  r = config.reflow
  k_int = r.num_intervals
  knots = reflow.make_knots(k_int)
  ends = reflow.make_align_ends(knots, r.align_eps)
  teacher = run.teacher
  interp = interp_lib.get(teacher.interp)
  _, apply_fn, _ = make_network(config.model, (2,), 1)
  tvel = lambda x, t: teacher.velocity(teacher.params, x, t)
  score = lambda x, t: reflow.score_from_velocity(interp, tvel(x, t), x, t)
  # Histogram samples need no log-density; only the n_kl points of the κ
  # estimate carry the teacher's Δ^T (exact divergence, same solve).
  seg_fn = jax.jit(lambda x: reflow.teacher_segments(
      tvel, x, knots, ends, teacher_steps, "rk4", track_logp=False))
  seg_logp_fn = jax.jit(lambda x: reflow.teacher_segments(
      tvel, x, knots, ends, teacher_steps, "rk4", track_logp=True))
  k_a, k_b = jax.random.split(key)
  x0_a = jax.random.normal(k_a, (n, 2))
  segs_a = seg_fn(x0_a)
  segs_b = seg_fn(jax.random.normal(k_b, (n, 2)))
  m = min(n, n_kl)
  segs_kl = seg_logp_fn(x0_a[:m])
  sv = lambda x, t: apply_fn(params, x, jnp.broadcast_to(t, x.shape[:1]))
  rows, sum_samp, sum_ode, sum_pinsker = [], 0.0, 0.0, 0.0
  for k in range(k_int):
    x_k = segs_a["states"][k]
    # Sampler step (Euler, one step per interval) vs p_{t_{k+1}}.
    y_s = ode.integrate(sv, x_k, jnp.asarray([knots[k], knots[k + 1]]),
                        "euler")
    ref_e = np.asarray(segs_b["states"][k + 1])
    tv_s = hist_tv(np.asarray(y_s), ref_e, box_of(ref_e), bins)
    # Accurate student ODE on [t_k, τ_k] vs p_{τ_k}.
    y_o = jax.jit(lambda x, a=knots[k], b=ends[k]: ode.integrate(
        sv, x, ode.uniform_grid(a, b, 32), "rk4"))(x_k)
    ref_t = np.asarray(segs_b["align_states"][k])
    box_t = box_of(ref_t)
    tv_o = hist_tv(np.asarray(y_o), ref_t, box_t, bins)
    floor = hist_tv(np.asarray(segs_a["align_states"][k]), ref_t, box_t,
                    bins)
    # The regulariser's KL estimate (accurate solve) on n_kl points.
    align = reflow.make_alignment_fn(lambda p, x, t: apply_fn(p, x, t),
                                     score, steps=32, method="rk4")
    kl, _ = jax.jit(lambda p: align(
        p, segs_kl["states"][k], jnp.full((m,), knots[k]),
        jnp.full((m,), ends[k]), segs_kl["align_states"][k],
        segs_kl["delta_logp"][k]))(params)
    kl = float(jnp.mean(kl))
    pinsker = float(np.sqrt(max(kl, 0.0) / 2))
    sum_samp += tv_s
    sum_ode += tv_o
    sum_pinsker += pinsker
    rows.append({"interval": f"{k}: [{knots[k]:.2f},{knots[k + 1]:.2f}]",
                 "tv_sampler": tv_s, "tv_ode": tv_o, "kl_kappa": kl,
                 "pinsker": pinsker, "floor": floor})
  # Final time: the K-step sampler vs p_1; the ODE over [0, 1 − ε] vs p_τ.
  x0 = segs_a["states"][0]
  fin_s = ode.integrate(sv, x0, jnp.asarray(reflow.sample_grid(knots, k_int)),
                        "euler")
  ref1 = np.asarray(segs_b["states"][k_int])
  tv_fs = hist_tv(np.asarray(fin_s), ref1, box_of(ref1), bins)
  floor1 = hist_tv(np.asarray(segs_a["states"][k_int]), ref1, box_of(ref1),
                   bins)
  fin_o = jax.jit(lambda x: ode.integrate(
      sv, x, ode.uniform_grid(0.0, float(ends[-1]), 32 * k_int), "rk4"))(x0)
  ref_t = np.asarray(segs_b["align_states"][k_int - 1])
  tv_fo = hist_tv(np.asarray(fin_o), ref_t, box_of(ref_t), bins)
  rows.append({"interval": "final", "tv_sampler": tv_fs, "tv_ode": tv_fo,
               "floor": floor1})
  rows.append({"interval": "sum over intervals", "tv_sampler": sum_samp,
               "tv_ode": sum_ode, "pinsker": sum_pinsker})
  return rows


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--variants", default="piecewise,piecewise_align")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--steps", type=int, default=600)
  ap.add_argument("--n", type=int, default=200000)
  ap.add_argument("--bins", type=int, default=50)
  ap.add_argument("--n_kl", type=int, default=20000,
                  help="points for the κ (KL) estimate per interval")
  ap.add_argument("--teacher_steps", type=int, default=64,
                  help="teacher RK4 steps per interval (reference marginals)")
  ap.add_argument("--name", default="reflow_telescoping")
  ap.add_argument("--tags", default="",
                  help="variant:tag,... student file suffixes (reflow_"
                       "quality.py --tag), e.g. piecewise_align:_ab32")
  ap.add_argument("--set", action="append", default=[],
                  help="config override k=v, as in reflow_quality.py (use "
                       "the same ones so the students are the same)")
  args = ap.parse_args()
  all_rows = []
  tags = dict(t.split(":") for t in args.tags.split(",") if t)
  for variant in args.variants.split(","):
    config, run, params = load_or_train(variant, args.seed, args.steps,
                                        args.set, tags.get(variant, ""))
    load0 = os.getloadavg()[0]
    rows = analyse(config, run, params, args.n, args.bins,
                   jax.random.key(1000 + args.seed), args.n_kl,
                   args.teacher_steps)
    for r in rows:
      r["variant"] = variant + tags.get(variant, "")
      r["K"] = config.reflow.num_intervals
      r["loadavg_1m"] = [load0, os.getloadavg()[0]]
    all_rows += rows
    print()
    print(f"{variant} (K = {config.reflow.num_intervals}, seed {args.seed})")
    print_table(rows, ["interval", "tv_sampler", "tv_ode", "kl_kappa",
                       "pinsker", "floor"])
    fin = [r for r in rows if r["interval"] == "final"][0]
    tot = [r for r in rows if r["interval"] == "sum over intervals"][0]
    print(f"bound holds (sampler): {fin['tv_sampler']:.4f} <= "
          f"{tot['tv_sampler']:.4f}: {fin['tv_sampler'] <= tot['tv_sampler']}"
          f"; (ODE) {fin['tv_ode']:.4f} <= {tot['tv_ode']:.4f}: "
          f"{fin['tv_ode'] <= tot['tv_ode']}", flush=True)
  path = write_result(args.name, all_rows, {
      "n": args.n, "n_kl": args.n_kl, "bins": args.bins, "seed": args.seed,
      "teacher_steps": args.teacher_steps, "tags": tags,
      "train_steps": args.steps, "overrides": args.set,
      "note": "histogram TVs (upward finite-sample bias ~ floor); Pinsker "
              "from the regulariser's KL estimate with an accurate solve"})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
