"""Weights of the FID Inception-v3: variables, PyTorch naming, files.

The network itself (the ``pool_3`` network of the TF 2015-12-05 graph, as
ported by pytorch-fid, with its two resize/normalisation protocols) is in
`gcflow_jax.evaluation.inception_net`; its names are re-exported here, so
``from gcflow_jax.evaluation.inception import InceptionV3`` keeps working.

Weights: the public PyTorch file ``pt_inception-2015-12-05-6726825d.pth``
(released by pytorch-fid) converted to an ``.npz`` of named arrays with
``scripts/convert_inception_weights.py``. Nothing is downloaded: the path comes
from an argument or the ``GCFLOW_INCEPTION_WEIGHTS`` environment variable, and a
missing file is a ``FileNotFoundError`` that says how to get it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any, Mapping
import zipfile
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from gcflow_jax import run_record
from gcflow_jax.evaluation.inception_net import INPUT_SIZE
from gcflow_jax.evaluation.inception_net import InceptionV3
from gcflow_jax.evaluation.inception_net import NUM_CLASSES
from gcflow_jax.evaluation.inception_net import POOL_DIM
from gcflow_jax.evaluation.inception_net import PROTOCOLS
from gcflow_jax.evaluation.inception_net import resize_bilinear
from gcflow_jax.evaluation.inception_net import resize_matrix

__all__ = [
    "InceptionV3",
    "NUM_CLASSES",
    "POOL_DIM",
    "INPUT_SIZE",
    "PROTOCOLS",
    "EXPECTED_NUM_PARAMS",
    "WEIGHTS_ENV_VAR",
    "PTH_FILENAME",
    "PTH_URL",
    "PTH_SHA256_PREFIX",
    "resize_matrix",
    "resize_bilinear",
    "init_variables",
    "count_params",
    "flatten_variables",
    "unflatten_variables",
    "content_sha256",
    "torch_name",
    "torch_state_dict_shapes",
    "variables_from_torch_state_dict",
    "torch_state_dict_from_variables",
    "resolve_weights_path",
    "load_variables",
    "save_variables",
    "missing_weights_message",
]

# sum of sizes of the "params" collection (conv kernels, BN scale/bias, fc);
# identical to `sum(p.numel() for p in fid_inception_v3().parameters())`.
EXPECTED_NUM_PARAMS = 23_850_960
# running mean/var of the 94 batch norms (buffers in PyTorch).
EXPECTED_NUM_BATCH_STATS = 34_432

WEIGHTS_ENV_VAR = "GCFLOW_INCEPTION_WEIGHTS"
SHA256_ENV_VAR = "GCFLOW_INCEPTION_SHA256"
PTH_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
PTH_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/"
           "fid_weights/" + PTH_FILENAME)
# torch.hub convention: the 8 hex digits in the filename are the first 8 of the
# file's sha256. This is all that can be checked without the file itself.
PTH_SHA256_PREFIX = "6726825d"


# --------------------------------------------------------------------------
# Variables: init, counting, flat naming, checksums.
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _abstract_variables() -> Any:
  # Shapes do not depend on the key; tracing the init takes ~1 s, so cache.
  x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
  return jax.eval_shape(InceptionV3().init, jax.random.key(0), x)


def init_variables(key: jax.Array | int = 0, *,
                   abstract: bool = False) -> Any:
  """Random variables ``{"params", "batch_stats"}`` (for tests/benchmarks).

  With ``abstract=True`` returns ``jax.ShapeDtypeStruct`` leaves via
  ``jax.eval_shape`` (no compute). Otherwise He-normal conv/fc kernels, unit
  BN scale/variance and zero biases/means, drawn with NumPy from ``key``'s
  seed: much faster than tracing ``model.init`` (~35 s on 2 CPU cores) and
  never to be mistaken for real weights.
  """
  k = key if isinstance(key, jax.Array) else jax.random.key(int(key))
  shapes = _abstract_variables()
  if abstract:
    return shapes
  seed = int(np.asarray(jax.random.key_data(k)).ravel()[-1])
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = "/".join(str(getattr(p, "key", p)) for p in path)
    shape = tuple(leaf.shape)
    if name.endswith("kernel"):
      fan_in = int(np.prod(shape[:-1]))
      return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(
          np.float32)
    if name.endswith(("scale", "var")):
      return np.ones(shape, np.float32)
    return np.zeros(shape, np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def count_params(variables: Any, collection: str = "params") -> int:
  """Number of scalars in one variable collection."""
  leaves = jax.tree_util.tree_leaves(variables[collection])
  return int(sum(int(np.prod(v.shape)) for v in leaves))


def flatten_variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Nested Flax variables -> ``{"params/Mixed_5b/.../conv/kernel": array}``."""
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    flat[name] = np.asarray(leaf)
  return flat


