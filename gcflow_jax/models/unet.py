"""EDM's SongUNet (DDPM++ / NCSN++) as a channels-last Flax Linen module.

A re-implementation of the `SongUNet` of Karras et al. (2022), "Elucidating
the Design Space of Diffusion-Based Generative Models" (github.com/NVlabs/edm,
`training/networks.py`), which is itself a port of the DDPM++ / NCSN++
networks of Song et al. (2021). It is the network of "Improving Consistency
Models with Generator-Induced Flows" (Tables 3-5). Differences from EDM:

* NHWC activations and HWIO kernels instead of NCHW / OIHW.
* Per-level `dropout` and `num_blocks` (the paper's Tables 4-5 use lists).
* One or two time inputs. Each time gets its own noise embedding and the
  embeddings are concatenated before `map_layer0`; with one time the network
  is EDM's exactly. No class-label or augmentation-label inputs.
* `zero_output=True` (the default) makes the output conv exactly zero at
  initialisation, so the network starts at 0; EDM initialises it like every
  other "zero" layer (xavier-uniform times 1e-5, `zero_output=False`).

The parameter count equals EDM's for the same configuration: 34,711,811 (the
"34.71M" of the published CIFAR-10 consistency models) for
`channel_mult=(1, 2, 2), num_blocks=3, attn_resolutions=()` at 32x32x3.

Dropout draws from the rng stream named `'dropout'`; nothing else is random.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gcflow_jax.models.embeddings import (FourierFeatures, broadcast_time,
                                          positional_embedding)

__all__ = ["SongUNet", "UNetBlock", "Conv2d", "GroupNorm", "fir_filter", "downsample_2d",
           "upsample_2d", "from_config", "EMBEDDING_TYPES", "ENCODER_TYPES",
           "DECODER_TYPES", "TIME_EMBEDDINGS", "DTYPES"]

EMBEDDING_TYPES = ("positional", "fourier")
ENCODER_TYPES = ("standard", "skip", "residual")
DECODER_TYPES = ("standard", "skip")
TIME_EMBEDDINGS = ("st", "s_dt")
# Compute dtypes of `model.unet.dtype` (parameters are always float32).
DTYPES = ("float32", "bfloat16")

Dtype = Any
_DIMS = ("NHWC", "HWIO", "NHWC")


# --------------------------------------------------------------------------
# Initialisers (EDM's `weight_init` modes times `init_weight`).
# --------------------------------------------------------------------------


def _weight_init(init_mode: str, init_weight: float
                 ) -> nn.initializers.Initializer:
  """EDM's init modes; Flax computes the same fans (in/out * kernel area)."""
  if init_weight == 0.0:
    return nn.initializers.zeros
  scale = init_weight ** 2
  if init_mode == "xavier_uniform":
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")
  if init_mode == "xavier_normal":
    return nn.initializers.variance_scaling(scale, "fan_avg", "normal")
  if init_mode == "kaiming_uniform":
    return nn.initializers.variance_scaling(scale, "fan_in", "uniform")
  if init_mode == "kaiming_normal":
    return nn.initializers.variance_scaling(scale, "fan_in", "normal")
  raise ValueError(f"unknown init mode {init_mode!r}")


_INIT = dict(init_mode="xavier_uniform", init_weight=1.0)
_INIT_ZERO = dict(init_mode="xavier_uniform", init_weight=1e-5)
_INIT_ATTN = dict(init_mode="xavier_uniform", init_weight=math.sqrt(0.2))


# --------------------------------------------------------------------------
# FIR resampling with depthwise convolutions.
# --------------------------------------------------------------------------


def fir_filter(taps: Sequence[float]) -> np.ndarray:
  """Separable 2-D FIR filter `outer(f, f) / sum(f)^2`, shape [k, k]."""
  f = np.asarray(taps, np.float64)
  if f.ndim != 1 or f.size < 1 or f.sum() == 0:
    raise ValueError(f"resample filter must be 1-D with non-zero sum, got "
                     f"{taps}")
  return np.outer(f, f) / f.sum() ** 2


