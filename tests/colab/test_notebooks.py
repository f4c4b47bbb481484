"""The Colab notebooks: committed without outputs, pins consistent with
setup.cfg, and every notebook executed end to end on its smoke settings
(`GCFLOW_NOTEBOOK_SMOKE=1`) in a real Jupyter kernel, so they cannot rot."""

import configparser
import json
import os
import re
import sys

import nbclient
import nbformat
import pytest
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
COLAB = os.path.join(ROOT, "colab")
NOTEBOOKS = ("quickstart", "flow_maps", "distribution_matching",
             "reflow_alignment", "tpu_cifar")


def _load(name):
  return nbformat.read(os.path.join(COLAB, f"{name}.ipynb"), as_version=4)


def test_every_notebook_is_listed():
  found = sorted(f[:-6] for f in os.listdir(COLAB) if f.endswith(".ipynb"))
  assert found == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
  nb = _load(name)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (
          f"colab/{name}.ipynb has outputs; clear them before committing")


def _install_requires():
  cfg = configparser.ConfigParser()
  cfg.read(os.path.join(ROOT, "setup.cfg"))
  reqs = {}
  for line in cfg["options"]["install_requires"].strip().splitlines():
    r = Requirement(line.strip())
    reqs[r.name.lower().replace("_", "-")] = r
  return reqs


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_pins_satisfy_setup_cfg(name):
  """The first code cell pins versions that the package itself accepts."""
  first = next(c for c in _load(name).cells if c.cell_type == "code")
  pins = re.findall(r'"([A-Za-z0-9_.\-]+)(?:\[\w+\])?==([0-9.]+)"',
                    first.source)
  assert {p for p, _ in pins} >= {"jax", "flax", "optax", "orbax-checkpoint",
                                  "ott-jax"}
  reqs = _install_requires()
  for pkg, version in pins:
    req = reqs[pkg.lower().replace("_", "-")]
    assert req.specifier.contains(version), (
        f"colab/{name}.ipynb pins {pkg}=={version}, setup.cfg wants {req}")


# The default suite executes the quickstart (a new user's first hour); the
# other notebooks (60-110 s of CPU each) run with `-m slow`.
@pytest.mark.parametrize("name", [
    n if n == "quickstart" else pytest.param(n, marks=pytest.mark.slow)
    for n in NOTEBOOKS])
def test_notebook_runs_on_smoke_settings(name, tmp_path):
  nb = _load(name)
  env = dict(os.environ, GCFLOW_NOTEBOOK_SMOKE="1",
             GCFLOW_NOTEBOOK_WORKDIR=str(tmp_path / "work"),
             MPLBACKEND="module://matplotlib_inline.backend_inline",
             PYTHONPATH=os.pathsep.join([ROOT] + [
                 p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                 if p]))
  if name != "tpu_cifar":
    # One device is faster here; the TPU notebook keeps the 8 forced host
    # devices of conftest.py so its mesh really spans several devices.
    env.pop("XLA_FLAGS", None)
  client = nbclient.NotebookClient(
      nb, timeout=1200, kernel_name="python3",
      resources={"metadata": {"path": ROOT}})
  client.execute(env=env)
  errors = [o for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if o.output_type == "error"]
  assert not errors
  if name == "tpu_cifar":
    with open(tmp_path / "work" / "cifar_gc_smoke" / "metrics.json") as f:
      assert json.load(f)["devices"] == 8
