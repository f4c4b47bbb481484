"""The one training loop every method uses.

`train_and_evaluate(config, workdir) -> TrainState`:
  validate config -> dataset -> (teacher) -> method -> mesh/optimizer ->
  state (own checkpoint > config.init_from > scratch) -> compiled step ->
  loop (log / checkpoint / eval / plots) -> final eval -> metrics.json.

Resume order: the workdir's own newest readable checkpoint; else
`config.init_from` (parameters only, a fresh optimizer); else scratch. Keys
are `fold_in(stream, step)` and batches are a pure function of the step, so a
resumed run replays exactly the randomness and data of an uninterrupted one
and no key is saved. SIGTERM (preemption) saves a checkpoint and returns.
A non-finite metric raises FloatingPointError naming the metric and the step
window; checkpoints are only written after the metrics since the last check
were verified finite, so the newest checkpoint is always a good one.

The run's record: every process appends to `WORKDIR/run_log.jsonl` (its
start step, the means of every log window, the open window at checkpoints;
`run_record`), and the final evaluation writes `metrics.json` atomically
from it: the history of every log step of the run once, the resumes, the
training time summed over processes. Rerunning a finished run (metrics.json
and the newest checkpoint both at `train.steps`) retrains and rewrites
nothing; `reevaluate` evaluates it again into a separate file.
"""

from __future__ import annotations

import functools
import os
import queue
import signal
import threading
import time
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gcflow_jax import checkpoint as ckpt_lib
from gcflow_jax import config_utils, data, methods, metric_writers, plotting
from gcflow_jax import run_record, sharding, teachers
from gcflow_jax.math import ema as ema_lib
from gcflow_jax.models import count_params, make_network
from gcflow_jax.train_state import TrainState

__all__ = ["train_and_evaluate", "make_optimizer", "make_train_step",
           "step_compiler_options", "jit_step",
           "restore_state", "has_checkpoint", "data_shape_of", "build",
           "reevaluate", "restore_teacher", "Preempted"]


class Preempted(Exception):
  """Raised inside the loop when SIGTERM arrived (after saving)."""


def data_shape_of(config):
  return data.data_shape(config.data)


def latest_step(workdir: str) -> int | None:
  """Step of the newest checkpoint in `workdir` (None: no checkpoint)."""
  if not workdir:
    return None
  return ckpt_lib.Checkpointer(workdir, create=False).latest_step()


def has_checkpoint(workdir: str) -> bool:
  return latest_step(workdir) is not None


# ----------------------------------------------------------------- optim --
def make_optimizer(optim_cfg, total_steps: int) -> optax.GradientTransformation:
  """Adam / AdamW / RAdam / Lion with warm-up, optional cosine decay and
  global-norm clipping. Lion's weight decay is taken from the config (0 by
  default, as in the consistency papers; optax's own default is 1e-3)."""
  lr = optim_cfg.lr
  # A warm-up longer than the run (e.g. a smoke variant) is cut to the run.
  warmup = min(optim_cfg.warmup_steps, max(total_steps - 1, 0))
  if optim_cfg.schedule == "cosine":
    sched = optax.warmup_cosine_decay_schedule(
        0.0, lr, max(warmup, 1), max(total_steps, warmup + 2))
  elif warmup > 0:
    sched = optax.linear_schedule(0.0, lr, warmup)
    sched = optax.join_schedules([sched, optax.constant_schedule(lr)],
                                 [warmup])
  else:
    sched = lr
  name = optim_cfg.name
  if name == "adam":
    tx = optax.adam(sched, b1=optim_cfg.b1, b2=optim_cfg.b2,
                    eps=optim_cfg.eps)
    if optim_cfg.weight_decay:
      tx = optax.chain(optax.add_decayed_weights(optim_cfg.weight_decay), tx)
  elif name == "adamw":
    tx = optax.adamw(sched, b1=optim_cfg.b1, b2=optim_cfg.b2,
                     eps=optim_cfg.eps, weight_decay=optim_cfg.weight_decay)
  elif name == "radam":
    tx = optax.radam(sched, b1=optim_cfg.b1, b2=optim_cfg.b2,
                     eps=optim_cfg.eps)
    if optim_cfg.weight_decay:
      tx = optax.chain(optax.add_decayed_weights(optim_cfg.weight_decay), tx)
  elif name == "lion":
    tx = optax.lion(sched, b1=optim_cfg.b1, b2=optim_cfg.b2,
                    weight_decay=optim_cfg.weight_decay)
  else:
    raise ValueError(f"optim.name={name!r} is not one of "
                     "('adam', 'adamw', 'radam', 'lion')")
  if optim_cfg.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip), tx)
  return tx


