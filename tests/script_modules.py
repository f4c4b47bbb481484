"""Loading a repository script (scripts/, benchmarks/) as a module by its
path, for tests (importable because pytest puts `tests/` on sys.path for its
conftest.py)."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name: str, *parts: str):
  """The module at ROOT/<parts...>, executed under `name`."""
  spec = importlib.util.spec_from_file_location(name,
                                                os.path.join(ROOT, *parts))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod
