"""Orbax checkpoints: keep-N, atomic, restore onto the sharded abstract state.

Atomicity: Orbax writes each step into a temporary directory and renames it
when complete, so a checkpoint interrupted by a crash or `kill -9` is never
listed as a step. A listed step that fails to restore (a corrupted or
truncated file) is skipped with a warning and the previous one is tried.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Optional, Tuple

import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "checkpoint_dir"]


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


@functools.lru_cache(maxsize=None)
def _single_process_array_handler() -> None:
  """Saves each replicated array whole when one process writes everything.

  Orbax's default on CPU/TPU is replica-parallel saving: every replica
  writes 1/R of each array, which it cuts out with a compiled slice per
  array shape and device. With one process all of those writes come from
  the same host, so the split buys nothing and costs the compiles (208 of
  them, ~12 s, for the first checkpoint of configs/cifar_gc.py:smoke on 8
  host devices). Multi-host runs keep Orbax's default. This is Orbax's
  process-wide handler for jax.Array, set once, before the first save.
  """
  if jax.process_count() == 1:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False),
        override=True)


class Checkpointer:
  """A thin wrapper over `ocp.CheckpointManager`."""

  def __init__(self, workdir: str, max_to_keep: int = 3,
               create: bool = True):
    _single_process_array_handler()
    self.directory = checkpoint_dir(workdir)
    if not create and not os.path.isdir(self.directory):
      self._mngr = None
      return
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           create=create,
                                           enable_async_checkpointing=False)
    self._mngr = ocp.CheckpointManager(self.directory, options=options)

  def steps(self):
    return [] if self._mngr is None else sorted(self._mngr.all_steps())

  def latest_step(self) -> Optional[int]:
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, force: bool = False) -> bool:
    if step in self.steps():
      return False
    ok = self._mngr.save(int(step), args=ocp.args.StandardSave(state),
                         force=force)
    self._mngr.wait_until_finished()
    return ok

  def restore(self, abstract_state: Any) -> Tuple[Optional[int], Any]:
    """Restores the newest readable step onto `abstract_state`'s shardings.

    Returns (step, state), or (None, None) if nothing could be restored.
    """
    for step in reversed(self.steps()):
      try:
        state = self._mngr.restore(
            step, args=ocp.args.StandardRestore(abstract_state))
        return step, state
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("checkpoint step %d in %s is unreadable (%s: %s); "
                        "falling back to the previous one", step,
                        self.directory, type(e).__name__, str(e)[:300])
        print(f"WARNING: checkpoint step {step} in {self.directory} is "
              f"unreadable ({type(e).__name__}); trying the previous one",
              flush=True)
    return None, None

  def close(self):
    if self._mngr is not None:
      self._mngr.wait_until_finished()
      self._mngr.close()


def abstract_like(state: Any) -> Any:
  """ShapeDtypeStructs with shardings, for StandardRestore targets."""
  return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
