"""Mixed precision of the SongUNet: bfloat16 compute, float32 where it matters.

Tolerances (bfloat16 keeps 8 significand bits, unit round-off 2^-8 = 0.4%;
through the ~10 layers of these tiny nets the relative error of the output
was 0.8% when measured): output 3%, time JVP 5%.
"""

import collections

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from gcflow_jax import config_utils
from gcflow_jax.models import unet
# pytest puts this folder on sys.path (no __init__.py): share its helpers.
from test_unet import TINY, _compile, _random_params, _rel  # pylint: disable=g-bad-import-order

# Attention blocks of TINY: enc_8x8_block0, dec_8x8_in0, dec_8x8_block1.
TINY_ATTENTION_BLOCKS = 3


def _op_dtypes(jaxpr, acc=None):
  """Counter of (primitive, operand dtypes) over a jaxpr and its sub-jaxprs."""
  acc = collections.Counter() if acc is None else acc
  for e in jaxpr.eqns:
    acc[(e.primitive.name,
         tuple(str(v.aval.dtype) for v in e.invars))] += 1
    for v in e.params.values():
      if hasattr(v, "jaxpr") and hasattr(v, "consts"):   # ClosedJaxpr
        _op_dtypes(v.jaxpr, acc)
      elif hasattr(v, "eqns"):
        _op_dtypes(v, acc)
  return acc


@pytest.fixture(scope="module")
def nets():
  x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  t = jnp.array([0.3, -1.2, 0.5, 2.0])
  m32 = unet.SongUNet(**TINY)
  m16 = unet.SongUNet(**TINY, dtype=jnp.bfloat16)
  params = _random_params(m32, x, t)
  return m32, m16, params, x, t


def test_bf16_output_close_to_fp32(nets):
  m32, m16, params, x, t = nets
  y32 = _compile(m32.apply, params, x, t)(params, x, t)
  y16 = _compile(m16.apply, params, x, t)(params, x, t)
  assert y16.dtype == jnp.float32           # cast back to x's dtype
  err = _rel(y16, y32)
  # Close to float32, but not equal: the convolutions really ran in bf16.
  assert 1e-4 < err < 3e-2, err


def test_bf16_precision_placement(nets):
  """Convs and block projections in bf16; GroupNorm statistics, softmax and
  the time-embedding MLP in float32."""
  _, m16, params, x, t = nets
  ops = _op_dtypes(jax.make_jaxpr(m16.apply)(params, x, t).jaxpr)
  by_prim = collections.defaultdict(collections.Counter)
  for (prim, dts), n in ops.items():
    by_prim[prim][dts] += n
  convs = by_prim["conv_general_dilated"]
  assert convs[("bfloat16", "bfloat16")] > 0 and sum(convs.values()) == (
      convs[("bfloat16", "bfloat16")])
  # Every reduction (GroupNorm mean/variance, softmax max/sum) in float32.
  for prim in ("reduce_sum", "reduce_max", "rsqrt"):
    assert by_prim[prim] and set(by_prim[prim]) == {("float32",)}, (
        prim, by_prim[prim])
  dots = by_prim["dot_general"]
  # float32 matmuls: map_layer0, map_layer1 and each attention's logits.
  assert dots[("float32", "float32")] == 2 + TINY_ATTENTION_BLOCKS
  assert dots[("bfloat16", "bfloat16")] > 0


def test_bf16_time_jvp_close_to_fp32():
  """The flow-map tangent ∂_t F(x, s, t) of a bf16 network: the time
  embedding and mapping MLP propagate it in float32, the trunk in bf16 (a
  forward-mode tangent is its own array, rounded relative to its own size,
  so there is no finite-difference cancellation). The float32 tangent
  matches finite differences (tests/models/test_unet.py)."""
  kw = {**TINY, "num_times": 2, "attn_resolutions": ()}
  m32 = unet.SongUNet(**kw)
  m16 = unet.SongUNet(**kw, dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
  s = jnp.array([0.1, 0.2, 0.0, 0.5])
  t = jnp.array([0.6, 0.9, 0.3, 0.7])
  params = _random_params(m32, x, s, t, seed=3)

  def tangent(module):
    f = lambda p, tt: module.apply(p, x, s, tt)  # noqa: E731
    return lambda p: jax.jvp(lambda tt: f(p, tt), (t,),
                             (jnp.ones_like(t),))

  _, d32 = _compile(tangent(m32), params)(params)
  _, d16 = _compile(tangent(m16), params)(params)
  assert d16.dtype == jnp.float32
  assert float(jnp.linalg.norm(d32)) > 1e-3
  assert 1e-5 < _rel(d16, d32) < 5e-2, _rel(d16, d32)


def _model_cfg(dtype):
  cfg = ml_collections.ConfigDict()
  cfg.name = "unet"
  cfg.dropout = 0.0
  cfg.unet = ml_collections.ConfigDict(dict(
      model_channels=16, channel_mult=(1,), channel_mult_emb=4,
      num_blocks=1, attn_resolutions=(), embedding_type="positional",
      channel_mult_noise=1, encoder_type="standard", decoder_type="standard",
      resample_filter=(1, 1), time_embedding="st", dtype=dtype))
  return cfg


@pytest.mark.parametrize("bad", ["float16", "bf16", "float64"])
def test_dtype_is_validated(bad):
  with pytest.raises(ValueError, match=r"model\.unet\.dtype.*float32.*"
                     r"bfloat16"):
    unet.from_config(_model_cfg(bad), (8, 8, 1), 1)
  config = config_utils.load_config("configs/digits_fm.py:smoke")
  with config.unlocked():
    config.model.unet.dtype = bad
  with pytest.raises(ValueError, match=r"model\.unet\.dtype.*bfloat16"):
    config_utils.validate(config)
  assert unet.from_config(_model_cfg("bfloat16"), (8, 8, 1), 1).dtype == (
      jnp.bfloat16)
