"""Sharded meta-training over a device mesh, on one host or many (JAX's own runtime).

The mesh is an argument, never a global. Its axes are ``('data', 'model')``:

* **episodes**: every :class:`~jaxmaml.types.Episodes` leaf has the task axis first
  (``[tasks, way*shot, seq_len]``); it is sharded over ``'data'`` (:func:`episodes_sharding`).
* **state**: each :class:`~jaxmaml.types.MetaState` leaf gets a ``PartitionSpec`` from an
  ordered table of ``(regex, spec)`` rules matched (``re.search``, unanchored) against the
  leaf's ``"/"``-joined path, e.g. ``meta_params/encoder/encoder/layer/0/attention/self/
  query/kernel`` or ``opt_state/1/0/mu/encoder/encoder/layer/0/...`` (Optax moments mirror
  the param paths, so one table covers params and optimizer state). First match wins; the
  last rule is ``('.*', P())`` (replicate). Presets: :data:`RULE_PRESETS`.

**Specs that do not fit a leaf fall back to replication, per dimension**: a spec entry whose
mesh-axis size does not divide that dimension, or entries beyond the leaf's rank (e.g. a
learned per-step inner LR of shape ``[steps]`` whose path ends in ``query/kernel``), become
``None``. Pass ``strict=True`` to :func:`tree_shardings` to get an error instead. Scalars
are always replicated.

A rule's spec may also be a callable ``(shape, mesh) -> PartitionSpec`` (see :func:`fsdp_spec`),
for shape-dependent layouts such as FSDP's "largest divisible dimension".

Multi-host: call :func:`initialize_distributed` first thing (before any JAX computation);
each process samples only its own tasks (:func:`process_task_slice`) and
:func:`put_episodes` assembles the global array from the per-process pieces.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Callable, Sequence, Union

import jax
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.outer import jit_meta_step
from jaxmaml.tree import path_str
from jaxmaml.types import Episodes, MetaState

DATA, MODEL = "data", "model"

SpecFn = Callable[[tuple[int, ...], Mesh], P]
Rule = tuple[str, Union[P, SpecFn]]


# --------------------------------------------------------------------------------- mesh


def make_mesh(shape: Sequence[int] = (-1, 1), axis_names: Sequence[str] = (DATA, MODEL),
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh of ``shape`` over ``devices`` (default: all global devices).

    ``shape`` entries are axis sizes; one may be ``-1`` for "all remaining devices". The
    sizes must multiply to the device count. Axes are ``AxisType.Auto`` (the compiler
    propagates shardings from ``in_shardings``/``out_shardings``). Device order comes from
    ``jax.make_mesh`` (topology-aware on TPU; process-contiguous on multi-host GPU/CPU).
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    shape = [int(s) for s in shape]
    if len(shape) != len(axis_names):
        raise ValueError(f"parallel.mesh={shape} has {len(shape)} sizes but there are "
                         f"{len(axis_names)} axes {tuple(axis_names)}; give one size per axis.")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"parallel.mesh={shape}: sizes must be positive, with at most one -1 "
                         "('all remaining devices').")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if n % known:
            raise ValueError(f"parallel.mesh={shape}: {n} devices are not divisible by {known}; "
                             f"choose sizes whose product divides {n}.")
        shape[shape.index(-1)] = n // known
    if math.prod(shape) != n:
        raise ValueError(f"parallel.mesh={shape} has {math.prod(shape)} slots but there are {n} "
                         f"devices; the sizes must multiply to {n} (use -1 for one axis).")
    return jax.make_mesh(tuple(shape), tuple(axis_names),
                         axis_types=(AxisType.Auto,) * len(shape), devices=devices)


def axis_size(mesh: Mesh, name: str) -> int:
    """Size of mesh axis ``name`` (1 if the mesh has no such axis)."""
    return dict(mesh.shape).get(name, 1)


# ------------------------------------------------------------------------------- rules


def fsdp_spec(axis: str = DATA) -> SpecFn:
    """``(shape, mesh) -> PartitionSpec`` sharding the largest dimension over ``axis``.

    If the largest dimension is not divisible by the axis size the next-largest is tried
    (ties go to the earlier dimension); a leaf with no divisible dimension is replicated.
    """

    def spec(shape: tuple[int, ...], mesh: Mesh) -> P:
        size = axis_size(mesh, axis)
        order = sorted(range(len(shape)), key=lambda d: (-shape[d], d))
        dim = next((d for d in order if shape[d] % size == 0), None)
        if dim is None or size == 1:
            return P()
        return P(*(axis if d == dim else None for d in range(len(shape))))

    return spec


_ATTN = r"attention/self/(query|key|value)"
TENSOR_RULES: list[Rule] = [
    # Megatron layout: column-parallel in (Q/K/V, MLP up), row-parallel out (attn out, MLP
    # down), so each attention block and MLP needs one all-reduce. Biases of column-parallel
    # layers are sharded with their outputs; row-parallel biases are added after the reduce.
    (_ATTN + r"/kernel$", P(None, MODEL)),
    (_ATTN + r"/bias$", P(MODEL)),
    (r"attention/output/dense/kernel$", P(MODEL, None)),
    (r"intermediate/dense/kernel$", P(None, MODEL)),
    (r"intermediate/dense/bias$", P(MODEL)),
    (r"layer/\d+/output/dense/kernel$", P(MODEL, None)),
    (r".*", P()),
]

RULE_PRESETS: dict[str, list[Rule]] = {
    "replicated": [(r".*", P())],
    "fsdp": [(r".*", fsdp_spec(DATA))],
    "tensor": TENSOR_RULES,
}


def get_rules(rules: str | Sequence[Rule]) -> list[Rule]:
    """A preset name from :data:`RULE_PRESETS` or an explicit rule list, validated."""
    if isinstance(rules, str):
        if rules not in RULE_PRESETS:
            raise ValueError(f"parallel.rules={rules!r} is not one of "
                             f"{', '.join(RULE_PRESETS)} (or pass a list of (regex, spec)).")
        return RULE_PRESETS[rules]
    rules = list(rules)
    for pattern, _ in rules:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"sharding rule regex {pattern!r} is invalid: {e}") from e
    return rules


def leaf_spec(path: str, shape: tuple[int, ...], mesh: Mesh, rules: Sequence[Rule],
              strict: bool = False) -> P:
    """The first matching rule's spec for a leaf, fitted to ``shape`` on ``mesh``.

    Dimensions whose mesh-axis size does not divide them (and spec entries beyond the rank)
    are replicated, or raise ``ValueError`` when ``strict``.
    """
    if not shape:
        return P()
    for pattern, spec in rules:
        if re.search(pattern, path):
            break
    else:
        raise ValueError(f"no sharding rule matches {path!r}; end the rules with ('.*', P()).")
    if callable(spec):
        spec = spec(tuple(shape), mesh)
    entries = list(spec)
    if len(entries) > len(shape):
        if strict and any(e is not None for e in entries[len(shape):]):
            raise ValueError(f"spec {spec} for {path!r} has more entries than its rank "
                             f"{len(shape)} (shape {shape}).")
        entries = entries[:len(shape)]
    fitted = []
    for dim, entry in enumerate(entries):
        names = (entry,) if isinstance(entry, str) else tuple(entry or ())
        size = math.prod(axis_size(mesh, a) for a in names)
        if names and shape[dim] % size:
            if strict:
                raise ValueError(f"{path!r} dim {dim} of size {shape[dim]} is not divisible by "
                                 f"mesh axes {names} (size {size}); change the mesh or rules.")
            entry = None
        fitted.append(entry)
    return P(*fitted)


def tree_shardings(tree: Any, mesh: Mesh, rules: str | Sequence[Rule] = "replicated",
                   strict: bool = False) -> Any:
    """A pytree of :class:`NamedSharding` matching ``tree`` (arrays or ShapeDtypeStructs).

    Works on a whole :class:`~jaxmaml.types.MetaState` (Optax ``opt_state`` included: its
    moments' paths end in the param paths). Scalars are replicated.
    """
    rules = get_rules(rules)

    def one(path, leaf):
        return NamedSharding(mesh, leaf_spec(path_str(path), tuple(np.shape(leaf)), mesh,
                                             rules, strict))

    return jax.tree_util.tree_map_with_path(one, tree)


# ---------------------------------------------------------------------------- episodes


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


# ------------------------------------------------------------------------------- state


def create_state(init_fn: Callable[..., MetaState], mesh: Mesh,
                 rules: str | Sequence[Rule] = "replicated", *args: Any
                 ) -> tuple[MetaState, Any]:
    """``(state, state_shardings)``: ``init_fn(*args)`` run under jit straight into shards.

    ``jax.eval_shape`` gives the abstract state, the rules give its shardings, and
    ``jax.jit(init_fn, out_shardings=shardings)`` creates each shard on its device, so the
    full state is never materialized on one device. Pass large inputs (pretrained encoder
    params) as ``args`` rather than closing over them, so they are not baked into the
    program as constants.
    """
    abstract = jax.eval_shape(init_fn, *args)
    shardings = tree_shardings(abstract, mesh, rules)
    state = jax.jit(init_fn, out_shardings=shardings)(*args)
    return state, shardings


def jit_sharded_meta_step(cfg: MetaConfig, optimizer: optax.GradientTransformation,
                          mesh: Mesh, state_shardings: Any):
    """The meta-step compiled for ``mesh``: ``(state, episodes) -> (state, metrics)``.

    ``in_shardings=(state_shardings, episodes_sharding)``, ``out_shardings=(state_shardings,
    replicated)``, state donated. Tasks are vmapped and sharded over 'data', so the meta
    gradient's mean over tasks becomes an all-reduce across 'data'.
    """
    return jit_meta_step(cfg, optimizer,
                         in_shardings=(state_shardings, episodes_sharding(mesh)),
                         out_shardings=(state_shardings, replicated(mesh)))


# -------------------------------------------------------------------------- multi-host


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
