"""Several text sources as one dataset, and an episode sampler that draws each task from one.

Multi-source meta-training (as in Meta-Dataset): the tokenized sources are concatenated
into a single :class:`~jaxmaml.data.tokenize.TokenizedData` whose class names are
namespaced ``"source/class"`` and whose rows are padded to the longest source's
``seq_len`` (so one compiled meta-step serves every source). :class:`MixtureSampler` picks
a source for each task with probability proportional to its weight, then draws an
ordinary N-way K-shot episode from that source's classes only.

Determinism: task ``t`` of step ``s`` takes its source from
``np.random.default_rng([seed, s, t, SOURCE_TAG])`` and its episode from the source's
:class:`~jaxmaml.data.episodes.EpisodeSampler` (``default_rng([seed, s, t])``), so every
episode is a pure function of ``(seed, step, task)`` and the sampler state to checkpoint
is the step (plus the source names and weights, checked on restore).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from jaxmaml.data.episodes import EpisodeSampler, gather, IndexEpisodes
from jaxmaml.data.tokenize import TokenizedData
from jaxmaml.types import Episodes

SOURCE_TAG = 0x736F7572  # separates the source-choice stream from the episode stream
SEP = "/"


def combine(parts: Sequence[tuple[str, TokenizedData]], pad_ids: Sequence[int] | None = None
            ) -> TokenizedData:
    """Concatenate tokenized sources into one dataset padded to the longest ``seq_len``.

    Args:
      parts: ``(name, data)`` per source; ``data.input_ids`` ``[N_i, L_i]``.
      pad_ids: the token id to pad each source's ids with (default 0); padded positions
        get ``attention_mask`` 0.

    Returns:
      ``TokenizedData`` with ids/mask ``[sum N_i, max L_i]``, labels offset per source and
      class names ``"name/class"`` in source order.
    """
    if not parts:
        raise ValueError("combine needs at least one source.")
    names = [n for n, _ in parts]
    if len(set(names)) != len(names) or any(not n or SEP in n for n in names):
        raise ValueError(f"source names must be unique, non-empty and without {SEP!r}: "
                         f"{names}.")
    pad_ids = list(pad_ids) if pad_ids is not None else [0] * len(parts)
    length = max(d.input_ids.shape[1] for _, d in parts)
    ids, mask, labels, classes = [], [], [], []
    for (name, d), pad in zip(parts, pad_ids):
        extra = length - d.input_ids.shape[1]
        ids.append(np.pad(np.asarray(d.input_ids, np.int32), ((0, 0), (0, extra)),
                          constant_values=pad))
        mask.append(np.pad(np.asarray(d.attention_mask, np.int32), ((0, 0), (0, extra))))
        labels.append(np.asarray(d.labels, np.int32) + len(classes))
        classes.extend(f"{name}{SEP}{c}" for c in d.class_names)
    return TokenizedData(np.concatenate(ids), np.concatenate(mask), np.concatenate(labels),
                         tuple(classes))


class MixtureSampler:
    """Seeded episodes where each task comes from one source, chosen by weight.

    Args:
      data: the combined dataset (:func:`combine`), or anything with ``labels`` and
        ``class_names`` for :meth:`indices` alone.
      sources: ``(name, classes)`` per source: the class names (of ``data``) its tasks
        draw from, e.g. its meta-train classes.
      weights: one positive sampling weight per source.
      way, shot, query, tasks, seed: as for :class:`EpisodeSampler`.
    """

    def __init__(self, data, sources: Sequence[tuple[str, Sequence[str]]],
                 weights: Sequence[float], way: int, shot: int, query: int, tasks: int,
                 seed: int):
        if not sources:
            raise ValueError("a MixtureSampler needs at least one source.")
        w = np.asarray(weights, np.float64)
        if w.shape != (len(sources),) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"need one positive weight per source; got {list(weights)} for "
                             f"{len(sources)} sources.")
        self.data = data
        self.names = tuple(n for n, _ in sources)
        self.weights = tuple(float(x) for x in w)
        self.probs = w / w.sum()
        self.samplers = [EpisodeSampler(data, list(classes), way, shot, query, tasks, seed)
                         for _, classes in sources]
        first = self.samplers[0]
        self.way, self.shot, self.query, self.tasks = first.way, first.shot, first.query, tasks
        self.seed, self.step = first.seed, 0

    def task_sources(self, step: int, tasks: slice = slice(None)) -> np.ndarray:
        """Source index of each task of ``step`` (int32 ``[t]``); pure in (seed, step, task)."""
        return np.array([np.random.default_rng([self.seed, int(step), t, SOURCE_TAG])
                         .choice(len(self.samplers), p=self.probs)
                         for t in range(self.tasks)[tasks]], np.int32)

    def indices(self, step: int, tasks: slice = slice(None)) -> IndexEpisodes:
        """The episodes of ``step`` (tasks ``tasks``) as rows of ``data``; shapes as
        :meth:`EpisodeSampler.indices` (``[t, way*shot]``, ``[t, way*query]``, ``[t, way]``)."""
        task_ids = range(self.tasks)[tasks]
        chosen = self.task_sources(step, tasks)
        per_task = [self.samplers[k].indices(step, slice(t, t + 1))
                    for t, k in zip(task_ids, chosen)]
        if not per_task:
            return self.samplers[0].indices(step, slice(0, 0))
        return IndexEpisodes(*(np.concatenate(f) for f in zip(*per_task)))

    def example_indices(self) -> np.ndarray:
        """Sorted rows any episode can use (int64 ``[M]``)."""
        return np.unique(np.concatenate([s.example_indices() for s in self.samplers]))

    def episodes(self, step: int, tasks: slice = slice(None)) -> Episodes:
        """Token episodes of ``step``: support ``[t, way*shot, seq_len]``, query
        ``[t, way*query, seq_len]``."""
        return gather({"input_ids": self.data.input_ids,
                       "attention_mask": self.data.attention_mask},
                      self.indices(step, tasks))

    def state_dict(self) -> dict:
        return {"seed": self.seed, "step": self.step, "sources": list(self.names),
                "weights": list(self.weights)}

    def load_state_dict(self, state: Mapping) -> None:
        """Continue from a saved step; seed, sources and weights must match."""
        saved = (int(state["seed"]), list(state.get("sources", [])),
                 [float(w) for w in state.get("weights", [])])
        if saved != (self.seed, list(self.names), list(self.weights)):
            raise ValueError(f"sampler state (seed, sources, weights) {saved} differs from "
                             f"this sampler's {(self.seed, list(self.names), list(self.weights))}"
                             "; build it with the saved config.")
        if int(state["step"]) < 0:
            raise ValueError(f"sampler state has a negative step {state['step']}.")
        self.step = int(state["step"])
