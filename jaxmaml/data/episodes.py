"""N-way K-shot episode sampler: host-side numpy, fixed shapes, deterministic by seed.

The episode of global task ``t`` at step ``s`` depends only on ``(seed, s, t)``: it is
drawn with ``np.random.default_rng([seed, s, t])``. So resuming needs only the step
(``state_dict() == {"seed": ..., "step": ...}``), and each host of a multi-host run can
build just its own slice of the task axis and still agree with a single-host run.

Per task: ``way`` distinct classes are drawn from the sampler's classes in random order
(task-local label ``j`` is the ``j``-th drawn class, so the class->label map is a fresh
random permutation every task), then ``shot + query`` distinct examples per class, the
first ``shot`` for support and the rest for query (so support and query never share an
example). Rows are grouped by label: support label ``j`` occupies rows
``j*shot .. (j+1)*shot - 1``.

Imbalanced query batches (``query_mix="dirichlet"``, Veilleux et al. 2021, "Realistic
evaluation of transductive few-shot learning"): the task's ``way * query`` queries are split
over its classes in proportions drawn from ``Dirichlet(query_alpha)`` (rounded by largest
remainder; a class never gets more than its pool holds beyond the support), drawn from the
same ``default_rng([seed, step, task])`` after the classes, so the episodes stay a pure
function of ``(seed, step, task)``; the total, and so every shape, is unchanged. Query rows
are still grouped by label, in label order (a class may have none). The default,
``"balanced"``, is ``query`` queries per class, drawn exactly as before.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from jaxmaml.data.tokenize import TokenizedData
from jaxmaml.types import Episodes, Examples

QUERY_MIXES = ("balanced", "dirichlet")

class IndexEpisodes(NamedTuple):
    """Which dataset rows make up each episode (no data, only indices).

    ``support_idx``: int64 ``[tasks, way*shot]``; ``query_idx``: int64 ``[tasks, way*query]``
    (rows of the dataset); ``support_labels``/``query_labels``: int32, same shapes,
    task-local labels in ``[0, way)``; ``classes``: int32 ``[tasks, way]``, the dataset class
    index behind each task-local label.
    """

    support_idx: np.ndarray
    query_idx: np.ndarray
    support_labels: np.ndarray
    query_labels: np.ndarray
    classes: np.ndarray


def with_label_rows(index: IndexEpisodes, label_rows: np.ndarray) -> IndexEpisodes:
    """``index`` with one label-text row per class appended to each task's support.

    ``label_rows``: int64 ``[C]``, the row holding each dataset class's label text (its name
    or description; :mod:`jaxmaml.data.label_text`), indexed like ``index.classes``. Task
    ``t``'s support becomes ``[way*shot + way]``: its examples, then the texts of its
    classes in label order (labels ``0 .. way-1``), as :func:`jaxmaml.meta.priors.
    with_label_rows` appends them at test time, so meta-training sees the names as it will
    be used.
    """
    way = index.classes.shape[1]
    rows = np.asarray(label_rows, np.int64)[index.classes]
    labels = np.broadcast_to(np.arange(way, dtype=np.int32), rows.shape)
    return index._replace(support_idx=np.concatenate([index.support_idx, rows], 1),
                          support_labels=np.concatenate([index.support_labels, labels], 1))


def gather(arrays: Mapping[str, np.ndarray], index: IndexEpisodes) -> Episodes:
    """Build :class:`~jaxmaml.types.Episodes` from any per-example arrays.

    Args:
      arrays: maps ``Examples`` field names (e.g. ``input_ids``, ``attention_mask``,
        ``bottom``) to arrays whose leading axis is the dataset row ``[N, ...]``. Fields not
        given are ``None``.
      index: from :meth:`EpisodeSampler.indices`.

    Returns:
      Episodes with support fields ``[tasks, way*shot, ...]``, query ``[tasks, way*query,
      ...]``, labels from ``index`` and weights 1.0 (float32).
    """
    allowed = [f for f in Examples._fields if f not in ("labels", "weights")]
    unknown = sorted(set(arrays) - set(allowed))
    if unknown:
        raise ValueError(f"cannot gather {unknown}; Examples fields to gather: {allowed}.")

    def side(rows: np.ndarray, labels: np.ndarray) -> Examples:
        fields: dict[str, Any] = {f: None for f in allowed}
        fields.update({k: np.asarray(v)[rows] for k, v in arrays.items()})
        return Examples(labels=labels.astype(np.int32),
                        weights=np.ones(labels.shape, np.float32), **fields)

    return Episodes(side(index.support_idx, index.support_labels),
                    side(index.query_idx, index.query_labels))


class EpisodeSampler:
    """Seeded N-way K-shot episodes over a fixed set of classes.

    Args:
      data: anything with ``labels`` (int ``[N]``) and ``class_names``; a
        :class:`TokenizedData` for :meth:`episodes`.
      classes: class names (or indices into ``data.class_names``) to sample from, e.g. one
        part of a split; ``None`` means all classes.
      way, shot, query: classes per task, support and query examples per class.
      tasks: tasks per batch (the leading axis of every array).
      seed: non-negative int; with the step it fixes every episode.
      query_mix: ``"balanced"`` (``query`` per class) or ``"dirichlet"`` (``way * query``
        queries per task in Dirichlet(``query_alpha``) class proportions).
      query_alpha: the Dirichlet concentration (2.0: Veilleux et al.'s setting).
    """

    def __init__(self, data: Any, classes: Sequence[str | int] | None, way: int, shot: int,
                 query: int, tasks: int, seed: int, query_mix: str = "balanced",
                 query_alpha: float = 2.0):
        for name, value, lo in (("way", way, 2), ("shot", shot, 1), ("query", query, 1),
                                ("tasks", tasks, 1), ("seed", seed, 0)):
            if int(value) != value or value < lo:
                raise ValueError(f"{name} must be an integer >= {lo}; got {value!r}.")
        if query_mix not in QUERY_MIXES:
            raise ValueError(f"query_mix must be one of {QUERY_MIXES}; got {query_mix!r}.")
        if not (np.isfinite(query_alpha) and query_alpha > 0):
            raise ValueError(f"query_alpha must be a positive number; got {query_alpha!r}.")
        self.query_mix, self.query_alpha = query_mix, float(query_alpha)
        self.data = data
        self.way, self.shot, self.query = int(way), int(shot), int(query)
        self.tasks = int(tasks)
        self.seed, self.step = int(seed), 0
        names = tuple(data.class_names)
        self.class_ids = self._resolve_classes(classes, names)
        self.class_names = tuple(names[c] for c in self.class_ids)
        if len(self.class_ids) < self.way:
            raise ValueError(f"way={self.way} needs at least {self.way} classes but only "
                             f"{len(self.class_ids)} are available: {list(self.class_names)}.")
        labels = np.asarray(data.labels)
        order = np.argsort(labels, kind="stable")
        starts = np.searchsorted(labels[order], np.arange(len(names) + 1))
        self.pools = [order[starts[c]:starts[c + 1]] for c in self.class_ids]
        need = self.shot + self.query
        small = [(n, len(p)) for n, p in zip(self.class_names, self.pools) if len(p) < need]
        if small:
            desc = ", ".join(f"{n!r} has {k}" for n, k in small)
            raise ValueError(f"each class needs shot+query={self.shot}+{self.query}={need} "
                             f"examples, but {desc}. Lower shot/query, raise max_per_class, "
                             "or leave those classes out of the split.")

    @staticmethod
    def _resolve_classes(classes, names: tuple[str, ...]) -> np.ndarray:
        if classes is None:
            return np.arange(len(names))
        if isinstance(classes, str):
            raise ValueError(f"classes must be a list, not the string {classes!r}.")
        index = {n: i for i, n in enumerate(names)}
        ids = []
        for c in classes:
            if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
                if not 0 <= c < len(names):
                    raise ValueError(f"class index {c} out of range for {len(names)} classes.")
                ids.append(int(c))
            elif c in index:
                ids.append(index[c])
            else:
                raise ValueError(f"unknown class {c!r}; known classes: {list(names)}.")
        if len(set(ids)) != len(ids):
            raise ValueError(f"classes contains duplicates: {list(classes)}.")
        return np.asarray(ids, np.int64)

    def example_indices(self) -> np.ndarray:
        """Sorted dataset rows any episode can use (int64 ``[M]``)."""
        return np.sort(np.concatenate(self.pools))

    def indices(self, step: int, tasks: slice = slice(None)) -> IndexEpisodes:
        """The episodes of ``step`` (only tasks ``tasks`` of the global batch) as indices.

        A pure function of ``(seed, step, task)``. Shapes: ``[t, way*shot]`` and
        ``[t, way*query]`` with ``t = len(range(self.tasks)[tasks])``.
        """
        if step < 0:
            raise ValueError(f"step must be >= 0; got {step}.")
        task_ids = range(self.tasks)[tasks]
        if self.query_mix == "dirichlet":
            return self._dirichlet_indices(step, task_ids)
        way, shot, query = self.way, self.shot, self.query
        s_idx = np.empty((len(task_ids), way, shot), np.int64)
        q_idx = np.empty((len(task_ids), way, query), np.int64)
        chosen = np.empty((len(task_ids), way), np.int32)
        for row, t in enumerate(task_ids):
            rng = np.random.default_rng([self.seed, int(step), t])
            picks = rng.choice(len(self.pools), size=way, replace=False)
            chosen[row] = self.class_ids[picks]
            for j, c in enumerate(picks):
                pool = self.pools[c]
                rows = pool[rng.choice(len(pool), size=shot + query, replace=False)]
                s_idx[row, j], q_idx[row, j] = rows[:shot], rows[shot:]
        n = len(task_ids)
        s_lab = np.tile(np.repeat(np.arange(way, dtype=np.int32), shot), (n, 1))
        q_lab = np.tile(np.repeat(np.arange(way, dtype=np.int32), query), (n, 1))
        return IndexEpisodes(s_idx.reshape(n, way * shot), q_idx.reshape(n, way * query),
                             s_lab, q_lab, chosen)

    def _dirichlet_indices(self, step: int, task_ids: range) -> IndexEpisodes:
        """:meth:`indices` with Dirichlet class proportions of the ``way * query`` queries."""
        way, shot, total = self.way, self.shot, self.way * self.query
        n = len(task_ids)
        s_idx = np.empty((n, way, shot), np.int64)
        q_idx = np.empty((n, total), np.int64)
        q_lab = np.empty((n, total), np.int32)
        chosen = np.empty((n, way), np.int32)
        for row, t in enumerate(task_ids):
            rng = np.random.default_rng([self.seed, int(step), t])
            picks = rng.choice(len(self.pools), size=way, replace=False)
            chosen[row] = self.class_ids[picks]
            room = np.array([len(self.pools[c]) - shot for c in picks])
            counts = dirichlet_counts(rng.dirichlet(np.full(way, self.query_alpha)), total,
                                      room)
            q_lab[row] = np.repeat(np.arange(way, dtype=np.int32), counts)
            queries = []
            for j, c in enumerate(picks):
                pool = self.pools[c]
                rows = pool[rng.choice(len(pool), size=shot + counts[j], replace=False)]
                s_idx[row, j] = rows[:shot]
                queries.append(rows[shot:])
            q_idx[row] = np.concatenate(queries)
        s_lab = np.tile(np.repeat(np.arange(way, dtype=np.int32), shot), (n, 1))
        return IndexEpisodes(s_idx.reshape(n, way * shot), q_idx, s_lab, q_lab, chosen)

    def episodes(self, step: int, tasks: slice = slice(None)) -> Episodes:
        """Token episodes of ``step``: support ``[t, way*shot, seq_len]``, query
        ``[t, way*query, seq_len]`` (int32 ids/mask/labels, float32 weights of 1.0)."""
        return gather({"input_ids": self.data.input_ids,
                       "attention_mask": self.data.attention_mask},
                      self.indices(step, tasks))

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "step": self.step}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue from a saved step; the seed must match this sampler's."""
        if int(state["seed"]) != self.seed:
            raise ValueError(f"sampler state has seed {state['seed']} but this sampler was "
                             f"built with seed {self.seed}; build it with the saved seed.")
        if int(state["step"]) < 0:
            raise ValueError(f"sampler state has a negative step {state['step']}.")
        self.step = int(state["step"])


def dirichlet_counts(proportions: np.ndarray, total: int, room: np.ndarray) -> np.ndarray:
    """Integer counts ``[way]`` summing to ``total``, near ``proportions * total``.

    Largest-remainder rounding (ties to the lower class index), then each count capped at
    ``room`` (the examples a class has beyond its support) with the excess handed, one at a
    time, to the class furthest below its share that still has room. Needs
    ``room.sum() >= total``.
    """
    room = np.asarray(room, np.int64)
    if room.sum() < total:
        raise ValueError(f"{total} queries do not fit the classes' {room.sum()} examples "
                         "beyond the support.")
    target = np.asarray(proportions, np.float64) * total
    counts = np.floor(target).astype(np.int64)
    order = np.argsort(-(target - counts), kind="stable")
    counts[order[:total - counts.sum()]] += 1
    excess = int(np.maximum(counts - room, 0).sum())
    counts = np.minimum(counts, room)
    for _ in range(excess):
        gap = np.where(counts < room, target - counts, -np.inf)
        counts[int(np.argmax(gap))] += 1
    return counts