# ------------------------------------------------------------------ step --
def step_compiler_options() -> Optional[Dict[str, str]]:
  """XLA options the train step is compiled with (`jax.jit(...,
  compiler_options=...)`), for the default backend.

  On CPU, jaxlib 0.10's XLA hands every convolution to YNNPACK by default
  (YNN fusion types: individual dots, reductions, individual convolutions).
  YNNPACK's gradient w.r.t. a 3x3 kernel ran ~10x slower than XLA's own
  (Eigen) convolution on the UNets here (1.0-1.1 s vs 0.10 s at
  64x32x32x64 -> 64, one thread), so the step keeps the default list minus
  convolutions. Numerics are those of an ordinary float32 convolution (only
  the summation order differs; tests/test_train_step_numerics.py). Other
  backends compile with their defaults.
  """
  if jax.default_backend() != "cpu":
    return None
  return _cpu_step_options()


@functools.lru_cache(maxsize=None)
def _cpu_step_options() -> Optional[Dict[str, str]]:
  options = {"xla_cpu_experimental_ynn_fusion_type":
             "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
  # The option exists in the jaxlib releases this was measured with; a
  # release without it rejects it at compile time ("No such compile
  # option"), so probe once on a trivial function and fall back to XLA's
  # defaults instead of failing every run.
  try:
    jax.jit(lambda x: x + 1, compiler_options=options).lower(
        jnp.zeros((), jnp.float32)).compile()
  except Exception:  # pylint: disable=broad-except
    return None
  return options


def once_compiler_options() -> Optional[Dict[str, str]]:
  """XLA options for programs that run once per run (the initial state).

  On CPU, LLVM optimisation level 1 instead of XLA's default 2: the
  initialisation of configs/cifar_gc.py:smoke's UNet compiled in 6.4 s
  instead of 17.7 s (2026-11-30, 2 cores under load) and its values are
  bit-identical (tests/test_train.py::
  test_initial_state_is_bit_identical_to_the_default_compile);
  level 0 was faster still but changed MLP kernels by an ulp (no FMA
  contraction), so it is not used. Runtime does not matter for a program
  that runs once. Other backends compile with their defaults.
  """
  if jax.default_backend() != "cpu":
    return None
  return {"xla_backend_optimization_level": 1}


def jit_step(step_fn, **jit_kwargs):
  """`jax.jit(step_fn, **jit_kwargs)` with the step's compiler options
  (`step_compiler_options`): the one way the trainer and the benchmarks
  compile a train step, so their timings use the same convolution path."""
  return jax.jit(step_fn, compiler_options=step_compiler_options(),
                 **jit_kwargs)


def make_train_step(method, tx, ema_cfg):
  """train_step(state, batch, key) -> (state, metrics).

  `key` is the run's train stream; the step folds in `state.step`, so step k
  always draws the same randomness. The mean of the method's per-example
  loss is differentiated w.r.t. `state.params` only.
  """
  traces = []

  def train_step(state: TrainState, batch, key):
    traces.append(1)  # Python side effect: runs once per trace.
    key = jax.random.fold_in(key, state.step)

    def objective(params):
      per_example, aux = method.loss_fn(
          params, batch, key, step=state.step, ema_params=state.ema_params,
          extras=state.extras)
      return jnp.mean(per_example), aux

    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    step = state.step + 1
    ema_params = ema_lib.update(step, state.ema_params, params,
                                schedule=ema_cfg.schedule,
                                decay=ema_cfg.decay, power=ema_cfg.power,
                                every=ema_cfg.every, start=ema_cfg.start)
    extras = state.extras
    if method.update_extras is not None:
      extras = method.update_extras(step, params, ema_params, extras)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads),
               "param_norm": optax.global_norm(params)}
    metrics.update(aux)
    new_state = state.replace(step=step, params=params,
                              ema_params=ema_params, opt_state=opt_state,
                              extras=extras)
    return new_state, metrics

  train_step.traces = traces
  return train_step


