"""The import direction of DESIGN.md: data, teachers, math and models sit
below the methods and the trainer, and never import them (not even inside a
function, which is how import circles used to be hidden)."""

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "gcflow_jax"
# What the lower layers must not import.
_UPPER = ("gcflow_jax.methods", "gcflow_jax.train", "gcflow_jax.main")
_LOWER = sorted([*PKG.glob("data/*.py"), *PKG.glob("math/*.py"),
                 *PKG.glob("models/*.py"), PKG / "teachers.py"])


def _imports(path):
  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      yield from (f"{node.module}.{a.name}" for a in node.names)


@pytest.mark.parametrize("path", _LOWER, ids=lambda p: str(p.relative_to(PKG)))
def test_lower_layers_do_not_import_methods_or_trainer(path):
  bad = sorted({m for m in _imports(path)
                if any(m == u or m.startswith(u + ".") for u in _UPPER)})
  assert not bad, f"{path.relative_to(PKG)} imports {bad}"
  if path.parent.name == "math":
    assert not any(m.startswith("flax") for m in _imports(path))


def test_the_checker_sees_function_level_imports(tmp_path):
  mod = tmp_path / "m.py"
  mod.write_text("def f():\n  from gcflow_jax.methods import reflow\n")
  assert "gcflow_jax.methods.reflow" in set(_imports(mod))
