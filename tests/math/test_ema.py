"""EMA schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax.math import ema


class _PublishedEMA:
  """The update rule of the GC paper's EMA (`ema_pytorch.EMA` as its code
  uses it: `update()` after every optimizer step), transliterated on
  scalars: the oracle the JAX schedule must reproduce call for call."""

  def __init__(self, beta, update_after_step, update_every, power=2 / 3):
    self.beta, self.after, self.every, self.power = (
        beta, update_after_step, update_every, power)
    self.step, self.initted, self.value = 0, False, None

  def _decay(self):
    epoch = max(self.step - self.after - 1, 0)
    if epoch <= 0:
      return 0.0
    return min(max(1 - (1 + epoch) ** -self.power, 0.0), self.beta)

  def update(self, online, ema_value):
    step = self.step
    self.step += 1
    if step % self.every != 0:
      return ema_value
    if step <= self.after:
      return online
    if not self.initted:
      ema_value, self.initted = online, True
    d = self._decay()
    return d * ema_value + (1 - d) * online


def _run(schedule, start, every, calls, decay=0.9999):
  # Online parameters that differ at every call (so a copy, a skipped call
  # or a wrong decay all change the EMA).
  online = np.cos(np.arange(calls) * 0.7) + np.arange(calls) * 0.01
  step_fn = jax.jit(lambda s, e, p: ema.update(
      s, e, p, schedule=schedule, decay=decay, every=every, start=start))
  e = jnp.asarray(123.0, jnp.float64)  # the trainer's initial copy
  out = []
  for c in range(calls):
    e = step_fn(jnp.int32(c + 1), e, jnp.asarray(online[c]))
    out.append(float(e))
  return online, np.asarray(out)


@pytest.mark.parametrize("start", [0, 12, 20])
def test_warmup_matches_published_ema_call_for_call(x64, start):
  calls = start + 60
  online, ours = _run("warmup", start, 5, calls)
  ref = _PublishedEMA(0.9999, start, 5)
  v, want = 123.0, []
  for c in range(calls):
    v = ref.update(online[c], v)
    want.append(v)
  np.testing.assert_allclose(ours, want, rtol=1e-12)


def test_warmup_indexing_pinned(x64):
  """start = 0, every = 5: copies at calls 0 and 5, untouched in between,
  then d = 1 - (1 + c)^(-2/3) at calls c = 10, 15, ..."""
  online, e = _run("warmup", 0, 5, 16)
  assert e[0] == online[0] and e[4] == online[0]
  assert e[5] == online[5] and e[9] == online[5]
  d = 1 - 11 ** (-2 / 3)
  np.testing.assert_allclose(e[10], d * online[5] + (1 - d) * online[10],
                             rtol=1e-12)
  d15 = 1 - 16 ** (-2 / 3)
  np.testing.assert_allclose(e[15], d15 * e[14] + (1 - d15) * online[15],
                             rtol=1e-12)
  # ImageNet-32's start = 10,000: a copy at call 10,005, then d(1 + 10).
  for c, want in ((10_000, 0.0), (10_005, 0.0),
                  (10_010, 1 - 11 ** (-2 / 3))):
    got = float(ema.decay_at(c + 1, "warmup", 0.9999, every=5, start=10_000))
    assert got == pytest.approx(want, rel=1e-6)
  assert not bool(ema.is_active(10_007, "warmup", 5))
  assert float(ema.decay_at(10**9, "warmup", 0.9999, every=5)) == (
      pytest.approx(0.9999))


def test_constant_update_every_k():
  e, p = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
  out = ema.update(jnp.int32(3), e, p, schedule="constant", decay=0.9,
                   every=5)
  np.testing.assert_array_equal(out["w"], 0.0)  # 3 % 5 != 0: no update
  out = ema.update(jnp.int32(5), e, p, schedule="constant", decay=0.9,
                   every=5)
  np.testing.assert_allclose(out["w"], 0.1, rtol=1e-6)


def test_ema_converges_to_constant_params():
  e, p = {"w": jnp.zeros(())}, {"w": jnp.ones(())}
  for s in range(1, 2000):
    e = ema.update(jnp.int32(s), e, p, schedule="warmup", decay=0.999)
  assert float(e["w"]) > 0.99


def test_unknown_schedule_and_start_on_constant():
  with pytest.raises(ValueError, match="ema.schedule"):
    ema.decay_at(1, "cosine", 0.9)
  with pytest.raises(ValueError, match="ema.start"):
    ema.decay_at(1, "constant", 0.9, start=10)


def test_trainer_step_passes_ema_start(x64):
  """The trainer's step applies `ema.start`: with start = 10 the EMA is a
  copy of the online weights at every active call up to call 15."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from gcflow_jax import train  # pylint: disable=g-import-not-at-top
  from gcflow_jax.methods.base import Method  # pylint: disable=g-import-not-at-top
  from gcflow_jax.train_state import TrainState  # pylint: disable=g-import-not-at-top

  method = Method(name="quad", init=None, sample_fn=None,
                  loss_fn=lambda p, batch, key, **kw: (
                      (p["w"] - batch["x"]) ** 2, {}))
  cfg = ml_collections.ConfigDict(dict(schedule="warmup", decay=0.9999,
                                       power=2 / 3, every=5, start=10))
  tx = optax.sgd(0.1)
  params = {"w": jnp.zeros(())}
  state = TrainState(step=jnp.int32(0), params=params, ema_params=params,
                     opt_state=tx.init(params), extras={})
  step = jax.jit(train.make_train_step(method, tx, cfg))
  for c in range(21):
    state, _ = step(state, {"x": jnp.full((4,), 1.0)}, jax.random.key(0))
    if c % 5 == 0 and c <= 15:
      assert float(state.ema_params["w"]) == float(state.params["w"]), c
  # Call 20: a real average (d = 1 - 11^(-2/3)), no longer a copy.
  assert float(state.ema_params["w"]) != float(state.params["w"])
