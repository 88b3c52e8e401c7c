"""``FewShotClassifier``: a meta-learned model on a user's own few-shot task (scikit-learn style).

::

    clf = jaxmaml.FewShotClassifier.from_run("runs/quickstart")   # or .from_pretrained(export)
    clf.fit(texts, labels)          # the learner's adaptation on this support set
    clf.predict(new_texts); clf.predict_proba(new_texts); clf.classes_; clf.embed(new_texts)

``fit`` runs the learner's ``adapt`` (:mod:`jaxmaml.learners`) on the tokenized support set,
``predict``/``predict_proba`` its ``predict`` (probabilities ``softmax(logits)``), exactly
what meta-training and ``jaxmaml eval`` ran (``meta_learned``). ``head="probe"`` instead
fits a logistic-regression probe on the encoder's sentence features (mean pooled,
L2-normalized), exactly ``jaxmaml eval``'s ``meta_learned_probe``
(:func:`jaxmaml.meta.baselines.fit_probe`: scikit-learn's ``LogisticRegression(C=1)``). Any
number of classes and shots per class (unbalanced too); labels are any hashable values
(``classes_`` sorted: numbers by value, then strings, then other types; see
:mod:`jaxmaml.labels`). Both steps are jitted: the support set is padded
with zero-weight rows to the next power of two (the probe: compiled per support size) and
texts are scored in fixed batches padded to a length bucket (:mod:`jaxmaml.text_batches`),
so a shape compiles once. Texts are cut at the base sentence encoder's ``max_seq_length``
(not the meta-training length), with one warning per call. A fitted classifier is kept
with :meth:`FewShotClassifier.save_pretrained` (:mod:`jaxmaml.classifier_io`).

``adapt="finetune"`` fine-tunes the encoder on the support set instead (a cosine head
started at the class prototypes; :mod:`jaxmaml.meta.finetune`, options
:class:`~jaxmaml.meta.finetune.FinetuneOptions`); ``fit(..., label_texts=...)`` adds class
names or descriptions as one more example per class; ``predict(..., transductive=True)``
refines the classes over the texts being labelled (:mod:`jaxmaml.adaptation`)::

    clf = FewShotClassifier.from_run(run, adapt="finetune")
    clf.fit(texts, labels, label_texts=True).predict(new_texts, transductive=True)
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxmaml import adaptation
from jaxmaml.classifier_io import is_fitted_dir, load_fitted, save_fitted
from jaxmaml.data.tokenize import _load_tokenizer
from jaxmaml.labels import check_printable, classes_array, plain, sorted_classes
from jaxmaml.learners import from_config
from jaxmaml.meta.baselines import fit_probe, probe_logits, sentence_features
from jaxmaml.meta.finetune import FinetuneOptions
from jaxmaml.meta.encoding import embedding
from jaxmaml.meta.priors import NAME_WEIGHT, with_label_rows
from jaxmaml.run.load import Loaded, load_export, load_run
from jaxmaml.text_batches import TextTokenizer
from jaxmaml.types import Examples

MIN_SUPPORT_ROWS = 8
HEADS = ("learner", "probe")


def _bucket(n: int) -> int:
    """The padded number of support rows for ``n`` examples (powers of two, >= 8)."""
    return max(MIN_SUPPORT_ROWS, 1 << (max(n, 1) - 1).bit_length())


@functools.lru_cache(maxsize=32)
def _adapt_fn(cfg, way: int) -> Callable:

    learner = from_config(cfg)
    return jax.jit(lambda mp, support: learner.adapt(mp, support, way))


@functools.lru_cache(maxsize=32)
def _predict_fn(cfg) -> Callable:

    learner = from_config(cfg)
    return jax.jit(lambda tp, ex: jax.nn.log_softmax(learner.predict(tp, ex), -1))


@functools.lru_cache(maxsize=32)
def _probe_fit_fn(way: int) -> Callable:

    return jax.jit(lambda x, y: fit_probe(x, y, way))


@jax.jit
def _probe_log_proba(probe: dict, feats: jax.Array) -> jax.Array:

    return jax.nn.log_softmax(probe_logits(probe, feats), -1)


@functools.lru_cache(maxsize=32)
def _embed_fn(cfg) -> Callable:

    return jax.jit(lambda enc, ex: embedding(enc, ex, cfg))


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise ValueError(f"{what} must be a list of strings, not one string; wrap it: [text].")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{what} is empty: pass at least one text.")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"{what} row {i} is {'empty' if isinstance(t, str) else repr(t)}"
                             "; every text must be a non-empty string (drop or fill it).")
    return texts


class FewShotClassifier:
    """Adapt a meta-learned model to a labelled support set, then classify new texts.

    Args:
      loaded: a :class:`~jaxmaml.run.load.Loaded` model (use :meth:`from_run` or
        :meth:`from_pretrained`).
      seq_len: most tokens per text (default: the base sentence encoder's
        ``max_seq_length``, else the model's position limit; not the meta-training length).
        Batches are padded to a power-of-two length bucket (>= 16) that holds their longest
        text; longer texts are cut, with one warning per call.
      batch_size: texts per jitted forward pass in :meth:`predict` / :meth:`embed`.
      head: ``"learner"`` (default): the learner's own adaptation; ``"probe"``: a
        logistic-regression probe on the frozen encoder's sentence features.
      adapt: ``"learner"`` (default): the learner's own adaptation (or ``head``);
        ``"finetune"``: test-time fine-tuning of the encoder with a cosine head started at
        the class prototypes (:func:`jaxmaml.meta.finetune.finetune_adapt`), configured by
        ``finetune`` (:class:`~jaxmaml.meta.finetune.FinetuneOptions`; ``steps=0`` is the
        cosine centroid of the encoder's mean-pooled, L2-normalized features).
      label_weight: how many support examples a class's label text counts as (``fit``'s
        ``label_texts``).
    """

    def __init__(self, loaded: Loaded, *, seq_len: int | None = None, batch_size: int = 64,
                 head: str = "learner", adapt: str = "learner",
                 finetune: FinetuneOptions | None = None, label_weight: float = NAME_WEIGHT):
        if head not in HEADS:
            raise ValueError(f"head={head!r}: use one of {', '.join(HEADS)}.")
        if adapt not in adaptation.ADAPTS:
            raise ValueError(f"adapt={adapt!r}: use one of {', '.join(adaptation.ADAPTS)}.")
        if adapt == "finetune" and head != "learner":
            raise ValueError("adapt='finetune' trains its own cosine head; drop head='probe'.")
        if label_weight <= 0:
            raise ValueError(f"label_weight={label_weight} must be > 0.")
        self.head, self.adapt, self.label_weight = head, adapt, float(label_weight)
        self.finetune = finetune or FinetuneOptions()
        self._loaded = loaded  # what save_pretrained writes the encoder from
        self.meta_params = loaded.meta_params
        self.cfg = loaded.meta
        self.step = loaded.step
        self.seq_len = int(seq_len or loaded.max_seq_len or loaded.seq_len)
        if not 2 <= self.seq_len <= self.cfg.model.max_position_embeddings:
            raise ValueError(f"seq_len={self.seq_len} must be in [2, "
                             f"{self.cfg.model.max_position_embeddings}] for this model.")
        self.batch_size = int(batch_size)
        self.tokenizer = _load_tokenizer(loaded.tokenizer_dir)
        self._texts = TextTokenizer(self.tokenizer, self.seq_len)
        self.task_params_: dict | None = None
        self.support_: Examples | None = None
        self.classes_: np.ndarray | None = None

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best", **kwargs
                 ) -> "FewShotClassifier":
        """From a ``jaxmaml train`` run directory (``checkpoint``: best, latest, a step)."""
        return cls(load_run(run_dir, checkpoint), **kwargs)

    @classmethod
    def from_pretrained(cls, export_dir: str | Path, **kwargs) -> "FewShotClassifier":
        """From a ``jaxmaml export`` directory, or a fitted classifier saved with
        :meth:`save_pretrained` (reloaded fitted). A plain HF BERT / sentence-transformers
        directory works too: a frozen encoder with a cosine-centroid head on its declared
        pooling and normalization (default: mean pooling, L2-normalized), with a warning."""
        if is_fitted_dir(export_dir):
            return load_fitted(cls, export_dir, **kwargs)
        return cls(load_export(export_dir, kwargs.get("seq_len")), **kwargs)

    def save_pretrained(self, out_dir: str | Path, overwrite: bool = False) -> Path:
        """Save this fitted classifier to ``out_dir`` (self-contained: the encoder as an
        export, the task parameters, classes and settings; written atomically) for
        :meth:`from_pretrained` and ``jaxmaml predict out_dir --texts ...``. See
        :mod:`jaxmaml.classifier_io`."""
        return save_fitted(self, out_dir, overwrite)

    @property
    def algorithm(self) -> str:
        return self.cfg.algorithm

    # ------------------------------------------------------------------ tokenize
    def _tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """ids, mask ``[n, L]``: ``L`` the length bucket of the longest text."""
        return self._texts(texts)

    def _batches(self, texts: Sequence[str], what: str):
        """Fixed-size padded :class:`Examples` batches and their real row counts."""
        texts = _check_texts(texts, what)
        for s in range(0, len(texts), self.batch_size):
            ids, mask = self._tokenize(texts[s:s + self.batch_size])
            n, pad = len(ids), self.batch_size - len(ids)
            ids, mask = np.pad(ids, ((0, pad), (0, 0))), np.pad(mask, ((0, pad), (0, 0)))
            yield Examples(ids, mask, np.zeros(len(ids), np.int32),
                           np.ones(len(ids), np.float32)), n

    # ------------------------------------------------------------------ estimator API
    def fit(self, texts: Sequence[str], labels: Sequence[Any],
            classes: Sequence[Any] | None = None, label_texts: Any = None
            ) -> "FewShotClassifier":
        """Adapt to the support set ``texts`` with ``labels`` (any hashable values).

        ``classes`` (optional) fixes the class list and its order; each needs at least one
        support example or a label text.

        ``label_texts`` (optional) gives classes names or descriptions that act as one more
        support example of each class (weight ``label_weight``): ``True`` (the labels
        themselves), a dict ``class -> text`` (a class only named there is zero-shot: its
        prototype is its name) or a list aligned with the classes.
        """
        with self._texts.call("the support texts"):
            return self._fit(texts, labels, classes, label_texts)

    def _fit(self, texts, labels, classes, label_texts) -> "FewShotClassifier":
        """:meth:`fit` inside one warning scope."""
        texts = _check_texts(texts, "the support texts")
        labels = list(labels)
        if len(labels) != len(texts):
            raise ValueError(f"{len(texts)} support texts but {len(labels)} labels; pass one "
                             "label per text.")
        if any(y is None or (isinstance(y, float) and np.isnan(y)) for y in labels):
            i = next(i for i, y in enumerate(labels)
                     if y is None or (isinstance(y, float) and np.isnan(y)))
            raise ValueError(f"support row {i} has no label; label every support example.")
        labels = [plain(y) for y in labels]
        present = sorted_classes(labels)
        if classes is None:
            classes = present
            if isinstance(label_texts, dict):  # a class only named there is zero-shot
                classes = sorted_classes(list(present) + [plain(c) for c in label_texts])
        else:
            classes = [plain(c) for c in classes]
            check_printable(classes)
            missing = [c for c in classes if c not in set(labels)
                       and not adaptation.has_label_text(label_texts, c)]
            if missing:
                raise ValueError(f"class {missing[0]!r} has no support example; give every "
                                 "class at least one labelled text (or drop it from classes).")
            extra = [y for y in present if y not in set(classes)]
            if extra:
                raise ValueError(f"support label {extra[0]!r} is not in classes; add it.")
        if len(classes) < 2:
            raise ValueError(f"the support set has a single class ({classes[0]!r}); few-shot "
                             "classification needs at least 2 classes.")
        index = {c: i for i, c in enumerate(classes)}
        classes_ = classes_array(classes)
        names = None if label_texts is None else adaptation.label_text_list(label_texts, classes)
        if self.head == "probe":
            if names is not None:
                raise ValueError("label_texts needs head='learner' (the probe has no "
                                 "weighted rows); drop one of them.")
            y = np.array([index[y] for y in labels], np.int32)
            self.task_params_ = _probe_fit_fn(len(classes))(
                self._sentence_features(texts, "the support texts"), y)
            self.classes_ = classes_
            return self
        ids, mask = self._tokenize(texts)
        if names is not None:  # support and label rows share one length bucket
            length = max(ids.shape[1], self._tokenize([t or "-" for t in names])[0].shape[1])
            ids, mask = self._texts(texts, length)
        n, rows = len(texts), _bucket(len(texts))
        support = Examples(np.pad(ids, ((0, rows - n), (0, 0))),
                           np.pad(mask, ((0, rows - n), (0, 0))),
                           np.array([index[y] for y in labels] + [0] * (rows - n), np.int32),
                           np.array([1.0] * n + [0.0] * (rows - n), np.float32))
        if names is not None:
            support = with_label_rows(
                support, adaptation.label_rows(lambda t: self._texts(t, ids.shape[1]), names),
                self.label_weight)
        if self.adapt == "finetune":
            self.task_params_ = adaptation.finetune_fit_fn(self.cfg, self.finetune, len(classes))(
                self.meta_params["encoder"], support)
        else:
            self.task_params_ = _adapt_fn(self.cfg, len(classes))(self.meta_params, support)
        self.support_ = support
        self.classes_ = classes_
        self._predict_cfg = self.cfg.replace(way=len(classes))
        return self

    def _log_proba(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                   transductive: bool = False) -> np.ndarray:
        if self.task_params_ is None:
            raise ValueError("call fit(texts, labels) with a labelled support set first.")
        if transductive:
            return self._transductive_log_proba(texts, progress)
        out = []
        with self._texts.call("the texts to classify"):
            self._score_batches(texts, progress, out)
        return np.concatenate(out)

    def _score_batches(self, texts, progress, out: list) -> None:
        """Append each batch's log-probabilities ``[n, way]`` to ``out``."""
        for batch, n in self._batches(texts, "the texts to classify"):
            if self.adapt == "finetune":
                logp = adaptation.finetune_log_proba_fn(self.cfg, self.finetune)(
                    self.task_params_, batch)
            elif self.head == "probe":
                logp = _probe_log_proba(self.task_params_, self._features(batch))
            else:
                logp = _predict_fn(self._predict_cfg)(self.task_params_, batch)
            out.append(np.asarray(logp)[:n])
            if progress is not None:
                progress(n)

    def _transductive_log_proba(self, texts: Sequence[str],
                                progress: Callable[[int], None] | None) -> np.ndarray:
        if self.adapt != "finetune":
            raise ValueError("transductive=True refines a cosine head: use adapt='finetune' "
                             "(finetune=FinetuneOptions(steps=0) is the plain centroid).")
        fn = adaptation.finetune_features_fn(self.cfg, self.finetune)
        feats = []
        for batch, n in self._batches(texts, "the texts to classify"):
            feats.append(np.asarray(fn(self.task_params_, batch))[:n])
            if progress is not None:
                progress(n)
        return adaptation.transductive_log_proba(
            self.task_params_, self.support_, np.concatenate(feats),
            lambda ex: fn(self.task_params_, ex), self.finetune)

    def predict_proba(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                      transductive: bool = False) -> np.ndarray:
        """Class probabilities ``[n, len(classes_)]`` (rows sum to 1), columns in
        ``classes_`` order. ``progress(k)`` is called after each batch of ``k`` texts.

        ``transductive=True`` (``adapt='finetune'``) first refines the class prototypes by
        soft k-means over ``texts`` (:mod:`jaxmaml.meta.transductive`), so a text's
        prediction then depends on the other texts of the batch: pass everything to label
        in one call."""
        return np.exp(self._log_proba(texts, progress, transductive))

    def predict(self, texts: Sequence[str], transductive: bool = False) -> np.ndarray:
        """The most probable class of each text, ``[n]`` (values from ``classes_``).

        ``transductive``: as in :meth:`predict_proba` (predictions then depend on the batch).
        """
        return self.classes_[np.argmax(self._log_proba(texts, transductive=transductive), -1)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The meta-learned encoder's pooled features ``[n, hidden]`` (float32; L2-normalized
        with ``meta.protonet.normalize_features``): what the learner compares or feeds its head
        (before any inner-loop adaptation)."""
        fn = _embed_fn(self.cfg)
        with self._texts.call("the texts to embed"):
            out = [np.asarray(fn(self.meta_params["encoder"], batch))[:n]
                   for batch, n in self._batches(texts, "the texts to embed")]
        return np.concatenate(out)

    def _features(self, batch: Examples) -> np.ndarray:
        """Sentence features of one padded batch (what the baselines and the probe read)."""

        return sentence_features(self.meta_params["encoder"], self.cfg, batch.input_ids,
                                 batch.attention_mask, self.batch_size)

    def _sentence_features(self, texts: Sequence[str], what: str) -> np.ndarray:
        return np.concatenate([self._features(b)[:n] for b, n in self._batches(texts, what)])

    def __repr__(self) -> str:
        fitted = "unfitted" if self.classes_ is None else f"{len(self.classes_)} classes"
        head = "" if self.head == "learner" else ", head=probe"
        head += "" if self.adapt == "learner" else f", adapt={self.adapt}"
        return f"FewShotClassifier({self.algorithm}, seq_len={self.seq_len}{head}, {fitted})"