def _depthwise(x: jax.Array, f2d: np.ndarray, *, stride: int = 1,
               lhs_dilation: int = 1, pad: Tuple[int, int] = (0, 0)
               ) -> jax.Array:
  c = x.shape[-1]
  k = f2d.shape[0]
  w = jnp.broadcast_to(jnp.asarray(f2d, x.dtype)[:, :, None, None],
                       (k, k, 1, c))
  return jax.lax.conv_general_dilated(
      x, w, window_strides=(stride, stride), padding=(pad, pad),
      lhs_dilation=(lhs_dilation, lhs_dilation), dimension_numbers=_DIMS,
      feature_group_count=c)


def _block_sum(x: jax.Array, f2d: np.ndarray) -> jax.Array:
  """sum_ij f2d[i, j] x[:, 2a + i, 2b + j, :]: [B, H, W, C] -> [B, H/2, W/2, C].

  Four strided slices added in one element-wise loop: on XLA:CPU this is
  far cheaper than a stride-2 grouped convolution or a reduction over the
  2x2 axes of a reshape (both ran as slow generic loops here).
  """
  b, h, w, c = x.shape
  blocks = x.reshape(b, h // 2, 2, w // 2, 2, c)
  out = None
  for i in range(2):
    for j in range(2):
      term = blocks[:, :, i, :, j, :] * jnp.asarray(f2d[i, j], x.dtype)
      out = term if out is None else out + term
  return out


def _upsample_2tap(x: jax.Array, f2d: np.ndarray) -> jax.Array:
  """out[:, 2a + i, 2b + j] = f2d[i, j] x[:, a, b]: [B, H, W, C] -> 2H, 2W.

  Built by stacking four scaled copies (not a broadcast), so the backward
  pass is four strided slices added element-wise, not a reduction.
  """
  b, h, w, c = x.shape
  rows = [jnp.stack([x * jnp.asarray(f2d[i, j], x.dtype) for j in range(2)],
                    axis=3) for i in range(2)]      # [B, H, W, 2, C] each
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, c)


def downsample_2d(x: jax.Array, taps: Sequence[float] = (1, 1),
                  pad: Optional[int] = None) -> jax.Array:
  """Filters with `fir_filter(taps)` and keeps every second pixel.

  EDM's `conv2d(x, f, groups=C, stride=2, padding=(len(f) - 1) // 2)`:
  [1, 1] is a 2x2 average; longer filters zero-pad the border.

  Args:
    x: [B, H, W, C] with even H, W.
    taps: 1-D filter taps.
    pad: zero padding per side (default `(len(taps) - 1) // 2`).
  Returns:
    [B, H/2, W/2, C].
  """
  f2d = fir_filter(taps)
  p = (len(taps) - 1) // 2 if pad is None else pad
  if len(taps) == 2 and p == 0:
    # A 2x2 window at stride 2 tiles the image: a weighted sum over 2x2
    # blocks. XLA:CPU runs the grouped convolution (and its transpose in
    # the backward pass) as a slow generic loop.
    return _block_sum(x, f2d)
  return _depthwise(x, f2d, stride=2, pad=(p, p))


def upsample_2d(x: jax.Array, taps: Sequence[float] = (1, 1)) -> jax.Array:
  """Transposed depthwise conv with `4 * fir_filter(taps)`, stride 2.

  EDM's `conv_transpose2d(x, 4 f, groups=C, stride=2, padding=(len(f)-1)//2)`:
  [1, 1] is nearest-neighbour upsampling.

  Args:
    x: [B, H, W, C].
    taps: 1-D filter taps.
  Returns:
    [B, 2H, 2W, C].
  """
  if len(taps) == 2:
    # Kernel 2, stride 2, padding 0: every output pixel is one input pixel
    # times one filter tap (for [1, 1], times exactly 1: nearest-neighbour
    # upsampling), so it is a broadcast, not a (slow, grouped) convolution.
    return _upsample_2tap(x, 4.0 * fir_filter(taps))
  f2d = 4.0 * fir_filter(taps)[::-1, ::-1]
  k = f2d.shape[0]
  p = k - 1 - (len(taps) - 1) // 2
  # A transposed conv is a conv of the 2x-dilated input with the flipped
  # kernel, padded by k - 1 - padding.
  return _depthwise(x, f2d, lhs_dilation=2, pad=(p, p))


