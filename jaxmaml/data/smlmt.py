"""Self-supervised classification tasks from unlabelled text (SMLMT, Bansal et al. 2020,
"Self-Supervised Meta-Learning for Few-Shot Natural Language Classification Tasks").

Each class is a word: every text that contains a chosen word becomes an example of that
word's class with the word replaced by ``[MASK]`` (every occurrence, any case), so a task
asks which word was masked out. A chosen word is a content word: letters only, longer than
3, not a function word (``stop_words``), and in ``min_df``-``max_df`` of the texts. A text
with several chosen words goes to the rarest (ties: alphabetical), so no text is in two
classes; or, with ``every_word=True`` (as in the paper), it is an example of each of them,
masked for that word only (a different string per class). Words left with fewer than
``min_per_class`` texts are dropped. Deterministic: the same texts give the same rows.

The built-in ``docs_smlmt`` source (:func:`load_docs_smlmt`) applies this to the texts of
two bundled documentation sources, ``pydocs`` and ``pyhowto`` (their labels unused), with
the short function-word list :data:`STOP_WORDS` and ``every_word=True``, ``min_df`` 20,
``max_df`` 200: about 900 word classes, tasks of the documentation genre without labels
(cap the examples per class with ``data.max_per_class``). ``benchmarks/smlmt.py`` writes the same rows for any text (with
scikit-learn's stop-word list) as a file for a ``data.sources`` entry.
"""

from __future__ import annotations

import collections
import re
from typing import Iterable, Sequence

from jaxmaml.data.pydocs import load_pydocs, load_pyhowto
from jaxmaml.data.sources import TextDataset, from_lists

WORD = re.compile(r"[a-z]+")
MASK = "[MASK]"
# function words longer than 3 letters (shorter words are never chosen)
STOP_WORDS = frozenset("""
about above after again against also although among another anything around because been
before being below between both cannot could does doing down during each either else
even ever every from further have having here however into itself just least less many
might more most much must neither never next often once only other others otherwise over
same several should since some something such than that their them themselves then there
therefore these they this those though through thus together under unless until upon very
were what whatever when where whether which while whom whose will with within without
would your yours yourself""".split())
DOCS_SOURCES = ("pydocs", "pyhowto")
DOCS_OPTIONS = {"min_df": 20, "max_df": 200, "min_per_class": 20, "every_word": True}

info = {
    "name": "docs-smlmt",
    "description": "masked-word classes (SMLMT) over the pydocs and pyhowto texts",
    "genre": "technical documentation and how-to guides, self-supervised",
    "num_examples": 51_293,
    "num_classes": 925,
}


def smlmt_rows(texts: Iterable[str], min_df: int = 20, max_df: int = 400,
               min_per_class: int = 20, stop_words: Iterable[str] = STOP_WORDS,
               every_word: bool = False) -> list[tuple[str, str]]:
    """``(masked text, word)`` rows, sorted by (unmasked) text, then word; see the module
    docstring."""
    stop_words = frozenset(stop_words)
    texts = sorted({t.strip() for t in texts if t.strip()})
    words = [set(WORD.findall(t.lower())) for t in texts]
    df = collections.Counter(w for ws in words for w in ws)
    vocab = {w for w, c in df.items()
             if min_df <= c <= max_df and w not in stop_words and len(w) > 3}
    rows = []
    for text, ws in zip(texts, words):
        chosen = sorted(w for w in ws if w in vocab)
        if chosen and not every_word:
            chosen = [min(chosen, key=lambda w: (df[w], w))]
        # the same word boundaries as WORD (letters only), so "socket_name" masks too
        rows += [(re.sub(rf"(?i)(?<![a-z]){w}(?![a-z])", MASK, text), w) for w in chosen]
    counts = collections.Counter(w for _, w in rows)
    return [(t, w) for t, w in rows if counts[w] >= min_per_class]


def smlmt_dataset(texts: Sequence[str], meta: dict | None = None, **kwargs) -> TextDataset:
    """:func:`smlmt_rows` of ``texts`` (``kwargs``: its options) as a
    :class:`TextDataset` whose classes are the words and whose ``info`` is ``meta`` plus
    the number of texts and the options.

    Raises:
      ValueError: no word keeps ``min_per_class`` texts (says what to lower).
    """
    rows = smlmt_rows(texts, **kwargs)
    if not rows:
        raise ValueError(f"no word of {len(texts)} texts has enough texts for a class; lower "
                         "min_df / min_per_class.")
    meta = dict(meta or {}, num_texts=len(texts),
                options={k: v for k, v in kwargs.items() if k != "stop_words"})
    return from_lists([t for t, _ in rows], [w for _, w in rows], info=meta)


_DOCS_LOADERS = {"pydocs": load_pydocs, "pyhowto": load_pyhowto}


def load_docs_smlmt(sources: Sequence[str] = DOCS_SOURCES, **kwargs) -> TextDataset:
    """The built-in ``docs_smlmt`` source: :func:`smlmt_dataset` of the texts of the
    built-in ``sources`` (default ``pydocs`` and ``pyhowto``), ``kwargs`` its options."""
    texts = [t for name in sources for t in _DOCS_LOADERS[name]().texts]
    meta = {k: v for k, v in info.items() if not k.startswith("num_")}
    options = dict(DOCS_OPTIONS, **kwargs)
    return smlmt_dataset(texts, dict(meta, sources=list(sources)), **options)
