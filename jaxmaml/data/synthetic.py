"""A synthetic few-shot text task for tests and benchmarks (no files, no tokenizer).

Each of ``num_classes`` classes owns ``keywords_per_class`` token ids; an example is a
random sequence of "noise" tokens with a few of its class's keywords inserted, then padded
to a random length. Classes are disjoint between seeds' class pools by construction
(``class_offset``), so meta-test classes can be unseen in meta-training.
"""

from __future__ import annotations

import numpy as np

from jaxmaml.types import Episodes, Examples

CLS, SEP, PAD = 2, 3, 0


def synthetic_examples(rng: np.random.Generator, class_ids: np.ndarray, n_per_class: int,
                       seq_len: int, vocab_size: int, *, keywords_per_class: int = 4,
                       keywords_per_example: int = 3, min_len: int | None = None) -> Examples:
    """``len(class_ids) * n_per_class`` examples labelled ``0..len(class_ids)-1`` (grouped)."""
    noise_lo = 4
    reserved = noise_lo + 1  # ids below this are special tokens
    n_noise = vocab_size // 4
    kw_base = reserved + n_noise
    if kw_base + (int(class_ids.max()) + 1) * keywords_per_class > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is too small for class {class_ids.max()} "
                         f"with {keywords_per_class} keywords per class.")
    way = len(class_ids)
    n = way * n_per_class
    ids = np.zeros((n, seq_len), np.int32)
    mask = np.zeros((n, seq_len), np.int32)
    labels = np.repeat(np.arange(way), n_per_class).astype(np.int32)
    min_len = min_len or max(keywords_per_example + 3, seq_len // 2)
    for row, label in enumerate(labels):
        length = rng.integers(min_len, seq_len + 1)
        body = rng.integers(reserved, reserved + n_noise, size=length - 2)
        kw = kw_base + (class_ids[label] * keywords_per_class
                        + rng.integers(0, keywords_per_class, size=keywords_per_example))
        pos = rng.choice(length - 2, size=keywords_per_example, replace=False)
        body[pos] = kw
        ids[row, :length] = np.concatenate([[CLS], body, [SEP]])
        mask[row, :length] = 1
    return Examples(ids, mask, labels, np.ones(n, np.float32))


def synthetic_episodes(rng: np.random.Generator, tasks: int, way: int, shot: int, query: int,
                       seq_len: int, vocab_size: int, num_classes: int = 20,
                       class_offset: int = 0) -> Episodes:
    """``tasks`` episodes: support ``[tasks, way*shot, seq_len]``, query ``[tasks, way*query, seq_len]``.

    Classes are drawn from ``class_offset .. class_offset + num_classes - 1``.
    """
    sup, qry = [], []
    for _ in range(tasks):
        classes = class_offset + rng.choice(num_classes, size=way, replace=False)
        ex = synthetic_examples(rng, classes, shot + query, seq_len, vocab_size)
        per_class = np.arange(way * (shot + query)).reshape(way, shot + query)
        s_idx, q_idx = per_class[:, :shot].ravel(), per_class[:, shot:].ravel()
        sup.append(Examples(*(x[s_idx] for x in ex[:4])))
        qry.append(Examples(*(x[q_idx] for x in ex[:4])))
    stack = lambda xs: Examples(*(np.stack(f) for f in list(zip(*xs))[:4]))
    return Episodes(stack(sup), stack(qry))