# ----------------------------------------------------------------- build --
class _Run:
  """Everything built from a config, before any step runs."""

  def __init__(self, config, *, load_teacher: bool = True, dataset=None,
               devices=None):
    self.config = config
    self.dataset = dataset or data.make_dataset(config.data, config.seed)
    self.teacher = None
    if load_teacher and methods.needs_teacher(config):
      self.teacher = restore_teacher(config, self.dataset.shape)
    self.method = methods.get(config, self.dataset.shape, self.teacher)
    tx = make_optimizer(config.optim, config.train.steps)
    if self.method.wrap_optimizer is not None:
      tx = self.method.wrap_optimizer(tx)
    self.tx = tx
    self.mesh = sharding.make_mesh(config.mesh.model, devices)
    root = jax.random.key(config.seed)
    # Named streams, split once (STYLE §2.6).
    self.k_init, self.k_train, self.k_eval, self.k_sample = (
        jax.random.fold_in(root, i) for i in range(4))
    # Host array (init_state is traced by eval_shape / jit).
    self._example = self.dataset.global_batch(0, 2)

  def init_state(self) -> TrainState:
    example = {"x": jnp.asarray(self._example)}
    params, extras = self.method.init(self.k_init, example)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      ema_params=jax.tree_util.tree_map(jnp.copy, params),
                      opt_state=self.tx.init(params), extras=extras)

  def initial_state(self) -> TrainState:
    """`init_state()` compiled once (`once_compiler_options`) and
    replicated over the mesh."""
    return jax.jit(self.init_state,
                   out_shardings=sharding.replicated(self.mesh),
                   compiler_options=once_compiler_options())()

  def jit_train_step(self, **jit_kwargs):
    """This run's train step (`make_train_step`) compiled by `jit_step` with
    `jit_kwargs`, as the benchmarks and claims scripts drive it. First
    refuses, with the trainer's error, host minibatch OT on a mesh of
    several CPU devices (`config_utils.check_host_ot`): the step would
    abort inside XLA instead."""
    config_utils.check_host_ot(self.config, self.mesh.size,
                               jax.default_backend())
    return jit_step(make_train_step(self.method, self.tx, self.config.ema),
                    **jit_kwargs)

  def abstract_state(self):
    """Abstract state with replicated shardings (no allocation for params;
    a method's host-side `init` may still load a teacher)."""
    rep = sharding.replicated(self.mesh)
    shapes = jax.eval_shape(self.init_state)
    return jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep),
        shapes)


def build(config, **kwargs) -> _Run:
  return _Run(config, **kwargs)


def restore_state(config, workdir: str, run: Optional[_Run] = None
                  ) -> TrainState:
  """The newest readable checkpoint of a finished/ongoing run of `config`
  (`run`: an already built `_Run` of `config`)."""
  run = run or _Run(config)
  ck = ckpt_lib.Checkpointer(workdir, create=False)
  step, state = ck.restore(run.abstract_state())
  if state is None:
    raise FileNotFoundError(f"no readable checkpoint in "
                            f"{ckpt_lib.checkpoint_dir(workdir)}")
  return state


