"""The device mesh and the sharding rules: sharding as data.

Mesh axes are ``('data', 'model')``. Each :class:`~jaxmaml.types.MetaState` leaf gets a
``PartitionSpec`` from an ordered table of ``(regex, spec)`` rules matched (``re.search``,
unanchored) against the leaf's ``"/"``-joined path (:func:`jaxmaml.tree.path_str`), e.g.
``meta_params/encoder/encoder/layer/0/attention/self/query/kernel`` or
``opt_state/1/0/mu/encoder/encoder/layer/0/...`` (Optax moments mirror the param paths, so
one table covers params and optimizer state). First match wins; the last rule is
``('.*', P())`` (replicate). Presets: :data:`RULE_PRESETS`.

**Specs that do not fit a leaf fall back to replication, per dimension**: a spec entry whose
mesh-axis size does not divide that dimension, or entries beyond the leaf's rank (e.g. a
learned per-step inner LR of shape ``[steps]`` whose path ends in ``query/kernel``), become
``None``. Pass ``strict=True`` to :func:`tree_shardings` to get an error instead. Scalars
are always replicated.

A rule's spec may also be a callable ``(shape, mesh) -> PartitionSpec`` (see :func:`fsdp_spec`),
for shape-dependent layouts such as FSDP's "largest divisible dimension".
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence, Union

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxmaml.tree import path_str

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
