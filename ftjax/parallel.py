"""Data parallelism: one mesh axis named 'data' over every device of every process.

Train and eval steps are written for the global batch and compiled with `jax.jit`; the batch
is sharded over the 'data' axis and the state replicated, so XLA averages gradients (and HVPs)
over that axis with an all-reduce. On several hosts each process supplies only its own slice
of the global batch.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
  """A 1-D mesh named 'data' over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree, mesh: Mesh):
  """Places every leaf of `tree` (the same value in every process) on all devices of `mesh`,
  including devices of other processes."""
  return jax.jit(lambda t: t, out_shardings=replicated(mesh))(tree)


def shard_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Global arrays from this process's slice of a batch: leading axis split over 'data'."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def check_global_batch_size(global_batch_size: int, mesh: Mesh) -> None:
  """One-line error unless the global batch splits evenly over the devices of `mesh`."""
  if global_batch_size % mesh.size:
    raise ValueError(f"batch_size={global_batch_size} must be a multiple of the number of devices ({mesh.size})")
