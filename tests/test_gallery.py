"""scripts/make_gallery.py: its runs are valid configs, and the committed
gallery is what the script last wrote (every family has its figure and its
numbers; the README's picture and number are the flagship run's)."""

import json
import os

from gcflow_jax import config_utils
import script_modules  # tests/script_modules.py

ROOT = config_utils.repo_root()


def _gallery_module():
  return script_modules.load("make_gallery", "scripts", "make_gallery.py")


def test_gallery_runs_are_valid_configs_with_their_overrides():
  g = _gallery_module()
  for name, (_, spec, over, steps, _) in g.FAMILIES.items():
    c = g._config(name, "runs/gallery")
    config_utils.validate(c, num_devices=1)
    for key, value in over.items():
      node = c
      for part in key.split("."):
        node = node[part]
      want = (value.replace("{workdir}", "runs/gallery")
              if isinstance(value, str) else value)
      assert node == want, (name, key)
    assert list(steps) == sorted(steps) and steps[0] == 1
  # The consistency row is the README's first command, unchanged.
  assert g.FAMILIES["consistency"][1:3] == ("configs/toy_gc.py", {})


def test_committed_gallery_matches_its_record():
  g = _gallery_module()
  out = os.path.join(ROOT, "docs", "gallery")
  with open(os.path.join(out, "gallery.json")) as f:
    record = json.load(f)
  assert set(record["families"]) == set(g.FAMILIES)
  with open(os.path.join(out, "README.md")) as f:
    page = f.read()
  for name, r in record["families"].items():
    assert os.path.isfile(os.path.join(out, f"{name}.png")), name
    assert f"({name}.png)" in page
    shown = [str(k) for k in g.FAMILIES[name][3]]
    assert list(r["sinkhorn"]) == shown, name
    for k, v in r["sinkhorn"].items():
      assert f"{v:.3f}" in page, (name, k)
  assert os.path.isfile(os.path.join(out, "first_command.png"))
  # The number the README promises for the first command is the flagship
  # run's final evaluation.
  final = record["families"]["consistency"]["final_eval"]
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  assert f"{final['eval/sinkhorn']:.3f}" in readme
  assert "docs/gallery/first_command.png" in readme