# --------------------------------------------------------------------------
# Layers.
# --------------------------------------------------------------------------


class Conv2d(nn.Module):
  """EDM's `Conv2d`: optional FIR up/down-sampling and a k x k conv.

  `kernel=0` is a parameter-free resampler. With `fused_resample` a
  down-sampling conv runs the k x k conv first (padded by k//2 + f_pad) and
  then the stride-2 filter, as NCSN++'s residual encoder does.
  """

  features: int
  kernel: int
  up: bool = False
  down: bool = False
  resample_filter: Sequence[int] = (1, 1)
  fused_resample: bool = False
  use_bias: bool = True
  init_mode: str = "xavier_uniform"
  init_weight: float = 1.0
  dtype: Optional[Dtype] = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.up and self.down:
      raise ValueError("Conv2d cannot both up- and down-sample")
    if self.fused_resample and self.up:
      raise NotImplementedError("fused up-sampling is not used by SongUNet")
    dtype = x.dtype if self.dtype is None else self.dtype
    x = x.astype(dtype)
    k = self.kernel
    w = b = None
    if k:
      w = self.param("kernel", _weight_init(self.init_mode, self.init_weight),
                     (k, k, x.shape[-1], self.features), self.param_dtype)
      w = w.astype(dtype)
      if self.use_bias:
        b = self.param("bias", nn.initializers.zeros, (self.features,),
                       self.param_dtype).astype(dtype)
    w_pad = k // 2
    f_pad = (len(self.resample_filter) - 1) // 2
    conv = lambda h, p: jax.lax.conv_general_dilated(  # noqa: E731
        h, w, (1, 1), ((p, p), (p, p)), dimension_numbers=_DIMS)

    if self.fused_resample and self.down and w is not None:
      x = conv(x, w_pad + f_pad)
      x = downsample_2d(x, self.resample_filter, pad=0)
    else:
      if self.up:
        x = upsample_2d(x, self.resample_filter)
      if self.down:
        x = downsample_2d(x, self.resample_filter)
      if w is not None:
        x = conv(x, w_pad)
    if b is not None:
      x = x + b
    return x


class GroupNorm(nn.Module):
  """Group normalisation of [B, ..., C] over (spatial, C / groups).

  The same maths and parameters as `flax.linen.GroupNorm` (`scale` ones,
  `bias` zeros, each [C]; variance E[x^2] - E[x]^2 clipped at 0; statistics
  in at least float32; output in `dtype`), with the statistics reduced in
  two stages: per-channel sums over the spatial axes, then a sum over the C
  / groups channels of each group. Flax reduces a [B, H, W, G, C / G] view
  over (H, W, C / G) in one go, which XLA:CPU runs 2-3x slower (forward and
  backward) than the per-channel sums here, whose innermost axis (C) stays
  contiguous and vectorised. Only the summation order differs
  (tests/models/test_unet.py compares it with Flax's).
  """

  num_groups: int
  epsilon: float = 1e-6
  dtype: Optional[Dtype] = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    g = self.num_groups
    if g <= 0 or c % g:
      raise ValueError(f"GroupNorm: num_groups={g} does not divide the "
                       f"{c} channels")
    scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
    out_dtype = jnp.result_type(x, scale, bias) if self.dtype is None \
        else self.dtype
    acc = jnp.promote_types(
        x.dtype if self.dtype is None else self.dtype, jnp.float32)
    xf = x.astype(acc)
    b, size = x.shape[0], c // g
    spatial = tuple(range(1, x.ndim - 1))
    count = float(np.prod(x.shape[1:-1], dtype=np.int64) * size)
    # Per-channel sums [B, C], then per group [B, G].
    s1 = jnp.sum(xf, axis=spatial).reshape(b, g, size).sum(-1)
    s2 = jnp.sum(xf * xf, axis=spatial).reshape(b, g, size).sum(-1)
    mean = s1 / count
    # E[x^2] - E[x]^2 can round below zero.
    var = jnp.maximum(0.0, s2 / count - mean * mean)
    mean = jnp.repeat(mean, size, axis=-1)                      # [B, C]
    mul = jax.lax.rsqrt(jnp.repeat(var, size, axis=-1) + self.epsilon)
    mul = mul * scale.astype(acc)
    shape = (b,) + (1,) * (x.ndim - 2) + (c,)
    y = (xf - mean.reshape(shape)) * mul.reshape(shape) + bias.astype(acc)
    return y.astype(out_dtype)


