"""Class-disjoint meta-train / meta-val / meta-test splits.

A split is a plain JSON-able dict ``{"train": [names], "val": [names], "test": [names]}``
so a run can write it next to its results and a later run can read it back unchanged.
Build one from explicit class lists (:func:`validate_split`) or by seeded counts
(:func:`split_classes`); :func:`resolve_split` accepts either. :func:`cap_rows` is the one
per-class cap (``data.max_per_class``, ``eval.max_per_class``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

SPLIT_NAMES = ("train", "val", "test")
Split = dict[str, list[str]]


def validate_split(split: Mapping[str, Sequence[str]], class_names: Sequence[str]) -> Split:
    """Check an explicit split and return it as a plain dict of lists.

    Requires exactly the keys ``train``/``val``/``test`` (``val`` may be empty), class names
    that exist in ``class_names``, no class twice, and no class in two splits. Classes
    listed nowhere are simply unused.
    """
    keys = set(split)
    if keys != set(SPLIT_NAMES):
        raise ValueError(f"a split needs exactly the keys {list(SPLIT_NAMES)}; got "
                         f"{sorted(keys)}.")
    known = set(class_names)
    out: Split = {}
    seen: dict[str, str] = {}
    for part in SPLIT_NAMES:
        names = split[part]
        if isinstance(names, str):
            raise ValueError(f"split[{part!r}] must be a list of class names, not the "
                             f"string {names!r}.")
        names = [str(n) for n in names]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"split[{part!r}] names unknown classes {unknown}; known "
                             f"classes: {sorted(known)}.")
        for n in names:
            if n in seen:
                where = "twice" if seen[n] == part else f"in both {seen[n]!r} and {part!r}"
                raise ValueError(f"class {n!r} appears {where}; splits must be "
                                 "class-disjoint.")
            seen[n] = part
        out[part] = names
    for part in ("train", "test"):
        if not out[part]:
            raise ValueError(f"split[{part!r}] is empty; give it at least one class.")
    return out


def split_classes(class_names: Sequence[str], counts: Sequence[int], seed: int) -> Split:
    """A seeded class-disjoint split with ``counts = (train, val, test)`` classes.

    The classes are permuted with ``np.random.default_rng(seed)`` and cut in order; each
    list is sorted for readability. ``sum(counts)`` may be less than the number of classes
    (the rest are unused).
    """
    counts = tuple(int(c) for c in counts)
    if len(counts) != 3 or min(counts) < 0:
        raise ValueError(f"counts must be three non-negative ints (train, val, test); "
                         f"got {counts}.")
    names = [str(n) for n in class_names]
    if len(set(names)) != len(names):
        raise ValueError("class_names contains duplicates.")
    if sum(counts) > len(names):
        raise ValueError(f"counts {counts} need {sum(counts)} classes but there are only "
                         f"{len(names)}.")
    order = np.random.default_rng(seed).permutation(len(names))
    bounds = np.cumsum((0,) + counts)
    split = {part: sorted(names[i] for i in order[bounds[k]:bounds[k + 1]])
             for k, part in enumerate(SPLIT_NAMES)}
    return validate_split(split, names)


def resolve_split(spec: Mapping[str, Sequence[str]] | Sequence[int],
                  class_names: Sequence[str], seed: int = 0) -> Split:
    """An explicit split dict (validated) or ``(train, val, test)`` counts (seeded)."""
    if isinstance(spec, Mapping):
        return validate_split(spec, class_names)
    return split_classes(class_names, spec, seed)


def cap_rows(labels: np.ndarray, num_classes: int, max_per_class: int | None,
             seed: int) -> np.ndarray:
    """Sorted rows keeping at most ``max_per_class`` examples of each class.

    Args:
      labels: int ``[N]`` class ids in ``[0, num_classes)``.
      max_per_class: the cap; ``None`` keeps every row.
      seed: the choice is ``default_rng([seed, 104729])``, one draw per class over the cap
        in class-id order, so a class's rows do not depend on which classes are used later.
    Returns:
      int64 ``[M]`` row indices in their original order.
    """
    labels = np.asarray(labels)
    if max_per_class is None:
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng([seed, 104729])
    keep = []
    for c in range(num_classes):
        rows = np.flatnonzero(labels == c)
        if len(rows) > max_per_class:
            rows = rng.choice(rows, size=max_per_class, replace=False)
        keep.append(rows)
    return np.sort(np.concatenate(keep)).astype(np.int64)