def restore_teacher(config, data_shape) -> teachers.Teacher:
  """Restores (training it first if needed) the teacher of `config`."""
  tcfg = config.teacher
  if not tcfg.workdir:
    raise ValueError(
        f"method={config.method!r} needs a teacher: set "
        "--config.teacher.workdir=DIR (a finished flow-matching run, or an "
        "empty dir to train one there with --config.teacher.config)")
  teacher_config = config_utils.load_config(tcfg.config)
  if teacher_config.method != "flow_matching":
    raise ValueError(f"teacher.config={tcfg.config!r} has method="
                     f"{teacher_config.method!r}; teachers are "
                     "'flow_matching' velocity fields")
  command = (f"`python -m gcflow_jax.main --config={tcfg.config} "
             f"--workdir={tcfg.workdir}`")
  step = latest_step(tcfg.workdir)
  if step is None:
    if not tcfg.train_if_missing:
      raise FileNotFoundError(
          f"teacher.workdir={tcfg.workdir!r} has no checkpoint and "
          f"teacher.train_if_missing=False; train it with {command}")
    print(f"[teacher] no checkpoint in {tcfg.workdir}: training "
          f"{tcfg.config} there first", flush=True)
    train_and_evaluate(teacher_config, tcfg.workdir)
  elif step < teacher_config.train.steps:
    # An interrupted teacher run: distilling from it would silently give a
    # different (worse) teacher than the config names.
    if not tcfg.train_if_missing:
      raise ValueError(
          f"teacher.workdir={tcfg.workdir!r} stops at step {step} of "
          f"{tcfg.config}'s train.steps={teacher_config.train.steps} (an "
          f"interrupted run); finish it with {command} (it resumes), or set "
          "teacher.train_if_missing=True to finish it here")
    print(f"[teacher] {tcfg.workdir} stops at step {step} of "
          f"{teacher_config.train.steps}: resuming {tcfg.config} there "
          "first", flush=True)
    train_and_evaluate(teacher_config, tcfg.workdir)
  state = restore_state(teacher_config, tcfg.workdir)
  _, apply_fn, _ = make_network(teacher_config.model,
                                data_shape_of(teacher_config), 1)
  if tuple(data_shape_of(teacher_config)) != tuple(data_shape):
    raise ValueError(
        f"teacher data shape {data_shape_of(teacher_config)} != "
        f"student data shape {tuple(data_shape)}: use a teacher config "
        "with the same data.name/image_size/channels")
  params = state.ema_params if tcfg.use_ema else state.params
  return teachers.Teacher(apply_fn=apply_fn, params=params,
                 interp=teacher_config.interp.name, config=teacher_config,
                 workdir=os.path.abspath(tcfg.workdir),
                 step=int(state.step))


def _init_from(run: _Run, path: str, state: TrainState) -> TrainState:
  """Warm start: params/ema/extras from another run (same architecture)."""
  ck = ckpt_lib.Checkpointer(path.rstrip("/").removesuffix("/checkpoints"),
                             create=False)
  step, other = ck.restore(run.abstract_state())
  if other is None:
    raise FileNotFoundError(f"init_from={path!r} has no readable checkpoint")
  print(f"initialised from {path} (its step {step}); optimizer reset",
        flush=True)
  return state.replace(params=other.params, ema_params=other.ema_params,
                       opt_state=run.tx.init(other.params),
                       extras=other.extras)


