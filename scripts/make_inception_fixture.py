"""Writes the PyTorch reference fixture for the Flax FID Inception port.

The fixture lets the default test suite check `gcflow_jax.evaluation.inception`
against pytorch-fid without torch: pool_3 features and logits of a few small
images under a *seed-generated* state dict (the real weights are not needed;
the architecture, layouts, paddings, pooling quirks and resize are what is
checked). The state dict is not stored: `seeded_state_dict` (NumPy only)
rebuilds it from the seed and the PyTorch names and shapes stored in the
fixture, here and in the test, which converts it with the project's converter
(`inception.variables_from_torch_state_dict`).

The reference forward is pytorch-fid's own code (``pytorch_fid.inception``:
``InceptionV3([3])`` with its ``FIDInceptionA/C/E_1/E_2`` blocks, its
``F.interpolate`` resize and ``2x - 1`` normalisation), run in float64. pytorch-
fid builds on torchvision's ``Inception3`` and ``Inception{A..E}``; torchvision
does not install beside the CPU torch wheel used here, so this script provides
those base classes (layer definitions of torchvision's inception.py: names,
channels, kernels, strides, paddings; BatchNorm eps 1e-3) as a minimal
``torchvision`` module before importing pytorch-fid. pytorch-fid's weight
download is replaced by the seeded state dict.

Run once (torch and pytorch-fid needed, not the project's JAX stack)::

  python -m venv venv_torch
  venv_torch/bin/pip install torch==2.13.0 numpy
  venv_torch/bin/pip install --no-deps pytorch-fid==0.3.0
  venv_torch/bin/python scripts/make_inception_fixture.py \\
      --output=tests/evaluation/fixtures/inception_pytorch_fid_seed0.npz
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types

import numpy as np

SEED = 0
IMAGE_SIZE = 32  # CIFAR-sized inputs, upsampled to 299 by the resize.
NUM_SAMPLES = 3  # "samples" images (noise-like)
NUM_REFERENCE = 3  # "reference" images (smooth)


def seeded_state_dict(names_shapes: list[tuple[str, tuple[int, ...]]],
                      seed: int = SEED) -> dict[str, np.ndarray]:
  """A random FID-Inception state dict (float32 NumPy), reproducible by seed.

  Drawn in the given order with ``np.random.RandomState(seed)`` (a stream
  NumPy keeps stable across versions). Conv kernels are He-normal, BN
  scale/variance uniform in [0.5, 1.5], BN bias/mean and fc bias N(0, 0.1^2),
  so activations stay O(1) through the 94 conv/BN/ReLU units and images give
  distinct features. ``num_batches_tracked`` entries are left out.

  Args:
    names_shapes: PyTorch state-dict names and shapes, in state-dict order.
    seed: RandomState seed.

  Returns:
    name -> float32 array in PyTorch layout.
  """
  rng = np.random.RandomState(seed)
  sd = {}
  for name, shape in names_shapes:
    shape = tuple(int(s) for s in shape)
    if name.endswith("conv.weight"):
      fan_in = int(np.prod(shape[1:]))
      a = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif name == "fc.weight":
      a = rng.standard_normal(shape) * np.sqrt(1.0 / shape[1])
    elif name.endswith(("bn.weight", "running_var")):
      a = rng.uniform(0.5, 1.5, shape)
    elif name.endswith(("bias", "running_mean")):
      a = 0.1 * rng.standard_normal(shape)
    else:
      raise ValueError(f"unexpected state-dict entry {name} {shape}")
    sd[name] = a.astype(np.float32)
  return sd


def fixture_images(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
  """uint8 ``[3, 32, 32, 3]`` noise-like samples and smooth references."""
  rng = np.random.RandomState(seed + 1)
  samples = rng.randint(0, 256, (NUM_SAMPLES, IMAGE_SIZE, IMAGE_SIZE, 3))
  u = np.linspace(0.0, 1.0, IMAGE_SIZE)
  ref = []
  for _ in range(NUM_REFERENCE):
    fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(
        0, 2 * np.pi, 3)
    img = 0.5 + 0.45 * np.sin(2 * np.pi * (fx * u[None, :, None]
                                           + fy * u[:, None, None]) + ph)
    ref.append(np.round(img * 255))
  return samples.astype(np.uint8), np.asarray(ref).astype(np.uint8)


def _install_torchvision_stand_in() -> None:
  """Registers a minimal ``torchvision`` with the Inception-v3 base classes."""
  # pylint: disable=g-import-not-at-top
  import torch
  from torch import nn
  import torch.nn.functional as F
  # pylint: enable=g-import-not-at-top

  class BasicConv2d(nn.Module):

    def __init__(self, cin, cout, **kw):
      super().__init__()
      self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
      self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
      return F.relu(self.bn(self.conv(x)))

    # pytorch-fid overrides every forward it uses except B and D's.

  class InceptionA(nn.Module):

    def __init__(self, cin, pool_features):
      super().__init__()
      self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
      self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
      self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
      self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
      self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
      self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

  class InceptionB(nn.Module):

    def __init__(self, cin):
      super().__init__()
      self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
      self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
      self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
      b3 = self.branch3x3(x)
      bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
      bp = F.max_pool2d(x, kernel_size=3, stride=2)
      return torch.cat([b3, bd, bp], 1)

  class InceptionC(nn.Module):

    def __init__(self, cin, channels_7x7):
      super().__init__()
      c7 = channels_7x7
      self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
      self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
      self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7),
                                     padding=(0, 3))
      self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1),
                                     padding=(3, 0))
      self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
      self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1),
                                        padding=(3, 0))
      self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7),
                                        padding=(0, 3))
      self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1),
                                        padding=(3, 0))
      self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7),
                                        padding=(0, 3))
      self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

  class InceptionD(nn.Module):

    def __init__(self, cin):
      super().__init__()
      self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
      self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
      self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
      self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7),
                                       padding=(0, 3))
      self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1),
                                       padding=(3, 0))
      self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
      b3 = self.branch3x3_2(self.branch3x3_1(x))
      b7 = self.branch7x7x3_1(x)
      for m in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
        b7 = m(b7)
      bp = F.max_pool2d(x, kernel_size=3, stride=2)
      return torch.cat([b3, b7, bp], 1)

  class InceptionE(nn.Module):

    def __init__(self, cin):
      super().__init__()
      self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
      self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
      self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3),
                                      padding=(0, 1))
      self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1),
                                      padding=(1, 0))
      self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
      self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3),
                                         padding=(0, 1))
      self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1),
                                         padding=(1, 0))
      self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

  class Inception3(nn.Module):
    """torchvision's Inception3 without the aux head (aux_logits=False)."""

    def __init__(self, num_classes=1000, aux_logits=True, **unused):
      super().__init__()
      if aux_logits:
        raise NotImplementedError("the stand-in has no aux head")
      self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
      self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
      self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
      self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
      self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
      self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
      self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
      self.Mixed_5b = InceptionA(192, pool_features=32)
      self.Mixed_5c = InceptionA(256, pool_features=64)
      self.Mixed_5d = InceptionA(288, pool_features=64)
      self.Mixed_6a = InceptionB(288)
      self.Mixed_6b = InceptionC(768, channels_7x7=128)
      self.Mixed_6c = InceptionC(768, channels_7x7=160)
      self.Mixed_6d = InceptionC(768, channels_7x7=160)
      self.Mixed_6e = InceptionC(768, channels_7x7=192)
      self.Mixed_7a = InceptionD(768)
      self.Mixed_7b = InceptionE(1280)
      self.Mixed_7c = InceptionE(2048)
      self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
      self.fc = nn.Linear(2048, num_classes)

  inc = types.ModuleType("torchvision.models.inception")
  for c in (BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD,
            InceptionE, Inception3):
    setattr(inc, c.__name__, c)
  models = types.ModuleType("torchvision.models")
  models.inception = inc
  models.inception_v3 = Inception3
  tv = types.ModuleType("torchvision")
  tv.__version__ = "0.28.0"  # >= 0.13: pytorch-fid passes init_weights/weights
  tv.models = models
  sys.modules.update({"torchvision": tv, "torchvision.models": models,
                      "torchvision.models.inception": inc})


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--output", required=True)
  p.add_argument("--seed", type=int, default=SEED)
  a = p.parse_args(argv)

  # pylint: disable=g-import-not-at-top
  import torch
  import torch.nn.functional as F
  _install_torchvision_stand_in()
  import pytorch_fid
  from pytorch_fid import inception as pfi
  # pylint: enable=g-import-not-at-top

  skeleton = sys.modules["torchvision"].models.inception_v3(
      num_classes=1008, aux_logits=False)
  names_shapes = [(k, tuple(v.shape)) for k, v in
                  skeleton.state_dict().items()
                  if not k.endswith("num_batches_tracked")]
  sd = seeded_state_dict(names_shapes, a.seed)
  full_sd = {k: torch.from_numpy(v) for k, v in sd.items()}
  for k in skeleton.state_dict():
    if k.endswith("num_batches_tracked"):
      full_sd[k] = torch.tensor(0)
  # pytorch-fid's fid_inception_v3() loads its weights with this function.
  pfi.load_state_dict_from_url = lambda *args, **kw: full_sd
  net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).double()
  net.eval()

  samples, reference = fixture_images(a.seed)
  images = np.concatenate([samples, reference])
  with torch.no_grad():
    x = torch.from_numpy(images.astype(np.float64) / 255.0).permute(0, 3, 1, 2)
    pool = net(x)[0][:, :, 0, 0]
    w = full_sd["fc.weight"].double()
    logits_unbiased = pool @ w.T
    logits = logits_unbiased + full_sd["fc.bias"].double()
    # Resize alone (F.interpolate as pytorch-fid calls it), down and up.
    r = np.random.RandomState(a.seed + 2).uniform(0, 255, (2, 3, 11, 9))
    r = r.astype(np.float32).astype(np.float64)  # stored as float32
    rt = torch.from_numpy(r)
    down = F.interpolate(rt, size=(7, 7), mode="bilinear", align_corners=False)
    up = F.interpolate(rt, size=(20, 20), mode="bilinear", align_corners=False)

  pool = pool.numpy()
  print(f"pool: mean {pool.mean():.4g}, std {pool.std():.4g}, min "
        f"{pool.min():.4g}, max {pool.max():.4g}; per-image std "
        f"{pool.std(axis=0).mean():.4g}; logits std {logits.std():.4g}")
  meta = dict(seed=a.seed, torch=torch.__version__,
              pytorch_fid=pytorch_fid.__version__, dtype="float64",
              network="pytorch_fid.inception.InceptionV3([3]) with "
              "fid_inception_v3 blocks; weights from seeded_state_dict")
  os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
  np.savez_compressed(
      a.output,
      samples=samples, reference=reference,
      pool=pool.astype(np.float32),
      logits=logits.numpy().astype(np.float32),
      logits_unbiased=logits_unbiased.numpy().astype(np.float32),
      resize_input=r.transpose(0, 2, 3, 1).astype(np.float32),
      resize_down7=down.numpy().transpose(0, 2, 3, 1).astype(np.float32),
      resize_up20=up.numpy().transpose(0, 2, 3, 1).astype(np.float32),
      names_shapes=np.asarray(json.dumps(names_shapes)),
      meta=np.asarray(json.dumps(meta)))
  print(f"wrote {a.output} ({os.path.getsize(a.output)} bytes)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
