"""Tests for gcflow_jax.models.unet (EDM SongUNet, DDPM++ / NCSN++)."""

import flax.linen as flax_nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gcflow_jax.models import count_params, make_network
from gcflow_jax.models import unet

# The CIFAR-10 network of Table 3 ("Improving Consistency Models with
# Generator-Induced Flows"): EDM SongUNet, DDPM++ defaults.
CIFAR = dict(img_resolution=32, in_channels=3, out_channels=3,
             model_channels=128, channel_mult=(1, 2, 2), num_blocks=3,
             attn_resolutions=(), dropout=0.3, embedding_type="positional")
CIFAR_PARAMS = 34_711_811

TINY = dict(img_resolution=16, in_channels=3, out_channels=3,
            model_channels=32, channel_mult=(1, 2), num_blocks=1,
            attn_resolutions=(8,), dropout=0.0)


def _abstract_count(module, num_times=1):
  r, c = module.img_resolution, module.in_channels

  def init(k):
    x = jnp.zeros((1, r, r, c))
    ts = [jnp.zeros((1,)) for _ in range(num_times)]
    return module.init({"params": k}, x, *ts)

  variables = jax.eval_shape(init, jax.random.key(0))
  assert set(variables) == {"params"}
  return count_params(variables)


def _compile(fn, *args):
  """`jax.jit(fn)` compiled for `args` with XLA's backend optimisations off.

  The CPU test machine is shared; -O0 roughly halves compile time for these
  conv nets and the tests compare outputs of the same compiled function.
  """
  return jax.jit(fn).lower(*args).compile(
      {"xla_backend_optimization_level": 0})


def _random_params(module, x, *ts, seed=0, scale=0.1):
  """Random N(0, scale^2) variables with `module.init`'s structure.

  Drawn on the host: compiling `module.init` (one threefry per parameter)
  takes several times longer than compiling `module.apply`.
  """
  shapes = jax.eval_shape(module.init, jax.random.key(0), x, *ts)
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype),
      shapes)


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


# ------------------------------------------------------------ param counts --


def test_cifar_table3_parameter_count():
  n = _abstract_count(unet.SongUNet(**CIFAR))
  assert n == CIFAR_PARAMS
  assert abs(n - 34.71e6) <= 1e-3 * 34.71e6


@pytest.mark.parametrize("kw, millions", [
    # EDM paper, Table 7 (CIFAR-10 32x32, DDPM++ and NCSN++): 55.73M, 56.40M.
    (dict(), 55.73),
    (dict(embedding_type="fourier", channel_mult_noise=2,
          encoder_type="residual", resample_filter=(1, 3, 3, 1)), 56.40),
])
def test_edm_cifar_parameter_counts(kw, millions):
  module = unet.SongUNet(img_resolution=32, in_channels=3, out_channels=3,
                         **kw)
  assert round(_abstract_count(module) / 1e6, 2) == millions


def test_paper_imagenet32_and_64px_parameter_counts():
  imagenet32 = unet.SongUNet(
      img_resolution=32, in_channels=3, out_channels=3, channel_mult=(1, 1, 2),
      num_blocks=(3, 5, 7), attn_resolutions=(16,), dropout=(0.0, 0.2, 0.2))
  px64 = unet.SongUNet(
      img_resolution=64, in_channels=3, out_channels=3,
      channel_mult=(1, 2, 2, 2), num_blocks=(3, 3, 4, 5), attn_resolutions=(),
      dropout=(0.0, 0.0, 0.2, 0.2))
  assert _abstract_count(imagenet32) == 39_479_683
  assert _abstract_count(px64) == 59_582_723


def test_two_times_only_widen_map_layer0():
  one = _abstract_count(unet.SongUNet(**CIFAR), 1)
  two = _abstract_count(unet.SongUNet(**CIFAR, num_times=2), 2)
  # map_layer0 sees 2 * 128 noise channels instead of 128, 512 outputs.
  assert two - one == 128 * 512


# ----------------------------------------------------------- shapes, init --


@pytest.mark.parametrize("kw", [
    dict(),
    dict(num_times=2, time_embedding="st", embedding_type="fourier",
         encoder_type="skip", decoder_type="skip",
         resample_filter=(1, 3, 3, 1)),
    dict(num_times=2, time_embedding="s_dt", encoder_type="residual",
         resample_filter=(1, 3, 3, 1), channel_mult_noise=2),
    dict(embedding_type="fourier", encoder_type="residual",
         decoder_type="skip", dtype=jnp.bfloat16, num_blocks=(1, 2),
         dropout=(0.0, 0.1)),
], ids=["ddpmpp", "ncsnpp_skip_st", "residual_s_dt", "bf16_fourier"])
def test_shape_and_dtype(kw, key):
  module = unet.SongUNet(**{**TINY, **kw})
  x = jax.random.normal(key, (2, 16, 16, 3))
  ts = [jnp.array([0.3, -1.2]) + i for i in range(module.num_times)]
  params = _random_params(module, x, *ts)
  assert set(params) == {"params"}
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))
  out = _compile(module.apply, params, x, *ts)(params, x, *ts)
  assert out.shape == x.shape and out.dtype == x.dtype
  assert bool(jnp.all(jnp.isfinite(out))) and float(jnp.std(out)) > 0


