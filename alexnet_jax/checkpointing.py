"""Orbax checkpoints of the train state: saving, keeping the last few, and resuming."""

import os

import jax
import orbax.checkpoint as ocp
from absl import logging


def create_manager(workdir: str, keep: int,
                   async_save: bool = True) -> ocp.CheckpointManager:
  """Builds the CheckpointManager for `workdir/checkpoints` and logs its policy.

  Every process must create it and take part in each save and restore.
  """
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True,
      enable_async_checkpointing=async_save)
  manager = ocp.CheckpointManager(directory, options=options)
  logging.info('Checkpoints in %s: keep the last %d, async save %s.',
               directory, keep, async_save)
  return manager


def save(manager: ocp.CheckpointManager, step: int, state) -> None:
  """Saves `state` at `step`, asynchronously when the manager allows it."""
  manager.save(step, args=ocp.args.StandardSave(state), force=True)
  logging.info('Saving checkpoint at step %d.', step)


def restore_latest(manager: ocp.CheckpointManager, abstract_state):
  """Restores the latest checkpoint onto the shardings of `abstract_state`.

  Args:
    manager: the run's checkpoint manager.
    abstract_state: a pytree of `jax.ShapeDtypeStruct`s with shardings. The
      checkpoint may come from any mesh; it is laid out on this one.

  Returns:
    The restored state, or None if the workdir has no checkpoint.
  """
  step = manager.latest_step()
  if step is None:
    return None
  state = manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  logging.info('Restored checkpoint at step %d from %s.', step,
               manager.directory)
  return state


def abstract_with_shardings(state_shapes, shardings):
  """Pairs each ShapeDtypeStruct with its sharding, for restoring."""
  return jax.tree.map(
      lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype,
                                                   sharding=sharding),
      state_shapes, shardings)
