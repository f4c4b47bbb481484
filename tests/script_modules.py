"""Loading a repository script (scripts/, benchmarks/) as a module by its
path, for tests (importable because pytest puts `tests/` on sys.path for its
conftest.py)."""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name: str, *parts: str):
  """The module at ROOT/<parts...>, executed under `name` (registered in
  sys.modules first, as an import would, so that code looking its module
  up by name, e.g. dataclasses, finds it)."""
  spec = importlib.util.spec_from_file_location(name,
                                                os.path.join(ROOT, *parts))
  mod = importlib.util.module_from_spec(spec)
  sys.modules[name] = mod
  spec.loader.exec_module(mod)
  return mod
