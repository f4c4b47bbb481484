"""The FID Inception-v3 ("pool_3" network of the TF 2015-12-05 graph) in Flax.

This is the network every published FID / KID / Inception Score number is
computed with: the TensorFlow ``inception-2015-12-05`` graph used by the
original TTUR FID code and the OpenAI Inception Score code, in the PyTorch port
of ``pytorch-fid`` (``fid_inception_v3``). It differs from the torchvision /
Keras Inception-v3 in ways that change the numbers, all reproduced here:

* the average-pool branch of the ``Mixed_5b..5d`` (A), ``Mixed_6b..6e`` (C) and
  ``Mixed_7b`` (E) blocks excludes the zero padding from the average
  (``count_include_pad=False``, TF semantics);
* the pool branch of the last block ``Mixed_7c`` is a 3x3 *max* pool (a quirk of
  that graph), not an average pool;
* the classifier has 1008 outputs (1000 ImageNet classes + 8 unused), and the
  Inception Score uses its logits *without* the bias (``logits_unbiased``), as
  the OpenAI code did (``matmul(pool_3, W)``);
* batch norm has epsilon 1e-3 and every conv is bias-free.

Input pipeline (``InceptionV3.__call__``): images in ``[0, 255]`` (uint8 values
as float) of any size are resized to 299x299 by bilinear interpolation without
antialiasing, then mapped to the network range. Two protocols:

* ``"pytorch_fid"`` (default): PyTorch ``F.interpolate(..., 'bilinear',
  align_corners=False)`` (half-pixel centres) and ``x / 127.5 - 1`` in
  ``[-1, 1]``; this is pytorch-fid, whose weights we load.
* ``"tf_fid"``: TF1 ``tf.image.resize_bilinear(align_corners=False)`` (legacy
  asymmetric sampling ``src = dst * in / out``, no half-pixel centres) and
  ``(x - 128) / 128`` as the ``Sub``/``Mul`` nodes of the TF graph do; this is
  the original TTUR / OpenAI code path.

The weights (naming, conversion from PyTorch, files, checksums) are handled by
`gcflow_jax.evaluation.inception`, which re-exports this module's names.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "InceptionV3",
    "NUM_CLASSES",
    "POOL_DIM",
    "INPUT_SIZE",
    "PROTOCOLS",
    "resize_matrix",
    "resize_bilinear",
]

NUM_CLASSES = 1008
POOL_DIM = 2048
INPUT_SIZE = 299
PROTOCOLS = ("pytorch_fid", "tf_fid")

_BN_EPS = 1e-3


# --------------------------------------------------------------------------
# Resizing.
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def resize_matrix(in_size: int, out_size: int, mode: str) -> np.ndarray:
  """1-D bilinear interpolation as a matrix (no antialiasing).

  Args:
    in_size: input length.
    out_size: output length.
    mode: ``"pytorch_fid"``: half-pixel centres, ``src = (dst + 0.5) * in /
      out - 0.5`` clamped at 0 (PyTorch ``align_corners=False``);
      ``"tf_fid"``: legacy TF1 ``src = dst * in / out``.

  Returns:
    ``[out_size, in_size]`` float32 matrix whose rows sum to 1.
  """
  if mode not in PROTOCOLS:
    raise ValueError(f"mode must be one of {PROTOCOLS}; got {mode!r}")
  scale = in_size / out_size
  dst = np.arange(out_size, dtype=np.float64)
  if mode == "pytorch_fid":
    src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
  else:
    src = dst * scale
  i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  lam = src - i0
  m = np.zeros((out_size, in_size), np.float64)
  np.add.at(m, (np.arange(out_size), i0), 1.0 - lam)
  np.add.at(m, (np.arange(out_size), i1), lam)
  return m.astype(np.float32)


def resize_bilinear(x: jax.Array, size: int = INPUT_SIZE,
                    mode: str = "pytorch_fid") -> jax.Array:
  """Separable bilinear resize of ``[B, H, W, C]`` images to ``[B, s, s, C]``.

  Exactly PyTorch's ``F.interpolate(mode='bilinear', align_corners=False,
  antialias=False)`` for ``mode="pytorch_fid"`` and TF1's
  ``resize_bilinear(align_corners=False)`` for ``mode="tf_fid"`` (up to float
  rounding). Identity when the size already matches.
  """
  _, h, w, _ = x.shape
  if h == size and w == size:
    return x
  mh = jnp.asarray(resize_matrix(h, size, mode))
  mw = jnp.asarray(resize_matrix(w, size, mode))
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum("oh,bhwc->bowc", mh, x, precision=hi)
  return jnp.einsum("pw,bowc->bopc", mw, x, precision=hi)


# --------------------------------------------------------------------------
# Network. Module names mirror the PyTorch attribute names so that the
# weight conversion is a mechanical renaming (see `torch_name`).
# --------------------------------------------------------------------------
def _pad(p: int | tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
  ph, pw = (p, p) if isinstance(p, int) else p
  return ((ph, ph), (pw, pw))


class BasicConv2d(nn.Module):
  """Conv (no bias) -> BatchNorm (eps 1e-3, running stats) -> ReLU."""

  features: int
  kernel: tuple[int, int] = (1, 1)
  stride: int = 1
  padding: int | tuple[int, int] = 0
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.features, self.kernel, strides=(self.stride,) * 2,
                padding=_pad(self.padding), use_bias=False,
                precision=self.precision, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS,
                     name="bn")(x)
    return nn.relu(x)


def _avg3(x: jax.Array) -> jax.Array:
  # TF average pooling: the padded zeros are not counted.
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


class FIDInceptionA(nn.Module):
  pool_features: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv2d, precision=self.precision)
    b1 = c(64, name="branch1x1")(x)
    b5 = c(48, name="branch5x5_1")(x)
    b5 = c(64, (5, 5), padding=2, name="branch5x5_2")(b5)
    b3 = c(64, name="branch3x3dbl_1")(x)
    b3 = c(96, (3, 3), padding=1, name="branch3x3dbl_2")(b3)
    b3 = c(96, (3, 3), padding=1, name="branch3x3dbl_3")(b3)
    bp = c(self.pool_features, name="branch_pool")(_avg3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv2d, precision=self.precision)
    b3 = c(384, (3, 3), stride=2, name="branch3x3")(x)
    bd = c(64, name="branch3x3dbl_1")(x)
    bd = c(96, (3, 3), padding=1, name="branch3x3dbl_2")(bd)
    bd = c(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
    bp = nn.max_pool(x, (3, 3), strides=(2, 2))
    return jnp.concatenate([b3, bd, bp], axis=-1)


class FIDInceptionC(nn.Module):
  channels_7x7: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv2d, precision=self.precision)
    c7 = self.channels_7x7
    b1 = c(192, name="branch1x1")(x)
    b7 = c(c7, name="branch7x7_1")(x)
    b7 = c(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = c(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = c(c7, name="branch7x7dbl_1")(x)
    bd = c(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = c(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = c(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = c(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = c(192, name="branch_pool")(_avg3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv2d, precision=self.precision)
    b3 = c(192, name="branch3x3_1")(x)
    b3 = c(320, (3, 3), stride=2, name="branch3x3_2")(b3)
    b7 = c(192, name="branch7x7x3_1")(x)
    b7 = c(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = c(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = c(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
    bp = nn.max_pool(x, (3, 3), strides=(2, 2))
    return jnp.concatenate([b3, b7, bp], axis=-1)


class FIDInceptionE(nn.Module):
  """E block; ``max_pool=True`` is the ``Mixed_7c`` quirk of the TF graph."""

  max_pool: bool = False
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv2d, precision=self.precision)
    b1 = c(320, name="branch1x1")(x)
    b3 = c(384, name="branch3x3_1")(x)
    b3 = jnp.concatenate([
        c(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
        c(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = c(448, name="branch3x3dbl_1")(x)
    bd = c(384, (3, 3), padding=1, name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([
        c(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
        c(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    if self.max_pool:
      bp = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      bp = _avg3(x)
    bp = c(192, name="branch_pool")(bp)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """FID Inception-v3: ``[B, H, W, 3]`` in ``[0, 255]`` -> features.

  Attributes:
    protocol: ``"pytorch_fid"`` or ``"tf_fid"`` (resize and normalisation; see
      the module docstring).
    resize_input: resize to 299x299 first (the standard protocols do).
    precision: matmul/conv precision; HIGHEST keeps float32 on GPUs/TPUs
      (TF32/bf16 passes move FID in the second decimal).
  """

  protocol: str = "pytorch_fid"
  resize_input: bool = True
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    """Runs the network.

    Args:
      x: ``[B, H, W, 3]`` float images with values in ``[0, 255]`` (uint8
        values; the standard protocol quantises first).

    Returns:
      dict with ``pool`` ``[B, 2048]`` (pool_3 features, FID/KID),
      ``logits_unbiased`` ``[B, 1008]`` (pool_3 @ W, used for the Inception
      Score like the OpenAI code) and ``logits`` ``[B, 1008]`` (+ bias).
    """
    if self.protocol not in PROTOCOLS:
      raise ValueError(f"protocol must be one of {PROTOCOLS}; "
                       f"got {self.protocol!r}")
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"InceptionV3 expects [B, H, W, 3]; got {x.shape}")
    x = x.astype(jnp.float32)
    if self.resize_input:
      x = resize_bilinear(x, INPUT_SIZE, self.protocol)
    if self.protocol == "pytorch_fid":
      x = x / 127.5 - 1.0
    else:
      x = (x - 128.0) / 128.0
    c = functools.partial(BasicConv2d, precision=self.precision)
    p = self.precision
    x = c(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
    x = c(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = c(64, (3, 3), padding=1, name="Conv2d_2b_3x3")(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2))
    x = c(80, name="Conv2d_3b_1x1")(x)
    x = c(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2))
    x = FIDInceptionA(32, precision=p, name="Mixed_5b")(x)
    x = FIDInceptionA(64, precision=p, name="Mixed_5c")(x)
    x = FIDInceptionA(64, precision=p, name="Mixed_5d")(x)
    x = InceptionB(precision=p, name="Mixed_6a")(x)
    x = FIDInceptionC(128, precision=p, name="Mixed_6b")(x)
    x = FIDInceptionC(160, precision=p, name="Mixed_6c")(x)
    x = FIDInceptionC(160, precision=p, name="Mixed_6d")(x)
    x = FIDInceptionC(192, precision=p, name="Mixed_6e")(x)
    x = InceptionD(precision=p, name="Mixed_7a")(x)
    x = FIDInceptionE(max_pool=False, precision=p, name="Mixed_7b")(x)
    x = FIDInceptionE(max_pool=True, precision=p, name="Mixed_7c")(x)
    pool = jnp.mean(x, axis=(1, 2))
    fc = nn.Dense(NUM_CLASSES, precision=p, name="fc")
    logits = fc(pool)
    bias = fc.variables["params"]["bias"]
    return {"pool": pool, "logits_unbiased": logits - bias, "logits": logits}
