"""Class labels of a support set: which classes, in which order, and how they print.

Rule for ``classes_`` (scikit-learn sorts like ``np.unique``; mixed types need a rule):
numbers (``bool``, ``int``, ``float`` and NumPy scalars) come first, by value; then strings,
alphabetically; then any other hashable type, by type name and ``repr``. Labels that would
print the same but are different classes (``1`` and ``"1"``), or are one class to Python but
print differently (``True`` and ``1``, ``1`` and ``1.0``), are refused with a one-line
``ValueError``: a prediction file could not tell them apart.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np


def plain(label: Any) -> Any:
    """A NumPy scalar as the Python value it holds (``np.int64(3)`` -> ``3``)."""
    return label.item() if isinstance(label, np.generic) else label


def _order(label: Any) -> tuple:
    if isinstance(label, numbers.Real):
        return (0, float(label), str(label))
    if isinstance(label, str):
        return (1, label)
    return (2, type(label).__name__, repr(label))


def check_printable(labels: Sequence[Any]) -> None:
    """Refuse labels that collide when printed, or that Python merges but print apart."""
    by_text: dict[str, Any] = {}
    by_value: dict[Any, Any] = {}
    for y in labels:
        text = str(y)
        if text in by_text and by_text[text] != y:
            raise ValueError(f"labels {by_text[text]!r} and {y!r} print the same ({text}) but "
                             "are different classes; use one type for every label (e.g. all "
                             "strings).")
        if y in by_value and str(by_value[y]) != text:
            raise ValueError(f"labels {by_value[y]!r} and {y!r} are one class to Python "
                             f"({by_value[y]!r} == {y!r}) but print differently; use one type "
                             "for every label.")
        by_text.setdefault(text, y)
        by_value.setdefault(y, y)


def sorted_classes(labels: Sequence[Any]) -> list[Any]:
    """The distinct ``labels`` in the documented order (numbers, strings, others)."""
    labels = [plain(y) for y in labels]
    check_printable(labels)
    return sorted(set(labels), key=_order)


def classes_array(classes: Sequence[Any]) -> np.ndarray:
    """``classes_``: int64 for ints, bool for bools, float64 for floats, object otherwise
    (strings, and mixes: each label keeps its own type)."""
    kinds = {type(c) for c in classes}
    dtype = {frozenset({int}): np.int64, frozenset({bool}): np.bool_,
             frozenset({float}): np.float64}.get(frozenset(kinds), object)
    return np.array(list(classes), dtype=dtype)