def test_output_is_zero_at_init(key):
  module = unet.SongUNet(
      img_resolution=8, in_channels=3, out_channels=3, model_channels=16,
      channel_mult=(1,), num_blocks=1, attn_resolutions=(8,), dropout=0.0)
  x = jax.random.normal(key, (2, 8, 8, 3))
  t = jnp.zeros((2,))
  out, params = _compile(module.init_with_output, key, x, t)(key, x, t)
  assert out.shape == x.shape
  np.testing.assert_array_equal(out, 0.0)
  aux = params["params"]["dec_8x8_aux_conv"]
  np.testing.assert_array_equal(aux["kernel"], 0.0)
  # Residual branches start near zero (EDM's init_weight=1e-5).
  conv1 = params["params"]["dec_8x8_block0"]["conv1"]["kernel"]
  assert 0 < float(jnp.max(jnp.abs(conv1))) < 1e-5


def test_edm_init_scale(key):
  # xavier_uniform * init_weight: bound sqrt(6 / (fan_in + fan_out)) * w.
  x = jnp.zeros((1, 4, 4, 16))
  conv = unet.Conv2d(32, 3, init_weight=1e-5)
  w = _compile(conv.init, key, x)(key, x)["params"]["kernel"]
  bound = np.sqrt(6 / (9 * 16 + 9 * 32)) * 1e-5
  assert float(jnp.max(jnp.abs(w))) <= bound
  np.testing.assert_allclose(jnp.std(w), bound / np.sqrt(3), rtol=0.05)


def test_rejects_bad_inputs():
  module = unet.SongUNet(**TINY, num_times=2)
  x = jnp.zeros((1, 16, 16, 3))
  with pytest.raises(ValueError, match="2 time input"):
    jax.eval_shape(lambda: module.init(jax.random.key(0), x, 0.0))
  with pytest.raises(ValueError, match="shape"):
    jax.eval_shape(lambda: module.init(jax.random.key(0), x[:, :8], 0.0, 1.0))
  with pytest.raises(ValueError, match="num_blocks"):
    bad = unet.SongUNet(**{**TINY, "num_blocks": (1, 2, 3)})
    jax.eval_shape(lambda: bad.init(jax.random.key(0), x, 0.0))


# --------------------------------------------------------------- from_config --


def _model_cfg(**unet_kw):
  cfg = ml_collections.ConfigDict()
  cfg.name = "unet"
  cfg.dropout = [0.0, 0.2]
  cfg.unet = ml_collections.ConfigDict(dict(
      model_channels=32, channel_mult=(1, 2), channel_mult_emb=4,
      num_blocks=[1, 2], attn_resolutions=(8,), embedding_type="positional",
      channel_mult_noise=1, encoder_type="standard", decoder_type="standard",
      resample_filter=(1, 1), time_embedding="s_dt", dtype="float32"))
  cfg.unet.update(unet_kw)
  return cfg


def test_from_config_and_make_network(key):
  module, apply_fn, init_fn = make_network(_model_cfg(), (16, 16, 3), 2)
  assert isinstance(module, unet.SongUNet)
  assert module.num_blocks == (1, 2) and module.dropout == (0.0, 0.2)
  assert module.time_embedding == "s_dt" and module.num_times == 2
  shapes = jax.eval_shape(init_fn, key)
  assert count_params(shapes) == _abstract_count(module, 2)
  x = jnp.ones((2, 16, 16, 3))
  params = _random_params(module, x, 0.1, 0.5)
  out = jax.eval_shape(apply_fn, params, x, 0.1, jnp.array([0.5, 0.7]))
  assert out.shape == x.shape and out.dtype == x.dtype
  out = jax.eval_shape(lambda p, x, t: apply_fn(p, x, t, t, key=key),
                       params, x, 0.1)
  assert out.shape == x.shape
  with pytest.raises(ValueError, match="2 time input"):
    apply_fn(params, x, 0.1)
  with pytest.raises(ValueError, match="data.image_size"):
    unet.from_config(_model_cfg(), (16, 8, 3), 1)
  bf16 = unet.from_config(_model_cfg(dtype="bfloat16"), (16, 16, 3), 1)
  assert bf16.dtype == jnp.bfloat16 and bf16.param_dtype == jnp.float32