def _group_norm(channels: int, eps: float, dtype, param_dtype, name: str
                ) -> GroupNorm:
  """EDM's GroupNorm: min(32, C // 4) groups."""
  return GroupNorm(num_groups=min(32, channels // 4), epsilon=eps,
                   dtype=dtype, param_dtype=param_dtype, name=name)


class UNetBlock(nn.Module):
  """EDM's `UNetBlock` with SongUNet's settings as defaults.

  norm0 -> SiLU -> (resample) conv0 -> + affine(emb) -> norm1 -> SiLU ->
  dropout -> conv1; `(h + skip(x)) * skip_scale`; then optional
  self-attention, also residual and scaled by `skip_scale`.
  """

  out_channels: int
  up: bool = False
  down: bool = False
  attention: bool = False
  num_heads: Optional[int] = 1         # SongUNet; None: C // channels_per_head
  channels_per_head: int = 64
  dropout: float = 0.0
  skip_scale: float = math.sqrt(0.5)
  eps: float = 1e-6
  resample_filter: Sequence[int] = (1, 1)
  resample_proj: bool = True
  adaptive_scale: bool = False
  dtype: Optional[Dtype] = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, emb: jax.Array, train: bool = False
               ) -> jax.Array:
    cin, cout = x.shape[-1], self.out_channels
    dt = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    conv = lambda feat, k, init, **kw: Conv2d(  # noqa: E731
        feat, k, resample_filter=self.resample_filter, **init, **dt, **kw)

    orig = x
    h = nn.silu(_group_norm(cin, self.eps, name="norm0", **dt)(x))
    h = conv(cout, 3, _INIT, up=self.up, down=self.down, name="conv0")(h)
    params = nn.Dense(cout * (2 if self.adaptive_scale else 1),
                      kernel_init=_weight_init(**_INIT), name="affine",
                      **dt)(emb)[:, None, None, :].astype(h.dtype)
    norm1 = _group_norm(cout, self.eps, name="norm1", **dt)
    if self.adaptive_scale:
      scale, shift = jnp.split(params, 2, axis=-1)
      h = nn.silu(shift + norm1(h) * (scale + 1))
    else:
      h = nn.silu(norm1(h + params))
    if self.dropout > 0:
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = conv(cout, 3, _INIT_ZERO, name="conv1")(h)

    if cout != cin or self.up or self.down:
      k = 1 if self.resample_proj or cout != cin else 0
      orig = conv(cout, k, _INIT, up=self.up, down=self.down,
                  name="skip")(orig)
    h = (h + orig.astype(h.dtype)) * self.skip_scale

    if self.attention:
      heads = self.num_heads or cout // self.channels_per_head
      if heads < 1 or cout % heads:
        raise ValueError(f"{cout} channels do not split into {heads} heads")
      b, hh, ww, _ = h.shape
      qkv = conv(3 * cout, 1, _INIT_ATTN, name="qkv")(
          _group_norm(cout, self.eps, name="norm2", **dt)(h))
      # EDM's channel layout: [heads, C // heads, (q, k, v)].
      qkv = qkv.reshape(b, hh * ww, heads, cout // heads, 3)
      q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
      # Logits and softmax in float32 (EDM's AttentionOp), at least.
      acc = jnp.promote_types(q.dtype, jnp.float32)
      logits = jnp.einsum("bqhc,bkhc->bhqk", q.astype(acc),
                          k.astype(acc)) / math.sqrt(cout // heads)
      wgt = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
      a = jnp.einsum("bhqk,bkhc->bqhc", wgt, v).reshape(b, hh, ww, cout)
      h = (conv(cout, 1, _INIT_ZERO, name="proj")(a) + h) * self.skip_scale
    return h


# --------------------------------------------------------------------------
# The network.
# --------------------------------------------------------------------------


def _per_level(value, levels: int, name: str) -> List[Any]:
  if isinstance(value, (list, tuple)):
    if len(value) != levels:
      raise ValueError(f"{name} has {len(value)} entries but channel_mult "
                       f"has {levels} levels")
    return list(value)
  return [value] * levels


class SongUNet(nn.Module):
  """EDM's SongUNet: `x [B, H, W, C], *times [B] -> [B, H, W, out_channels]`.

  Times are already-preprocessed scalars per example (e.g. c_noise =
  ln(σ)/4, or flow-map times s, t); scalars are broadcast over the batch.
  `train=True` enables dropout, which draws from the `'dropout'` rng stream.

  Attributes:
    img_resolution: H = W of the input.
    in_channels: C of the input.
    out_channels: channels of the output.
    model_channels: base channel count.
    channel_mult: per-level channel multipliers.
    channel_mult_emb: embedding width = model_channels * this.
    num_blocks: blocks per level (int or per-level sequence).
    attn_resolutions: resolutions with self-attention.
    dropout: dropout rate (float or per-level sequence).
    embedding_type: 'positional' (DDPM++) or 'fourier' (NCSN++, scale 16).
    channel_mult_noise: noise-embedding width = model_channels * this.
    encoder_type: 'standard' (DDPM++), 'skip' or 'residual' (NCSN++).
    decoder_type: 'standard' or 'skip'.
    resample_filter: FIR taps, (1, 1) for DDPM++, (1, 3, 3, 1) for NCSN++.
    num_times: number of time inputs, 1 or 2.
    time_embedding: for two times (s, t): embed 'st' = (s, t) or
      's_dt' = (s, t - s).
    num_heads: attention heads (1 in SongUNet; None: channels // 64).
    zero_output: output conv exactly zero at init (EDM: xavier * 1e-5).
    dtype: compute dtype (e.g. jnp.bfloat16); the output has x's dtype.
      Under bfloat16 the time embedding and mapping MLP run in float32,
      GroupNorm statistics and attention logits/softmax in float32,
      everything else in `dtype`.
    param_dtype: parameter dtype.
  """

  img_resolution: int
  in_channels: int
  out_channels: int
  model_channels: int = 128
  channel_mult: Sequence[int] = (2, 2, 2)
  channel_mult_emb: int = 4
  num_blocks: Union[int, Sequence[int]] = 4
  attn_resolutions: Sequence[int] = (16,)
  dropout: Union[float, Sequence[float]] = 0.10
  embedding_type: str = "positional"
  channel_mult_noise: int = 1
  encoder_type: str = "standard"
  decoder_type: str = "standard"
  resample_filter: Sequence[int] = (1, 1)
  num_times: int = 1
  time_embedding: str = "st"
  num_heads: Optional[int] = 1
  zero_output: bool = True
  dtype: Optional[Dtype] = jnp.float32
  param_dtype: Dtype = jnp.float32

  def _check(self) -> None:
    for value, allowed, name in (
        (self.embedding_type, EMBEDDING_TYPES, "embedding_type"),
        (self.encoder_type, ENCODER_TYPES, "encoder_type"),
        (self.decoder_type, DECODER_TYPES, "decoder_type"),
        (self.time_embedding, TIME_EMBEDDINGS, "time_embedding")):
      if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {allowed}")
    if self.num_times not in (1, 2):
      raise ValueError(f"num_times must be 1 or 2, got {self.num_times}")
    levels = len(self.channel_mult)
    if levels < 1 or self.img_resolution % (1 << (levels - 1)):
      raise ValueError(f"img_resolution={self.img_resolution} is not "
                       f"divisible by 2^{levels - 1} (channel_mult="
                       f"{tuple(self.channel_mult)})")

  def _embed_times(self, times: Sequence[jax.Array], batch: int
                   ) -> jax.Array:
    ts = [broadcast_time(t, batch) for t in times]
    if self.num_times == 2 and self.time_embedding == "s_dt":
      ts = [ts[0], ts[1] - ts[0]]
    width = self.model_channels * self.channel_mult_noise
    embs = []
    for i, t in enumerate(ts):
      if self.embedding_type == "positional":
        e = positional_embedding(t, width, endpoint=True)
      else:
        e = FourierFeatures(width, scale=16.0, seed=i,
                            name=f"map_noise{i}")(t)
      # EDM flips the [cos, sin] halves: the embedding is [sin, cos].
      embs.append(jnp.concatenate([e[:, width // 2:], e[:, :width // 2]],
                                  axis=-1))
    return jnp.concatenate(embs, axis=-1)

  @nn.compact
  def __call__(self, x: jax.Array, *times: jax.Array, train: bool = False
               ) -> jax.Array:
    self._check()
    res0 = self.img_resolution
    if x.ndim != 4 or x.shape[1:] != (res0, res0, self.in_channels):
      raise ValueError(f"expected x of shape [B, {res0}, {res0}, "
                       f"{self.in_channels}], got {x.shape}")
    if len(times) != self.num_times:
      raise ValueError(f"SongUNet takes {self.num_times} time input(s), got "
                       f"{len(times)}")
    out_dtype = x.dtype
    levels = len(self.channel_mult)
    blocks = _per_level(self.num_blocks, levels, "num_blocks")
    drops = _per_level(self.dropout, levels, "dropout")
    dt = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    filt = tuple(self.resample_filter)
    mc = self.model_channels

    def block(name, cout, level, **kw):
      return UNetBlock(cout, num_heads=self.num_heads,
                       dropout=float(drops[level]), resample_filter=filt,
                       name=name, **dt, **kw)

    def conv(name, cout, k, init=None, **kw):
      return Conv2d(cout, k, resample_filter=filt, name=name,
                    **(init if init is not None else _INIT), **dt, **kw)

    # Mapping. The time embedding and the mapping MLP stay in (at least)
    # float32 under a low-precision `dtype`: they are tiny next to the
    # convolutions, and the time tangent of a flow map's JVP enters here.
    emb_ch = mc * self.channel_mult_emb
    emb = self._embed_times(times, x.shape[0])
    emb_dt = jnp.promote_types(self.dtype or x.dtype, jnp.float32)
    dense = lambda name: nn.Dense(  # noqa: E731
        emb_ch, kernel_init=_weight_init(**_INIT), name=name, dtype=emb_dt,
        param_dtype=self.param_dtype)
    emb = nn.silu(dense("map_layer0")(emb))
    emb = nn.silu(dense("map_layer1")(emb))

    # Encoder.
    h = x.astype(x.dtype if self.dtype is None else self.dtype)
    aux = h
    skips = []
    cout = self.in_channels
    for level, mult in enumerate(self.channel_mult):
      res = res0 >> level
      tag = f"enc_{res}x{res}"
      if level == 0:
        cout = mc
        h = conv(f"{tag}_conv", cout, 3)(h)
        skips.append(h)
      else:
        h = block(f"{tag}_down", cout, level, down=True)(h, emb, train)
        skips.append(h)
        if self.encoder_type == "skip":
          aux = downsample_2d(aux, filt)
          h = skips[-1] = h + conv(f"{tag}_aux_skip", cout, 1)(aux)
        elif self.encoder_type == "residual":
          aux = conv(f"{tag}_aux_residual", cout, 3, down=True,
                     fused_resample=True)(aux)
          h = skips[-1] = aux = (h + aux) / math.sqrt(2)
      for idx in range(blocks[level]):
        cout = mc * mult
        h = block(f"{tag}_block{idx}", cout, level,
                  attention=res in self.attn_resolutions)(h, emb, train)
        skips.append(h)

    # Decoder.
    out = None
    for level in reversed(range(levels)):
      mult = self.channel_mult[level]
      res = res0 >> level
      tag = f"dec_{res}x{res}"
      if level == levels - 1:
        h = block(f"{tag}_in0", cout, level, attention=True)(h, emb, train)
        h = block(f"{tag}_in1", cout, level)(h, emb, train)
      else:
        h = block(f"{tag}_up", cout, level, up=True)(h, emb, train)
      for idx in range(blocks[level] + 1):
        cout = mc * mult
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        attn = idx == blocks[level] and res in self.attn_resolutions
        h = block(f"{tag}_block{idx}", cout, level, attention=attn)(
            h, emb, train)
      if self.decoder_type == "skip" or level == 0:
        if out is not None:
          out = upsample_2d(out, filt)
        tmp = nn.silu(_group_norm(cout, 1e-6, name=f"{tag}_aux_norm",
                                  **dt)(h))
        init = (dict(init_mode="xavier_uniform", init_weight=0.0)
                if self.zero_output else _INIT_ZERO)
        tmp = conv(f"{tag}_aux_conv", self.out_channels, 3, init)(tmp)
        out = tmp if out is None else tmp + out
    return out.astype(out_dtype)


# --------------------------------------------------------------------------
# Config.
# --------------------------------------------------------------------------


def _as_tuple(value):
  return tuple(value) if isinstance(value, (list, tuple)) else value


def from_config(model_cfg, data_shape: Sequence[int], num_times: int
                ) -> SongUNet:
  """Builds the SongUNet of `config.model` for images of `data_shape`.

  Args:
    model_cfg: `config.model`; reads `dropout` and the `unet` section.
    data_shape: (H, W, C) with H == W.
    num_times: number of time inputs (1 or 2).
  Returns:
    The (unbound) module; output channels equal input channels.
  """
  if len(data_shape) != 3:
    raise ValueError(f"SongUNet needs image data (H, W, C), got {data_shape}")
  h, w, c = (int(d) for d in data_shape)
  if h != w:
    raise ValueError(f"SongUNet needs square images, got H={h}, W={w}; set "
                     f"data.image_size to crop/resize to a square")
  u = model_cfg.unet
  if u.dtype not in DTYPES:
    raise ValueError(f"model.unet.dtype={u.dtype!r} is not one of {DTYPES}")
  return SongUNet(
      img_resolution=h, in_channels=c, out_channels=c,
      model_channels=int(u.model_channels),
      channel_mult=tuple(int(m) for m in u.channel_mult),
      channel_mult_emb=int(u.channel_mult_emb),
      num_blocks=_as_tuple(u.num_blocks),
      attn_resolutions=tuple(int(r) for r in u.attn_resolutions),
      dropout=_as_tuple(model_cfg.dropout),
      embedding_type=u.embedding_type,
      channel_mult_noise=int(u.channel_mult_noise),
      encoder_type=u.encoder_type, decoder_type=u.decoder_type,
      resample_filter=tuple(u.resample_filter),
      num_times=int(num_times), time_embedding=u.time_embedding,
      dtype=jnp.dtype(u.dtype))
