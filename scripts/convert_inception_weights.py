"""Converts the pytorch-fid FID Inception weights to this codebase's ``.npz``.

Input: the public PyTorch file ``pt_inception-2015-12-05-6726825d.pth`` (the
TF 2015-12-05 Inception ported by pytorch-fid; get it from
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth)
read with ``torch.load`` (torch needed), or an ``.npz`` export of its
state_dict made wherever torch is installed::

  import numpy as np, torch
  sd = torch.load("pt_inception-2015-12-05-6726825d.pth", map_location="cpu")
  np.savez("pt_inception_state_dict.npz",
           **{k: v.numpy() for k, v in sd.items()})

Output: ``--output`` ``.npz`` of float32 arrays named like the Flax variables
(``params/Mixed_5b/branch1x1/conv/kernel``, ``batch_stats/.../bn/mean``; conv
kernels transposed to ``[kh, kw, in, out]``, fc to ``[in, out]``) and a
``<output>.json`` sidecar with the content sha256 that
`gcflow_jax.evaluation.inception.load_variables` checks on every load.

Checks: a ``.pth`` input must have a sha256 starting with ``6726825d`` (the
torch.hub filename convention; the full digest of the public file is not
recorded anywhere we could verify offline, so pass it with
``--expected_source_sha256`` if you have it). Names and shapes must match the
network exactly.

  python scripts/convert_inception_weights.py \\
      --input=pt_inception-2015-12-05-6726825d.pth --output=inception_fid.npz
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import numpy as np

# Runnable from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcflow_jax.evaluation import inception  # noqa: E402


def file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """``.pth`` (via torch) or ``.npz`` state dict -> name -> numpy array."""
  if path.endswith(".npz"):
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit(
        f"reading {path} needs torch (pip install torch), or export the "
        "state_dict to .npz where torch is installed (see --help)") from e
  sd = torch.load(path, map_location="cpu", weights_only=True)
  if "state_dict" in sd and isinstance(sd["state_dict"], dict):
    sd = sd["state_dict"]
  return {k: v.detach().cpu().numpy() for k, v in sd.items()}


def convert(input_path: str, output_path: str, *,
            check_source: bool = True,
            expected_source_sha256: str | None = None) -> str:
  """Converts and writes; returns the content sha256 of the output."""
  src_sha = file_sha256(input_path)
  if expected_source_sha256 and src_sha != expected_source_sha256.lower():
    raise SystemExit(f"{input_path}: sha256 {src_sha} != expected "
                     f"{expected_source_sha256}")
  prefix_ok = src_sha.startswith(inception.PTH_SHA256_PREFIX)
  if check_source and input_path.endswith((".pth", ".pt")) and not prefix_ok:
    raise SystemExit(
        f"{input_path}: sha256 {src_sha} does not start with "
        f"{inception.PTH_SHA256_PREFIX} (the hash in the public filename "
        f"{inception.PTH_FILENAME}); is this the pytorch-fid file? "
        "(--skip_source_check to convert anyway)")
  flat = inception.variables_from_torch_state_dict(read_state_dict(input_path))
  meta = {
      "source_file": os.path.basename(input_path),
      "source_sha256": src_sha,
      "source_sha256_prefix_matches_public_name": bool(prefix_ok),
      "source_url": inception.PTH_URL,
  }
  digest = inception.save_variables(flat, output_path, meta)
  n = sum(v.size for k, v in flat.items() if k.startswith("params/"))
  print(f"wrote {output_path}: {len(flat)} arrays, {n} parameters, "
        f"content sha256 {digest} (source sha256 {src_sha})")
  return digest


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
      description="Convert pt_inception-2015-12-05-6726825d.pth (or an .npz "
      "export of its state_dict) to a gcflow_jax .npz.")
  p.add_argument("--input", required=True)
  p.add_argument("--output", required=True)
  p.add_argument("--skip_source_check", action="store_true")
  p.add_argument("--expected_source_sha256", default=None)
  a = p.parse_args(argv)
  try:
    convert(a.input, a.output, check_source=not a.skip_source_check,
            expected_source_sha256=a.expected_source_sha256)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