# -------------------------------------------- dropout and time conditioning --


@pytest.fixture(scope="module")
def perturbed_net():
  module = unet.SongUNet(**{**TINY, "dropout": 0.5, "num_times": 2,
                            "time_embedding": "s_dt"})
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  s, t = jnp.array([0.1, 0.2]), jnp.array([0.6, 0.9])
  params = _random_params(module, x, s, t, seed=2)

  key = jax.random.key(0)
  compiled = {
      train: _compile(
          lambda p, x, s, t, k, train=train: module.apply(
              p, x, s, t, train=train, rngs={"dropout": k}),
          params, x, s, t, key)
      for train in (False, True)}

  def apply(params, x, s, t, key, train):
    s, t = (jnp.broadcast_to(jnp.asarray(u, jnp.float32), (2,)) for u in (s, t))
    return compiled[train](params, x, s, t, key)

  return apply, params, x, s, t


def test_dropout_keys(perturbed_net):
  apply, params, x, s, t = perturbed_net
  k1, k2 = jax.random.key(10), jax.random.key(11)
  a = apply(params, x, s, t, k1, True)
  np.testing.assert_array_equal(a, apply(params, x, s, t, k1, True))
  assert _rel(a, apply(params, x, s, t, k2, True)) > 1e-3
  e1 = apply(params, x, s, t, k1, False)
  np.testing.assert_array_equal(e1, apply(params, x, s, t, k2, False))
  assert _rel(a, e1) > 1e-3


def test_time_conditioning(perturbed_net):
  apply, params, x, s, t = perturbed_net
  k = jax.random.key(0)
  base = apply(params, x, s, t, k, False)
  assert _rel(apply(params, x, s + 0.3, t, k, False), base) > 1e-4
  assert _rel(apply(params, x, s, t + 0.3, k, False), base) > 1e-4
  # Scalars broadcast over the batch.
  np.testing.assert_allclose(
      apply(params, x, 0.1, 0.6, k, False)[0], base[0], rtol=1e-5, atol=1e-6)


def test_time_jvp_matches_finite_difference(x64):
  del x64
  module = unet.SongUNet(
      img_resolution=8, in_channels=2, out_channels=2, model_channels=16,
      channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,), dropout=0.0,
      num_times=2, time_embedding="s_dt", dtype=jnp.float64,
      param_dtype=jnp.float64)
  key = jax.random.key(0)
  x = jax.random.normal(key, (2, 8, 8, 2), jnp.float64)
  s = jnp.array([0.1, -0.4], jnp.float64)
  t = jnp.array([0.7, 0.5], jnp.float64)
  params = _random_params(module, x, s, t, seed=1, scale=0.3)
  assert jax.tree_util.tree_leaves(params)[0].dtype == jnp.float64
  f = lambda tt: module.apply(params, x, s, tt)  # noqa: E731
  # Tangent of the output w.r.t. the second time t (through t - s too).
  jvp = _compile(lambda tt: jax.jvp(f, (tt,), (jnp.ones_like(tt),)), t)
  out, dout_dt = jvp(t)
  assert out.dtype == jnp.float64
  h = 1e-4
  fd = (jvp(t + h)[0] - jvp(t - h)[0]) / (2 * h)
  assert float(jnp.linalg.norm(dout_dt)) > 1e-6
  assert _rel(dout_dt, fd) < 1e-6


# --------------------------------------------------------------- resampling --


def test_fir_filter_normalised():
  for taps in [(1, 1), (1, 3, 3, 1)]:
    f = unet.fir_filter(taps)
    assert f.shape == (len(taps),) * 2 and np.isclose(f.sum(), 1.0)


def test_downsample_constant():
  c = jnp.full((1, 8, 8, 2), 3.0)
  np.testing.assert_allclose(unet.downsample_2d(c, (1, 1)), 3.0, rtol=1e-6)
  d = np.asarray(unet.downsample_2d(c, (1, 3, 3, 1)))
  assert d.shape == (1, 4, 4, 2)
  # [1, 3, 3, 1] zero-pads by one pixel: the constant survives inside, the
  # border loses the tap weight 1/8 per padded side.
  np.testing.assert_allclose(d[:, 1:-1, 1:-1], 3.0, rtol=1e-6)
  np.testing.assert_allclose(d[:, 0, 1:-1], 3.0 * 7 / 8, rtol=1e-6)
  np.testing.assert_allclose(d[:, 0, 0], 3.0 * (7 / 8) ** 2, rtol=1e-6)