def unflatten_variables(flat: Mapping[str, Any]) -> dict[str, Any]:
  """Inverse of `flatten_variables` (keys starting with ``__`` are skipped)."""
  nested: dict[str, Any] = {}
  for name, value in flat.items():
    if name.startswith("__"):
      continue
    node = nested
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return nested


def content_sha256(flat: Mapping[str, Any]) -> str:
  """sha256 over sorted names, dtypes, shapes and little-endian bytes.

  Independent of the container (``.npz`` zip timestamps differ between
  writes), so it identifies the weights themselves.
  """
  h = hashlib.sha256()
  for name in sorted(k for k in flat if not k.startswith("__")):
    a = np.ascontiguousarray(np.asarray(flat[name]))
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    h.update(name.encode())
    h.update(str(a.dtype.str).encode())
    h.update(str(a.shape).encode())
    h.update(a.tobytes())
  return h.hexdigest()


# --------------------------------------------------------------------------
# PyTorch <-> Flax naming.
# --------------------------------------------------------------------------
_LEAF_TO_TORCH = {
    ("params", "kernel", "conv"): "weight",
    ("params", "scale", "bn"): "weight",
    ("params", "bias", "bn"): "bias",
    ("batch_stats", "mean", "bn"): "running_mean",
    ("batch_stats", "var", "bn"): "running_var",
    ("params", "kernel", "fc"): "weight",
    ("params", "bias", "fc"): "bias",
}


def torch_name(flax_name: str) -> str:
  """Flax name -> PyTorch name.

  ``params/Mixed_5b/branch1x1/conv/kernel`` ->
  ``Mixed_5b.branch1x1.conv.weight``
  """
  col, *mods, leaf = flax_name.split("/")
  key = (col, leaf, mods[-1])
  if key not in _LEAF_TO_TORCH:
    raise KeyError(f"no PyTorch name for {flax_name}")
  return ".".join(mods + [_LEAF_TO_TORCH[key]])


def _to_torch_layout(flax_name: str, a: np.ndarray) -> np.ndarray:
  # conv: [kh, kw, in, out] -> [out, in, kh, kw]; fc: [in, out] -> [out, in].
  if flax_name.endswith("conv/kernel"):
    return np.transpose(a, (3, 2, 0, 1))
  if flax_name.endswith("fc/kernel"):
    return a.T
  return a


def _from_torch_layout(flax_name: str, a: np.ndarray) -> np.ndarray:
  if flax_name.endswith("conv/kernel"):
    return np.transpose(a, (2, 3, 1, 0))
  if flax_name.endswith("fc/kernel"):
    return a.T
  return a


def torch_state_dict_shapes() -> dict[str, tuple[int, ...]]:
  """PyTorch ``state_dict`` names and shapes of ``fid_inception_v3()``.

  Derived from this module (no torch needed); ``num_batches_tracked``
  buffers are not listed (they carry no information at inference).
  """
  abstract = _abstract_variables()
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    shape = tuple(leaf.shape)
    if name.endswith("conv/kernel"):
      shape = (shape[3], shape[2], shape[0], shape[1])
    elif name.endswith("fc/kernel"):
      shape = shape[::-1]
    out[torch_name(name)] = shape
  return out


def variables_from_torch_state_dict(
    state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """PyTorch ``fid_inception_v3`` state dict -> flat Flax arrays (float32).

  Args:
    state_dict: name -> array (torch tensors or numpy arrays). Extra
      ``num_batches_tracked`` entries are ignored; any other missing or
      unexpected name, or a shape mismatch, raises ``ValueError``.

  Returns:
    ``{flax_name: np.ndarray}`` as stored in the converted ``.npz``.
  """
  sd = {k: v for k, v in state_dict.items()
        if not k.endswith("num_batches_tracked")}
  abstract = _abstract_variables()
  flat_out = {}
  used = set()
  problems = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    tname = torch_name(name)
    if tname not in sd:
      problems.append(f"missing {tname}")
      continue
    a = sd[tname]
    if hasattr(a, "detach"):  # torch.Tensor
      a = a.detach().cpu().numpy()
    a = _from_torch_layout(name, np.asarray(a, dtype=np.float32))
    if tuple(a.shape) != tuple(leaf.shape):
      problems.append(f"{tname}: shape {a.shape} after transpose, expected "
                      f"{tuple(leaf.shape)}")
      continue
    flat_out[name] = a
    used.add(tname)
  extra = sorted(set(sd) - used)
  if extra:
    problems.append(f"unexpected entries {extra[:5]}"
                    f"{' ...' if len(extra) > 5 else ''}")
  if problems:
    raise ValueError("state dict is not the pytorch-fid FID Inception "
                     f"(pt_inception-2015-12-05): {problems[:8]}")
  return flat_out


def torch_state_dict_from_variables(
    flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Inverse of `variables_from_torch_state_dict` (numpy arrays)."""
  return {torch_name(k): _to_torch_layout(k, np.asarray(v))
          for k, v in flat.items() if not k.startswith("__")}


# --------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------
def missing_weights_message(path: str | None) -> str:
  where = (f"No file at {path!r}." if path else
           f"No weights given (argument `inception_weights` / "
           f"`--inception_weights` or ${WEIGHTS_ENV_VAR}).")
  return (
      f"{where} FID/KID/IS need the FID Inception weights; this codebase never "
      "downloads them and never substitutes other weights.\n"
      f"  1. Download the pytorch-fid file {PTH_FILENAME} from\n"
      f"     {PTH_URL}\n"
      "  2. Convert it once (torch needed for .pth; or pass an .npz export of "
      "its state_dict):\n"
      "     python scripts/convert_inception_weights.py "
      f"--input={PTH_FILENAME} --output=inception_fid.npz\n"
      f"  3. Point to it: --inception_weights=inception_fid.npz or "
      f"export {WEIGHTS_ENV_VAR}=/abs/path/inception_fid.npz\n"
      "Without Inception weights, use the offline metrics fd_digits/"
      "kid_digits/fd_mnist/kid_mnist (not comparable to FID).")


def resolve_weights_path(path: str | os.PathLike | None = None) -> str:
  """Argument > ``$GCFLOW_INCEPTION_WEIGHTS``; raises if no file is there."""
  path = os.fspath(path) if path is not None else os.environ.get(
      WEIGHTS_ENV_VAR) or None
  if not path or not os.path.isfile(path):
    raise FileNotFoundError(missing_weights_message(path))
  if path.endswith((".pth", ".pt")):
    raise ValueError(
        f"{path} is a PyTorch file; convert it first: python "
        f"scripts/convert_inception_weights.py --input={path} "
        "--output=inception_fid.npz")
  return path


def save_variables(flat: Mapping[str, np.ndarray], path: str,
                   meta: Mapping[str, Any] | None = None) -> str:
  """Writes an ``.npz`` (+ ``<path>.json`` sidecar with the content sha256).

  Returns:
    The content sha256 (see `content_sha256`).
  """
  digest = content_sha256(flat)
  info = dict(meta or {}, content_sha256=digest, format="gcflow_jax flax "
              "variables, '/'-joined names", network="fid_inception_v3")
  with run_record.atomic_open(path, "wb") as f:
    np.savez(f, **{k: np.asarray(v) for k, v in flat.items()})
  with run_record.atomic_open(path + ".json") as f:
    json.dump(info, f, indent=2, sort_keys=True)
  return digest


def load_variables(path: str | os.PathLike | None = None, *,
                   expected_sha256: str | None = None) -> dict[str, Any]:
  """Loads converted FID Inception variables and checks them.

  Checksum (content sha256 of the arrays, see `content_sha256`) is compared
  with, in order: ``expected_sha256``, ``$GCFLOW_INCEPTION_SHA256``, the
  ``<path>.json`` sidecar written by the converter. A mismatch raises; with
  none of them available only names and shapes are checked.

  Args:
    path: ``.npz`` written by ``scripts/convert_inception_weights.py``;
      ``None`` reads ``$GCFLOW_INCEPTION_WEIGHTS``.
    expected_sha256: optional content digest to enforce.

  Returns:
    ``{"params": ..., "batch_stats": ...}`` nested dicts of float32 arrays.
  """
  path = resolve_weights_path(path)
  try:
    with np.load(path, allow_pickle=False) as z:
      flat = {k: z[k] for k in z.files}
  except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as e:
    msg = " ".join(str(e).split())
    raise ValueError(f"Inception weights {path!r} are not a readable .npz "
                     f"({type(e).__name__}: {msg}); convert the .pth again "
                     "with scripts/convert_inception_weights.py") from e
  expected = expected_sha256 or os.environ.get(SHA256_ENV_VAR) or None
  source = "argument/env"
  if expected is None and os.path.isfile(path + ".json"):
    with open(path + ".json") as f:
      expected = json.load(f).get("content_sha256")
    source = path + ".json"
  if expected is not None:
    got = content_sha256(flat)
    if got != expected.lower():
      raise ValueError(f"Inception weights {path} fail the checksum: content "
                       f"sha256 {got} != expected {expected} (from {source}). "
                       "Re-run the converter on the original .pth.")
  abstract = _abstract_variables()
  want = {"/".join(str(getattr(k, "key", k)) for k in p): tuple(l.shape)
          for p, l in jax.tree_util.tree_flatten_with_path(abstract)[0]}
  got_shapes = {k: tuple(v.shape) for k, v in flat.items()
                if not k.startswith("__")}
  if got_shapes != want:
    missing = sorted(set(want) - set(got_shapes))[:5]
    extra = sorted(set(got_shapes) - set(want))[:5]
    bad = [k for k in want if k in got_shapes and got_shapes[k] != want[k]][:5]
    raise ValueError(f"{path} is not a converted FID Inception: missing "
                     f"{missing}, unexpected {extra}, wrong shape {bad}")
  return unflatten_variables(
      {k: np.asarray(v, np.float32) for k, v in flat.items()})