# ------------------------------------------------------------------ eval --
def generate(run: _Run, params, extras, num: int, steps: int,
             key: jax.Array) -> np.ndarray:
  """`num` samples of `run.method` with `params` and `steps` sampling steps,
  as a host array, drawn in chunks of `eval.batch_size` (one compile per
  chunk size). E.g. `generate(run, state.ema_params, state.extras, 1000, 2,
  jax.random.key(0))`; `steps` may differ from the training config (flow
  maps, consistency models: chosen after training)."""
  bs = min(run.config.eval.batch_size, num)
  fn = jax.jit(run.method.sample_fn, static_argnums=(2, 3))
  out = []
  for i in range(-(-num // bs)):
    x = fn(params, jax.random.fold_in(key, i), bs, steps, extras)
    out.append(np.asarray(jax.device_get(x)))
  return np.concatenate(out)[:num]


def evaluate_state(run: _Run, state: TrainState, workdir: str,
                   tag: str) -> Dict[str, float]:
  """Samples with the eval params and scores them with the evaluation
  library; writes a PNG when `train.plot`."""
  config = run.config
  method = run.method
  params = (method.eval_params(state.params, state.ema_params)
            if method.eval_params is not None else state.ema_params)
  steps = config.eval.sample_steps or method.default_sample_steps
  n = config.eval.num_samples
  t0 = time.time()
  samples = generate(run, params, state.extras, n, steps,
                     jax.random.fold_in(run.k_eval, int(state.step)))
  sample_time = time.time() - t0
  reference = run.dataset.reference(n)
  scores: Dict[str, float] = {"sample_steps": float(steps),
                              "sample_sec": sample_time}
  if not np.isfinite(samples).all():
    scores["nonfinite_samples"] = float(np.mean(
        ~np.isfinite(samples.reshape(n, -1)).all(1)))
    print(f"WARNING: {scores['nonfinite_samples']:.1%} of the samples are "
          "not finite; metrics skipped", flush=True)
  elif config.eval.metrics:
    if samples.ndim == 4:
      # Images are scored as the standard protocol does: clipped to [-1, 1]
      # (then quantised by the metric); report how much was clipped.
      scores["clipped_frac"] = float(np.mean(np.abs(samples) > 1.0))
      samples = np.clip(samples, -1.0, 1.0)
    from gcflow_jax import evaluation  # pylint: disable=g-import-not-at-top
    # Reference statistics depend only on the data: cache them per run.
    kwargs = {"reference_cache": os.path.join(
                  workdir, f"reference_stats_{{extractor}}_{n}.npz"),
              "batch_size": config.eval.batch_size}
    if config.eval.inception_weights:
      kwargs["inception_weights"] = config.eval.inception_weights
    scores.update(evaluation.evaluate(samples, reference,
                                      metrics=list(config.eval.metrics),
                                      **kwargs))
  if config.train.plot and jax.process_index() == 0:
    plotting.save_samples_plot(
        os.path.join(workdir, f"samples_{tag}.png"), samples[:2000],
        reference[:2000], title=f"{config.method} {tag} ({steps} steps)")
  return scores


def reevaluate(config, workdir: str) -> Dict[str, Any]:
  """Evaluates the final state of the run finished in `workdir` again (e.g.
  with other `eval.*` settings), appending one entry to
  `WORKDIR/metrics_reevaluated.json` and writing
  `samples_reevaluated<N>.png`; metrics.json, the run log and the
  checkpoints are left as they are. Returns the entry."""
  sharding.initialize(config.distributed)
  # No backend: the host-OT check is about the train step, which this does
  # not run.
  config_utils.validate(config, jax.device_count(), jax.process_count())
  workdir = os.path.abspath(workdir)
  step = latest_step(workdir)
  if step is None:
    raise FileNotFoundError(
        f"--reevaluate: no checkpoint in {ckpt_lib.checkpoint_dir(workdir)}; "
        "it re-evaluates a finished run (train it first without "
        "--reevaluate)")
  if step != config.train.steps:
    raise ValueError(
        f"--reevaluate needs a finished run: {workdir} stops at checkpoint "
        f"step {step} of train.steps={config.train.steps}; rerun without "
        "--reevaluate to finish it (it resumes)")
  run = _Run(config)
  state = restore_state(config, workdir, run)
  path = os.path.join(workdir, run_record.REEVALUATED_NAME)
  previous = run_record.read_json(path) or {}
  entries = list(previous.get("reevaluations", []))
  n = len(entries) + 1
  scores = evaluate_state(run, state, workdir, f"reevaluated{n}")
  entry = {"reevaluation": n, "time": run_record.utc_now(),
           "step": int(state.step), "eval_config": config.eval.to_dict(),
           **{f"eval/{k}": v for k, v in scores.items()}}
  if jax.process_index() == 0:
    run_record.write_json_atomic(
        path, {"record": run_record.RECORD_NAME,
               "reevaluations": entries + [entry]})
    print("reevaluated: " + metric_writers.format_metrics(scores),
          flush=True)
    print(f"written to {path} (entry {n}; {run_record.RECORD_NAME} "
          "unchanged)", flush=True)
  return entry


# ------------------------------------------------------------------ loop --
class _Prefetch:
  """Builds host batches for upcoming steps in a background thread.

  With `threaded=False` each batch is built on the caller's thread when it
  is asked for. The trainer does that for data drawn by a jitted JAX
  sampler (the toys): it is cheap, and a second thread launching XLA work
  while the step runs a host `pure_callback` (exact OT) can deadlock on a
  one-core machine (the launch waits for XLA's only worker thread while
  holding the GIL, the callback on that thread waits for the GIL).
  """

  def __init__(self, fn, start: int, stop: int, depth: int = 2,
               threaded: bool = True):
    self._fn = None if threaded else fn
    self._q: "queue.Queue" = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._t = None
    if not threaded:
      return

    def work():
      for s in range(start, stop):
        if self._stop.is_set():
          return
        try:
          item = (s, fn(s), None)
        except Exception as e:  # pylint: disable=broad-except
          item = (s, None, e)
        while not self._stop.is_set():
          try:
            self._q.put(item, timeout=0.1)
            break
          except queue.Full:
            continue

    self._t = threading.Thread(target=work, daemon=True)
    self._t.start()

  def get(self, step: int):
    if self._fn is not None:
      return self._fn(step)
    s, batch, err = self._q.get()
    if err is not None:
      raise err
    assert s == step, (s, step)
    return batch

  def close(self):
    self._stop.set()


def _check_finite(pending, lo: int, hi: int) -> Dict[str, np.ndarray]:
  """Host values [steps] of each metric of steps (lo, hi]; raises on any
  non-finite one."""
  host = jax.device_get(pending)
  values = {}
  for k in host[0]:
    vals = np.asarray([m[k] for m in host], np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
      first = lo + 1 + int(np.argmax(bad))
      raise FloatingPointError(
          f"non-finite metric {k!r} at step {first} (window steps "
          f"{lo + 1}..{hi}); training stopped, the newest checkpoint (step "
          f"<= {lo}) is the last good one")
    values[k] = vals
  return values


def _finished_record(workdir: str, steps: int) -> Optional[str]:
  """Path of the record of a run finished at `steps` (its metrics.json and
  newest checkpoint both at `steps`), else None."""
  path = os.path.join(workdir, run_record.RECORD_NAME)
  record = run_record.read_json(path)
  if (isinstance(record, dict) and record.get("steps") == steps
      and latest_step(workdir) == steps):
    return path
  return None


def train_and_evaluate(config, workdir: str) -> TrainState:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint).

  A run already finished in `workdir` is not retrained or re-evaluated: its
  record is left as it is and its final state is returned (`reevaluate`
  evaluates it again into a separate file).
  """
  sharding.initialize(config.distributed)
  config_utils.validate(config, jax.device_count(), jax.process_count(),
                        jax.default_backend())
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  record_path = _finished_record(workdir, config.train.steps)
  if record_path is not None:
    print(f"run complete: {workdir} finished all {config.train.steps} steps; "
          f"its record is {record_path} (nothing retrained or rewritten; "
          f"--reevaluate evaluates it again into "
          f"{run_record.REEVALUATED_NAME})", flush=True)
    return restore_state(config, workdir)
  run = _Run(config)
  print(f"data: {run.dataset.source}; shape {run.dataset.shape}", flush=True)
  if run.teacher is not None:
    print(f"teacher: {run.teacher.workdir}", flush=True)

  rep = sharding.replicated(run.mesh)
  bsh = sharding.batch_sharding(run.mesh)
  abstract = run.abstract_state()
  ck = ckpt_lib.Checkpointer(workdir, config.train.keep_checkpoints)
  start, state = ck.restore(abstract)
  if state is not None:
    print(f"resumed from checkpoint step {start} in {ck.directory}",
          flush=True)
  else:
    state = run.initial_state()
    if config.init_from:
      state = _init_from(run, config.init_from, state)
    start = 0
  num_params = count_params(state.params)
  print(f"method {config.method}: {num_params:,} parameters "
        f"({jax.device_count()} devices, {jax.process_count()} processes)",
        flush=True)

  writer = metric_writers.create_writer(workdir, just_logging=not is_main)
  if start == 0:
    writer.write_hparams({"method": config.method, "data": config.data.name,
                          "num_params": num_params,
                          "data_source": run.dataset.source})
  raw_step = make_train_step(run.method, run.tx, config.ema)
  step_fn = jit_step(raw_step, in_shardings=(rep, {"x": bsh}, rep),
                     out_shardings=(rep, rep), donate_argnums=(0,))

  total = config.train.steps
  pid, pcount = jax.process_index(), jax.process_count()
  bs = config.train.batch_size
  prefetch = _Prefetch(
      lambda s: run.dataset.local_batch(s, bs, pid, pcount), start, total,
      threaded=not run.dataset.jax_sampled)
  progress = metric_writers.Progress(total, start)

  preempted = threading.Event()
  old_handler = None
  if threading.current_thread() is threading.main_thread():
    old_handler = signal.signal(signal.SIGTERM,
                                lambda *_: preempted.set())

  def preempt_requested(step_now) -> bool:
    """SIGTERM seen. With several processes the decision is agreed at log
    steps (an all-gather), so every host saves the same step together."""
    if jax.process_count() == 1:
      return preempted.is_set()
    if step_now % config.train.log_every:
      return False
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    flags = multihost_utils.process_allgather(
        np.int32(preempted.is_set()))
    return bool(np.max(flags))

  def save(step_now, st):
    if ck.save(step_now, st):
      print(f"checkpoint saved: step {step_now}", flush=True)

  # The run's record across processes (see run_record): this process's
  # start, the means at every log step, the open log window at checkpoints.
  run_log = run_record.RunLog(workdir, write=is_main)
  window = run_log.begin(start)
  pending = []
  checked_upto = start
  t_train = time.time()
  step = start
  final_scores: Dict[str, float] = {}
  try:
    compile_t = time.time()
    for step in range(start, total):
      batch = {"x": sharding.make_global_batch(run.mesh, prefetch.get(step))}
      state, metrics = step_fn(state, batch, run.k_train)
      if step == start:
        jax.block_until_ready(metrics)
        print(f"first step (compile + run): {time.time() - compile_t:.1f}s",
              flush=True)
        progress = metric_writers.Progress(total, start + 1)  # skip compile
      pending.append(metrics)
      done = step + 1
      log_now = done % config.train.log_every == 0 or done == total
      ckpt_now = done % config.train.checkpoint_every == 0 or done == total
      eval_now = (config.train.eval_every and
                  done % config.train.eval_every == 0 and done != total)
      stop = preempt_requested(done)
      if log_now or ckpt_now or eval_now or stop:
        window.add(_check_finite(pending, checked_upto, done))
        pending, checked_upto = [], done
        if log_now:
          means = window.pop_means()
          info = progress.report(done)
          print(metric_writers.Progress.line(done, total, info,
                                             means["loss"]), flush=True)
          writer.write_scalars(done, {**means,
                                      "steps_per_sec": info["steps_per_sec"]})
          run_log.append("log", done, metrics=means,
                         train_sec=time.time() - t_train)
        if ckpt_now or stop:
          if window.n:  # a checkpoint inside a log window: keep its sums
            run_log.append("window", done, n=window.n, sums=window.sums,
                           train_sec=time.time() - t_train)
          save(done, state)
        if stop:
          raise Preempted()
        if eval_now:
          scores = evaluate_state(run, state, workdir, f"step{done}")
          writer.write_scalars(done, {f"eval/{k}": v
                                      for k, v in scores.items()})
    run_log.append("trained", int(state.step),
                   train_sec=time.time() - t_train)
    if len(raw_step.traces) > 1:
      raise RuntimeError(f"train step traced {len(raw_step.traces)} times; "
                         "something changes shape/dtype across steps")
    final_scores = evaluate_state(run, state, workdir, "final")
    writer.write_scalars(total, {f"eval/{k}": v
                                 for k, v in final_scores.items()})
    if is_main:
      summary = run_log.summary()
      history = summary.history
      result = {"method": config.method, "data": config.data.name,
                "data_source": run.dataset.source, "num_params": num_params,
                "steps": int(state.step), "devices": jax.device_count(),
                # Summed over every process of the run; `resumes` lists the
                # processes after the first (step, UTC time).
                "train_sec": summary.train_sec, "resumes": summary.resumes,
                "final_train_loss": history[-1]["loss"] if history else None,
                **{f"eval/{k}": v for k, v in final_scores.items()},
                # Means over each log window, every log step of the run
                # once (from run_log.jsonl); full curves in TensorBoard.
                "history": history}
      record_path = os.path.join(workdir, run_record.RECORD_NAME)
      run_record.write_json_atomic(record_path, result)
      run_log.append("final", int(state.step), scores=final_scores)
      print("final: " + metric_writers.format_metrics(
          {k: v for k, v in final_scores.items()}), flush=True)
      print(f"record: {record_path}", flush=True)
  except Preempted:
    print(f"SIGTERM: checkpoint saved at step {int(state.step)}; exiting",
          flush=True)
    raise
  finally:
    prefetch.close()
    writer.flush()
    ck.close()
    if old_handler is not None:
      signal.signal(signal.SIGTERM, old_handler)
  return state
