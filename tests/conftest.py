"""Shared fixtures. Eight host CPU devices are forced before JAX is imported so
mesh tests can run on a laptop (STYLE.md §4)."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def key():
  return jax.random.key(0)


@pytest.fixture
def x64():
  """Enable float64 for the duration of one test."""
  with jax.enable_x64(True):
    yield
