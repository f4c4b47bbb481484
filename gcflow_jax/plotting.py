"""PNG figures: 2-D scatter/density plots and image grids (matplotlib)."""

from __future__ import annotations

import numpy as np

from gcflow_jax.run_record import atomic_open

__all__ = ["save_samples_plot", "image_grid"]


def image_grid(images: np.ndarray, ncol: int = 8) -> np.ndarray:
  """[N, H, W, C] in [-1, 1] -> one uint8 grid image [H', W', C]."""
  x = np.clip((np.asarray(images) + 1) * 127.5, 0, 255).astype(np.uint8)
  n, h, w, c = x.shape
  nrow = -(-n // ncol)
  grid = np.zeros((nrow * (h + 1) + 1, ncol * (w + 1) + 1, c), np.uint8)
  for i in range(n):
    r, q = divmod(i, ncol)
    grid[1 + r * (h + 1):1 + r * (h + 1) + h,
         1 + q * (w + 1):1 + q * (w + 1) + w] = x[i]
  return grid


def save_samples_plot(path: str, samples: np.ndarray,
                      reference: np.ndarray, title: str = "") -> str:
  """Writes a PNG comparing samples with data; returns the path.

  2-D vectors: side-by-side scatter + 2-D histograms. Images: two grids.
  Other vectors: the first two coordinates.
  """
  # The object API, not pyplot: no global backend switch (notebooks keep
  # their inline backend) and nothing to close.
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  samples, reference = np.asarray(samples), np.asarray(reference)
  if samples.ndim == 4:
    n = min(64, len(samples), len(reference))
    fig = Figure(figsize=(10, 5.4))
    axes = fig.subplots(1, 2)
    for ax, x, name in ((axes[0], reference[:n], "data"),
                        (axes[1], samples[:n], "samples")):
      g = image_grid(x)
      ax.imshow(g[..., 0] if g.shape[-1] == 1 else g,
                cmap="gray" if g.shape[-1] == 1 else None)
      ax.set_title(name)
      ax.axis("off")
  else:
    s, r = samples[:, :2], reference[:, :2]
    both = np.concatenate([s, r])
    finite = both[np.isfinite(both).all(1)]
    lo = np.percentile(finite, 0.5, axis=0) if len(finite) else [-1, -1]
    hi = np.percentile(finite, 99.5, axis=0) if len(finite) else [1, 1]
    pad = 0.1 * (np.asarray(hi) - np.asarray(lo))
    box = [[lo[0] - pad[0], hi[0] + pad[0]], [lo[1] - pad[1], hi[1] + pad[1]]]
    fig = Figure(figsize=(15, 5))
    axes = fig.subplots(1, 3)
    axes[0].scatter(r[:, 0], r[:, 1], s=2, alpha=0.4, label="data")
    axes[0].scatter(s[:, 0], s[:, 1], s=2, alpha=0.4, label="samples")
    axes[0].legend(markerscale=5)
    axes[0].set_title("scatter")
    for ax, x, name in ((axes[1], r, "data density"),
                        (axes[2], s, "sample density")):
      ax.hist2d(x[:, 0], x[:, 1], bins=100, range=box, cmap="viridis")
      ax.set_title(name)
    for ax in axes:
      ax.set_xlim(box[0])
      ax.set_ylim(box[1])
      ax.set_aspect("equal")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  # Atomic: a kill while saving leaves the previous image, not a torn one.
  with atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=80)
  return path
