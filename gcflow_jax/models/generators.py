"""Constrained generators g: R^D -> data space for distribution matching.

The generator of "Distribution Matching via Generalized Consistency Models"
(arXiv 2508.12222) lives in a constraint class G. Each module here maps a
latent batch z [B, D] to samples [B, *data_shape]:

* `AffineGenerator`: g(z) = A z + b (or A z for a *linear* map), with A
  - 'full': any N x D matrix (D may differ from N: a low-rank affine map);
  - 'orthogonal': orthonormal columns, A = Q (times a learned scalar scale
    when `learn_scale`), Q from the QR factorisation of a free N x D matrix
    with the signs of diag(R) folded in (a smooth chart, D <= N);
  - 'diagonal': A = diag(a), D = N.
* `MLPGenerator`: an MLP z -> x. With D < N it is the low-dimensional latent
  decoder for vectors (or flattened images); with D >= N it is the
  unconstrained generator.
* `ConvDecoder`: a small convolutional decoder for images (D < N): a dense
  layer to an (H/2^k, W/2^k, c_0) grid, then k nearest-neighbour x2
  upsamplings, two 3x3 convolutions with GroupNorm/SiLU per resolution.

`make_generator(name, data_shape, latent_dim, ...)` returns `(module,
apply_fn, init_fn)` with `apply_fn(params, z) -> [B, *data_shape]` and
`init_fn(key) -> params`, mirroring `gcflow_jax.models.make_network`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["AffineGenerator", "MLPGenerator", "ConvDecoder",
           "make_generator", "GENERATORS", "AFFINE_STRUCTURES",
           "OUTPUT_ACTIVATIONS", "orthonormal_columns"]

GENERATORS = ("affine", "linear", "mlp", "conv")
AFFINE_STRUCTURES = ("full", "orthogonal", "diagonal")
OUTPUT_ACTIVATIONS = ("identity", "tanh")


def _output(x: jax.Array, activation: str) -> jax.Array:
  if activation == "identity":
    return x
  if activation == "tanh":
    return jnp.tanh(x)
  raise ValueError(f"output activation {activation!r} is not one of "
                   f"{OUTPUT_ACTIVATIONS}")


def orthonormal_columns(w: jax.Array) -> jax.Array:
  """Q with orthonormal columns from a free matrix w [N, D], N >= D.

  Q is the reduced-QR factor of w with the sign of each diagonal entry of R
  moved into Q, so Q R is the unique QR factorisation with R_ii > 0 and Q is
  a smooth function of w wherever w has full column rank.

  Args:
    w: [N, D] matrix, N >= D.
  Returns:
    [N, D] matrix with Q^T Q = I_D.
  """
  if w.shape[0] < w.shape[1]:
    raise ValueError(f"orthonormal columns need N >= D, got w {w.shape}")
  q, r = jnp.linalg.qr(w, mode="reduced")
  sign = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(w.dtype)
  return q * sign[None, :]


class AffineGenerator(nn.Module):
  """z [B, D] -> (A z + b) reshaped to [B, *data_shape].

  Attributes:
    data_shape: output shape per example; N = prod(data_shape).
    structure: 'full' | 'orthogonal' | 'diagonal' (see the module docstring).
    bias: False gives the linear map g(z) = A z.
    learn_scale: 'orthogonal' only: A = exp(s) Q with a learned scalar s
      (a similarity transform); False keeps A exactly orthonormal.
    output: 'identity' | 'tanh' applied to A z + b.
  """

  data_shape: Tuple[int, ...]
  structure: str = "full"
  bias: bool = True
  learn_scale: bool = False
  output: str = "identity"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    b, d = z.shape
    n = math.prod(self.data_shape)
    if self.structure == "full":
      # Orthogonal init: A starts as a rotation (D = N) or an isometric
      # embedding (D < N), i.e. g#N(0, I) starts with unit covariance.
      a = self.param("kernel", nn.initializers.orthogonal(), (n, d),
                     jnp.float32)
      x = z @ a.T.astype(z.dtype)
    elif self.structure == "orthogonal":
      if d > n:
        raise ValueError(f"structure='orthogonal' needs latent_dim <= N, got "
                         f"D={d} > N={n}")
      w = self.param("kernel", nn.initializers.orthogonal(), (n, d),
                     jnp.float32)
      a = orthonormal_columns(w.astype(z.dtype))
      if self.learn_scale:
        log_s = self.param("log_scale", nn.initializers.zeros, (),
                           jnp.float32)
        a = a * jnp.exp(log_s).astype(z.dtype)
      x = z @ a.T
    elif self.structure == "diagonal":
      if d != n:
        raise ValueError(f"structure='diagonal' needs latent_dim == N, got "
                         f"D={d}, N={n}")
      a = self.param("diag", nn.initializers.ones, (n,), jnp.float32)
      x = z * a.astype(z.dtype)[None, :]
    else:
      raise ValueError(f"affine structure {self.structure!r} is not one of "
                       f"{AFFINE_STRUCTURES}")
    if self.bias:
      x = x + self.param("bias", nn.initializers.zeros, (n,),
                         jnp.float32).astype(z.dtype)
    return _output(x, self.output).reshape((b,) + tuple(self.data_shape))


class MLPGenerator(nn.Module):
  """z [B, D] -> MLP(z) reshaped to [B, *data_shape] (SiLU hidden layers).

  Attributes:
    data_shape: output shape per example; N = prod(data_shape).
    hidden: hidden widths.
    output: 'identity' | 'tanh'.
  """

  data_shape: Tuple[int, ...]
  hidden: Sequence[int] = (256, 256)
  output: str = "identity"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    b = z.shape[0]
    h = z
    for width in self.hidden:
      h = nn.silu(nn.Dense(width)(h))
    x = nn.Dense(math.prod(self.data_shape))(h)
    return _output(x, self.output).reshape((b,) + tuple(self.data_shape))


class ConvDecoder(nn.Module):
  """z [B, D] -> images [B, H, W, C] (a small DCGAN-like decoder).

  `channels[i]` is the number of feature maps at level i, coarsest first;
  k = len(channels) - 1 nearest-neighbour x2 upsamplings take the
  (H / 2^k, W / 2^k) grid of the first dense layer to (H, W) (8x8 with two
  levels starts at 4x4, 28x28 with three levels at 7x7). Each level has two
  3x3 convolutions with GroupNorm and SiLU; a last 3x3 convolution outputs C.

  Attributes:
    data_shape: (H, W, C); H and W divisible by 2^k.
    channels: feature maps per resolution, coarsest first.
    output: 'identity' | 'tanh' (images live in [-1, 1]).
  """

  data_shape: Tuple[int, int, int]
  channels: Sequence[int] = (64, 32)
  output: str = "identity"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    hh, ww, cc = self.data_shape
    k = len(self.channels) - 1
    if k < 0 or hh % 2 ** k or ww % 2 ** k:
      raise ValueError(f"ConvDecoder: {len(self.channels)} levels need H, W "
                       f"divisible by 2^{k}, got {self.data_shape}")
    h0, w0 = hh // 2 ** k, ww // 2 ** k
    b = z.shape[0]
    x = nn.Dense(h0 * w0 * self.channels[0])(z)
    x = x.reshape((b, h0, w0, self.channels[0]))
    for level, c in enumerate(self.channels):
      if level > 0:
        x = jax.image.resize(x, (b, 2 * x.shape[1], 2 * x.shape[2],
                                 x.shape[3]), method="nearest")
      for _ in range(2):
        x = nn.Conv(c, (3, 3), padding="SAME")(x)
        x = nn.GroupNorm(num_groups=math.gcd(8, c))(x)
        x = nn.silu(x)
    x = nn.Conv(cc, (3, 3), padding="SAME")(x)
    return _output(x, self.output)


def make_generator(name: str, data_shape: Sequence[int], latent_dim: int, *,
                   structure: str = "full", learn_scale: bool = False,
                   hidden: Sequence[int] = (256, 256),
                   channels: Sequence[int] = (64, 32),
                   output: str = "identity"
                   ) -> Tuple[Any, Callable[..., Any], Callable[..., Any]]:
  """Builds a generator of the constraint class `name`.

  Args:
    name: 'affine' (A z + b), 'linear' (A z), 'mlp' or 'conv' (images only).
    data_shape: per-example output shape, e.g. (2,) or (28, 28, 1).
    latent_dim: D, the dimension of z ~ N(0, I_D).
    structure: affine/linear only: 'full' | 'orthogonal' | 'diagonal'.
    learn_scale: 'orthogonal' only: learn a scalar scale.
    hidden: 'mlp' hidden widths.
    channels: 'conv' feature maps per resolution (coarsest first).
    output: 'identity' | 'tanh'.
  Returns:
    module: the Flax module.
    apply_fn: `(params, z [B, D]) -> [B, *data_shape]`.
    init_fn: `key -> params`.
  """
  data_shape = tuple(int(s) for s in data_shape)
  if output not in OUTPUT_ACTIVATIONS:
    raise ValueError(f"generator output {output!r} is not one of "
                     f"{OUTPUT_ACTIVATIONS}")
  if latent_dim < 1:
    raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
  if name in ("affine", "linear"):
    if structure not in AFFINE_STRUCTURES:
      raise ValueError(f"affine structure {structure!r} is not one of "
                       f"{AFFINE_STRUCTURES}")
    n = math.prod(data_shape)
    if structure == "diagonal" and latent_dim != n:
      raise ValueError(f"structure='diagonal' needs latent_dim == N = {n}, "
                       f"got {latent_dim}")
    if structure == "orthogonal" and latent_dim > n:
      raise ValueError(f"structure='orthogonal' needs latent_dim <= N = {n}, "
                       f"got {latent_dim}")
    module = AffineGenerator(data_shape=data_shape, structure=structure,
                             bias=(name == "affine"), learn_scale=learn_scale,
                             output=output)
  elif name == "mlp":
    module = MLPGenerator(data_shape=data_shape, hidden=tuple(hidden),
                          output=output)
  elif name == "conv":
    if len(data_shape) != 3:
      raise ValueError(f"generator 'conv' needs image data (H, W, C), got "
                       f"{data_shape}")
    module = ConvDecoder(data_shape=data_shape, channels=tuple(channels),
                         output=output)
  else:
    raise ValueError(f"generator {name!r} is not one of {GENERATORS}")

  def apply_fn(params, z):
    return module.apply(params, z)

  def init_fn(key):
    return module.init(key, jnp.zeros((1, latent_dim), jnp.float32))

  return module, apply_fn, init_fn
