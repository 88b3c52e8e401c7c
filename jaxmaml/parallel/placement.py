"""Where the episodes go: the task axis over mesh axis ``'data'``, on one host or many.

Every :class:`~jaxmaml.types.Episodes` leaf has the task axis first
(``[tasks, way*shot, seq_len]``); it is sharded over ``'data'`` (:func:`episodes_sharding`).
Multi-host: call :func:`initialize_distributed` first thing (before any JAX computation);
each process samples only its own tasks (:func:`process_task_slice`) and
:func:`put_episodes` assembles the global array from the per-process pieces.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmaml.parallel.mesh import axis_size, DATA
from jaxmaml.types import Episodes


def episodes_sharding(mesh: Mesh) -> NamedSharding:
    """``NamedSharding(mesh, P('data'))``: the task axis of every Episodes leaf over 'data'."""
    return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    """``NamedSharding(mesh, P())``."""
    return NamedSharding(mesh, P())


def check_meta_batch(tasks: int, mesh: Mesh) -> None:
    """Raise ``ValueError`` unless ``tasks`` (global tasks per meta-step) splits over 'data'."""
    size = axis_size(mesh, DATA)
    if tasks % size:
        raise ValueError(f"{tasks} tasks per meta-step cannot be split over the mesh's 'data' "
                         f"axis of size {size}; use a multiple of {size} tasks (meta batch) or "
                         "a different parallel.mesh.")


def process_task_slice(tasks: int, mesh: Mesh) -> slice:
    """This process's contiguous slice of the global task axis ``[0, tasks)``.

    On one process: ``slice(0, tasks)``. With several, each process samples only these tasks
    (``sampler.episodes(step, tasks=process_task_slice(...))``) and passes them to
    :func:`put_episodes`. Processes that are replicas along 'data' get the same slice.
    """
    check_meta_batch(tasks, mesh)
    index_map = episodes_sharding(mesh).addressable_devices_indices_map((tasks,))
    spans = sorted({(idx[0].start or 0, tasks if idx[0].stop is None else idx[0].stop)
                    for idx in index_map.values()})
    for (_, stop), (start, _) in zip(spans, spans[1:]):
        if stop != start:
            raise ValueError(f"process {jax.process_index()} owns non-contiguous task shards "
                             f"{spans}; build the mesh with make_mesh (process-contiguous).")
    return slice(spans[0][0], spans[-1][1])


def put_episodes(episodes: Episodes, mesh: Mesh, global_tasks: int | None = None) -> Episodes:
    """Host episodes (numpy, ``[local_tasks, ...]``) -> global sharded ``jax.Array``s.

    One process: ``episodes`` holds all tasks; a ``device_put`` with
    :func:`episodes_sharding`. Several processes: each passes only its own tasks (those of
    :func:`process_task_slice`) and ``jax.make_array_from_process_local_data`` assembles the
    global ``[global_tasks, ...]`` arrays without any cross-host copy. ``global_tasks``
    defaults to ``local_tasks * (data-axis size / data shards on this process)``.
    """
    sharding = episodes_sharding(mesh)
    local_tasks = int(jax.tree.leaves(episodes)[0].shape[0])
    if jax.process_count() == 1:
        check_meta_batch(local_tasks, mesh)
        return jax.device_put(episodes, sharding)
    if global_tasks is None:
        size = axis_size(mesh, DATA)
        local_shards = len({idx[0] for idx in
                            sharding.addressable_devices_indices_map((size,)).values()})
        if local_tasks % local_shards:
            raise ValueError(f"process {jax.process_index()} got {local_tasks} tasks for "
                             f"{local_shards} local 'data' shards; pass a multiple.")
        global_tasks = local_tasks // local_shards * size
    check_meta_batch(global_tasks, mesh)
    expected = process_task_slice(global_tasks, mesh)
    if expected.stop - expected.start != local_tasks:
        raise ValueError(f"process {jax.process_index()} passed {local_tasks} tasks but owns "
                         f"tasks {expected.start}:{expected.stop} of {global_tasks}.")
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            sharding, np.asarray(x), (global_tasks,) + tuple(np.shape(x)[1:])),
        episodes)


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
    """``jax.distributed.initialize`` from arguments or the environment; True if it ran.

    Environment: ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0),
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``. ``JAXMAML_DISTRIBUTED=auto`` calls it with no
    arguments so JAX detects the cluster (TPU pod slices, SLURM, Open MPI). A no-op for a
    single process (nothing set, or ``num_processes == 1``). Call it before any other JAX
    call; on CPU the cross-process collectives are gloo (JAX's default).
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    if jax.distributed.is_initialized():
        return True
    if env.get("JAXMAML_DISTRIBUTED", "").lower() == "auto":
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
        return True
    if num_processes == 1 or (coordinator_address is None and num_processes is None):
        return False
    missing = [n for n, v in (("coordinator_address (JAX_COORDINATOR_ADDRESS)", coordinator_address),
                              ("num_processes (JAX_NUM_PROCESSES)", num_processes),
                              ("process_id (JAX_PROCESS_ID)", process_id)) if v is None]
    if missing:
        raise ValueError(f"multi-process run needs {', '.join(missing)}; set them or use "
                         "JAXMAML_DISTRIBUTED=auto on a TPU pod / SLURM cluster.")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    return True


def is_main_process() -> bool:
    """True on process 0 (the one that logs, writes exports and summary files)."""
    return jax.process_index() == 0
