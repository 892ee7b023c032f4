"""Checkpoints of the training state with orbax (atomic, resumable).

Layout in the workdir:

    checkpoints/<step>/       the latest `train.keep_checkpoints` states (every
                              `train.ckpt_every` steps and at the end)
    checkpoints_best/<step>/  the single best state by validation NLL (validation loss
                              for families without a likelihood), lower is better

orbax writes each checkpoint to a temporary directory and renames it when complete, so a
run killed at any moment (even SIGKILL during a save) leaves only complete checkpoints;
stale temporaries are removed on the next start.

A state is any pytree (here {params, opt_state, ema}); it is stored as a flat dict of its
leaves keyed by position, with the list of leaf paths in the JSON metadata so restoring into
a differently-structured state fails with a clear message instead of silently mixing up
arrays.  Restored leaves get the sharding of the template (replicated on the mesh).
"""
from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

LATEST = "checkpoints"
BEST = "checkpoints_best"


def _paths(tree) -> list:
  return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _shapes(tree) -> list:
  return [list(np.shape(x)) for x in jax.tree_util.tree_leaves(tree)]


def _flat(tree) -> dict:
  leaves = jax.tree_util.tree_leaves(tree)
  return {f"{i:06d}": leaf for i, leaf in enumerate(leaves)}


def _abstract(tree) -> dict:
  def spec(x):
    x = x if isinstance(x, jax.Array) else jax.numpy.asarray(x)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
  return {k: spec(v) for k, v in _flat(tree).items()}


class Checkpointer:
  """Latest-N and best-1 checkpoint managers for one workdir."""

  def __init__(self, workdir: str, keep: int = 2, async_save: bool = True):
    self.workdir = os.path.abspath(workdir)

    def manager(sub, options):
      return ocp.CheckpointManager(os.path.join(self.workdir, sub), options=options,
                                   item_names=("state", "meta"))

    common = dict(create=True, cleanup_tmp_directories=True,
                  enable_async_checkpointing=async_save)
    self.latest = manager(LATEST, ocp.CheckpointManagerOptions(max_to_keep=int(keep), **common))
    self.best = manager(BEST, ocp.CheckpointManagerOptions(
        max_to_keep=1, best_fn=lambda m: m["val"], best_mode="min",
        keep_checkpoints_without_metrics=False, **common))

  # ---------------------------------------------------------------- save
  def _save(self, mgr, step: int, state, meta: dict, metrics=None):
    meta = dict(meta, step=int(step), leaf_paths=_paths(state), leaf_shapes=_shapes(state))
    mgr.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(_flat(state)), meta=ocp.args.JsonSave(meta)),
        metrics=metrics, force=True)

  def save_latest(self, step: int, state, meta: dict):
    if self.latest.latest_step() == int(step):
      return  # already saved (e.g. the final step coincides with a periodic save)
    self._save(self.latest, step, state, meta)

  def save_best(self, step: int, state, meta: dict, value: float):
    if int(step) in self.best.all_steps():
      self.best.delete(int(step))
    self._save(self.best, step, state, meta, metrics={"val": float(value)})

  def wait(self):
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.wait()
    self.latest.close()
    self.best.close()

  # ---------------------------------------------------------------- restore
  def latest_step(self) -> Optional[int]:
    return self.latest.latest_step()

  def best_step(self) -> Optional[int]:
    return self.best.best_step()

  def best_value(self) -> Optional[float]:
    step = self.best.best_step()
    if step is None:
      return None
    m = self.best.metrics(step)
    return None if m is None else float(m["val"])

  def drop_best_after(self, step: int):
    """Delete best checkpoints newer than `step` (left by a run killed after an eval
    whose state was never saved as latest; the resumed run recomputes them)."""
    for s in self.best.all_steps():
      if s > step:
        self.best.delete(s)

  def restore(self, template, which: str = "latest", step: Optional[int] = None):
    """Restore (step, state, meta) into the structure / shardings of `template`."""
    mgr = self.latest if which == "latest" else self.best
    if step is None:
      step = mgr.latest_step() if which == "latest" else mgr.best_step()
    if step is None:
      raise FileNotFoundError(f"no {which} checkpoint in {mgr.directory}")
    meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    want, shapes = _paths(template), _shapes(template)
    stored, stored_shapes = meta.get("leaf_paths", []), meta.get("leaf_shapes", shapes)
    if stored != want or stored_shapes != shapes:
      bad = next((f"{p}: stored {s1}, expected {s2}" for p, s1, s2 in
                  zip(want, stored_shapes, shapes) if s1 != s2), "")
      raise ValueError(
          f"checkpoint {mgr.directory}/{step} does not match the model built from the config "
          f"({len(stored)} stored arrays vs {len(want)} expected{'; ' + bad if bad else ''}); "
          "was it written with a different config or code version?")
    restored = mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(template))))["state"]
    leaves = [restored[f"{i:06d}"] for i in range(len(want))]
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves)
    return int(step), state, meta
