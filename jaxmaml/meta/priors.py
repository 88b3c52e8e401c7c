"""Class names (or descriptions) as priors: one extra, weighted support row per class.

The label texts are encoded by the same encoder as the support set and join it as rows
labelled with their class, so they count in the prototypes a cosine head starts from and
in the fine-tuning loss like any labelled example of weight ``weight``. A class with a
name but no support example is then zero-shot: its prototype is its name's feature.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmaml.types import Examples

NAME_WEIGHT = 1.0  # a label text counts like this many support examples


def with_label_rows(support: Examples, label_rows: Examples,
                    weight: float | jax.Array = NAME_WEIGHT) -> Examples:
    """``support`` ``[n, ...]`` followed by the label-text rows ``[way, ...]``.

    ``label_rows.labels`` are the classes the texts name and ``label_rows.weights`` 1 for a
    class with a text and 0 for one without (a padding row); the appended rows get weight
    ``weight * label_rows.weights``. ``bottom`` is concatenated when both carry it.
    """
    rows = label_rows._replace(weights=weight * label_rows.weights)
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b.astype(a.dtype)]), support, rows)