def test_box_filter_is_average_and_nearest(key):
  x = jax.random.normal(key, (2, 8, 6, 3))
  avg = x.reshape(2, 4, 2, 3, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(unet.downsample_2d(x, (1, 1)), avg, atol=1e-6)
  nearest = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  np.testing.assert_allclose(unet.upsample_2d(x, (1, 1)), nearest, atol=1e-6)
  # Down after up is the identity for every input.
  np.testing.assert_allclose(
      unet.downsample_2d(unet.upsample_2d(x, (1, 1)), (1, 1)), x, atol=1e-6)


def test_ncsn_filter_preserves_affine_images_inside():
  i, j = np.meshgrid(np.arange(12.0), np.arange(12.0), indexing="ij")
  x = jnp.asarray((1.0 + 0.5 * i - 0.25 * j)[None, :, :, None], jnp.float32)
  f = (1, 3, 3, 1)
  up = np.asarray(unet.upsample_2d(x, f))
  assert up.shape == (1, 24, 24, 1)
  # Bilinear on the half-pixel grid: output pixel p sits at (p - 1/2) / 2.
  ii, jj = np.meshgrid((np.arange(24.0) - 0.5) / 2, (np.arange(24.0) - 0.5) / 2,
                       indexing="ij")
  np.testing.assert_allclose(up[0, 1:-1, 1:-1, 0],
                             (1.0 + 0.5 * ii - 0.25 * jj)[1:-1, 1:-1],
                             atol=1e-5)
  back = np.asarray(unet.downsample_2d(unet.upsample_2d(x, f), f))
  np.testing.assert_allclose(back[:, 1:-1, 1:-1], x[:, 1:-1, 1:-1], atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 8, 8, 16), (2, 4, 6, 32), (2, 5, 64)])
def test_group_norm_matches_flax(x64, shape):
  # Same parameters and maths as flax.linen.GroupNorm (the two-stage sums
  # only change the summation order): float64 to 1e-12. Per-channel scale
  # and bias, a non-zero mean and unequal group statistics catch a wrong
  # group assignment (e.g. channels grouped with stride G instead of in
  # contiguous blocks), a missing mean or a variance without the mean term.
  del x64
  c = shape[-1]
  groups = min(32, c // 4)
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  x = (3.0 + jnp.linspace(0.5, 4.0, c, dtype=jnp.float64)
       * jax.random.normal(k1, shape, jnp.float64))
  params = {"params": {
      "scale": 1.0 + 0.3 * jax.random.normal(k2, (c,), jnp.float64),
      "bias": 0.2 * jax.random.normal(k3, (c,), jnp.float64)}}
  kw = dict(num_groups=groups, epsilon=1e-6, dtype=jnp.float64,
            param_dtype=jnp.float64)
  ours = unet.GroupNorm(**kw)
  ref = flax_nn.GroupNorm(**kw)
  assert (jax.tree_util.tree_structure(ours.init(k1, x))
          == jax.tree_util.tree_structure(ref.init(k1, x)))
  g = jax.random.normal(jax.random.fold_in(k1, 1), shape, jnp.float64)
  y, vjp = jax.vjp(ours.apply, params, x)
  y_ref, vjp_ref = jax.vjp(ref.apply, params, x)
  np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12)
  for a, b in zip(jax.tree_util.tree_leaves(vjp(g)),
                  jax.tree_util.tree_leaves(vjp_ref(g))):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
  # Per group: zero mean and unit variance before the affine map.
  z = (y - params["params"]["bias"]) / params["params"]["scale"]
  zg = z.reshape(shape[0], -1, groups, c // groups)
  np.testing.assert_allclose(zg.mean(axis=(1, 3)), 0.0, atol=1e-10)
  np.testing.assert_allclose(zg.var(axis=(1, 3)), 1.0, atol=1e-4)


def test_group_norm_bf16_statistics_in_float32(key):
  # bf16 in and out, statistics and normalisation in float32: equal to
  # Flax's GroupNorm (which promotes likewise) up to one bf16 rounding.
  x = (1.0 + jax.random.normal(key, (2, 8, 8, 16))).astype(jnp.bfloat16)
  kw = dict(num_groups=4, epsilon=1e-6, dtype=jnp.bfloat16)
  params = unet.GroupNorm(**kw).init(key, x)
  y = unet.GroupNorm(**kw).apply(params, x)
  y_ref = flax_nn.GroupNorm(**kw).apply(params, x)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(y.astype(jnp.float32),
                             y_ref.astype(jnp.float32), rtol=1e-2, atol=1e-2)
  with pytest.raises(ValueError, match="num_groups=3"):
    unet.GroupNorm(num_groups=3).init(key, jnp.zeros((1, 2, 2, 16)))
