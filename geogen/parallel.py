"""Data parallelism over all devices (DESIGN section 4).

One mesh axis ``'data'`` over every device of every process: the batch axis of the data is
sharded over it, parameters / optimizer state / EMA are replicated.  Under ``jit`` XLA then
inserts the gradient all-reduce, so N devices compute the same update as one device up to
float round-off (a mean over the batch is reduced in a different order).  Random numbers
drawn inside the step do not depend on the sharding (``jax_threefry_partitionable``, the
default in recent JAX).

Multi-host
----------
`maybe_initialize_distributed` calls ``jax.distributed.initialize()`` only when the
environment asks for it with ``GEOGEN_DISTRIBUTED=1``; it must run before any other JAX
call (``train.py`` does this first).  Arguments come from the environment:

* ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``GEOGEN_NUM_PROCESSES`` and
  ``GEOGEN_PROCESS_ID`` when set; otherwise JAX detects them itself on SLURM, Open MPI,
  Kubernetes and Cloud TPU.

Example, two hosts:  ``GEOGEN_DISTRIBUTED=1 JAX_COORDINATOR_ADDRESS=10.0.0.1:1234
GEOGEN_NUM_PROCESSES=2 GEOGEN_PROCESS_ID=<0|1> python train.py --config ... --workdir ...``
(the workdir must be on a file system shared by all hosts; only process 0 writes logs,
plots and eval.json, all processes take part in checkpointing).  Every process computes the
same global batch indices from the seed and feeds only the rows of its own devices
(`shard_batch`).
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

AXIS = "data"
_initialized = False


def maybe_initialize_distributed() -> bool:
  """Initialize multi-host JAX when ``GEOGEN_DISTRIBUTED=1``.  -> whether it did."""
  global _initialized
  if _initialized:
    return True
  if os.environ.get("GEOGEN_DISTRIBUTED", "").lower() not in ("1", "true", "yes"):
    return False
  kwargs = {}
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    kwargs["coordinator_address"] = os.environ["JAX_COORDINATOR_ADDRESS"]
  if os.environ.get("GEOGEN_NUM_PROCESSES"):
    kwargs["num_processes"] = int(os.environ["GEOGEN_NUM_PROCESSES"])
  if os.environ.get("GEOGEN_PROCESS_ID"):
    kwargs["process_id"] = int(os.environ["GEOGEN_PROCESS_ID"])
  jax.distributed.initialize(**kwargs)
  _initialized = True
  return True


def is_main_process() -> bool:
  return jax.process_index() == 0


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """1-D mesh ``('data',)`` over `devices` (default: all global devices).

  The axis is of type Auto (recent JAX defaults to Explicit, which would make every
  family's code carry sharding annotations): XLA propagates the batch sharding itself.
  """
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh, batch_axis: int = 0) -> NamedSharding:
  """Sharding of an array whose axis `batch_axis` is the (global) batch."""
  return NamedSharding(mesh, P(*([None] * batch_axis), AXIS))


def check_batch_size(batch_size: int, n_devices: int, what: str = "train.batch_size") -> None:
  n = int(n_devices)
  if batch_size % n:
    raise ValueError(f"{what}={batch_size} must be a multiple of the number of devices ({n}) "
                     "for data-parallel training")


def process_rows(global_size: int) -> slice:
  """Rows of a global batch of `global_size` that this process feeds.

  With the 1-D mesh over jax.devices() (process-major order), process p owns a contiguous
  block of the batch.
  """
  n_proc = jax.process_count()
  per = global_size // n_proc
  p = jax.process_index()
  return slice(p * per, (p + 1) * per)


def shard_batch(global_np: np.ndarray, mesh, batch_axis: int = 0) -> jax.Array:
  """A global array sharded on `batch_axis` from a host array every process computed.

  Each process contributes only its own rows (single process: the whole array).
  """
  sharding = batch_sharding(mesh, batch_axis)
  if jax.process_count() == 1:
    return jax.device_put(global_np, sharding)
  rows = process_rows(global_np.shape[batch_axis])
  index = [slice(None)] * global_np.ndim
  index[batch_axis] = rows
  local = np.ascontiguousarray(global_np[tuple(index)])
  return jax.make_array_from_process_local_data(sharding, local, global_np.shape)


def replicate(tree, mesh):
  """Place a pytree replicated on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def to_host(x) -> np.ndarray:
  """Fetch a (possibly sharded, multi-host) array as a full numpy array on every host."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)
