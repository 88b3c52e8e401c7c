"""Text classification sources: a Hugging Face hub dataset or local csv/json/jsonl/parquet.

Everything goes through Hugging Face ``datasets``; the result is a :class:`TextDataset`
(texts, integer labels, class names, and an ``info`` dict describing where it came from and
what was dropped). Nothing is dropped silently: empty or whitespace-only texts are removed
with a logged count that is also stored in ``info["dropped_empty"]`` (or refused, with
``drop_empty=False``).

Example (offline, local file)::

    ds = load_text_dataset("reviews.csv", text_column="body", label_column="topic")

Example (online, hub name)::

    ds = load_text_dataset("SetFit/20_newsgroups", split="train")
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

# File suffix -> the `datasets` builder that reads it.
LOCAL_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json",
                 ".parquet": "parquet"}


@dataclasses.dataclass(frozen=True, eq=False)
class TextDataset:
    """A labelled text dataset held in host memory.

    ``texts``: ``N`` non-empty strings; ``labels``: int32 ``[N]``, indices into
    ``class_names``; ``info``: JSON-able description (source, columns, counts, drops).
    """

    texts: list[str]
    labels: np.ndarray
    class_names: tuple[str, ...]
    info: dict[str, Any]

    def __post_init__(self):
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels.")
        if len(self.labels) and (self.labels.min() < 0
                                 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in [0, {len(self.class_names)}); got "
                             f"[{self.labels.min()}, {self.labels.max()}].")

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self) -> dict[str, int]:
        """Examples per class name (every class, including those with zero examples)."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}


class ColumnNotFound(ValueError):
    """A text or label column the data does not have (``role``: ``text`` or ``label``)."""

    def __init__(self, role: str, column: str, source: str, available: list[str],
                 setting: str | None = None):
        self.role, self.column, self.source, self.available = role, column, source, available
        setting = setting or f"{role}_column"
        super().__init__(f"{role} column {column!r} not found in {source}; available columns: "
                         f"{available}. Set {setting} to one of them.")

    def named(self, setting: str) -> "ColumnNotFound":
        """The same error telling the user to set ``setting`` (e.g. ``data.text_column``)."""
        return ColumnNotFound(self.role, self.column, self.source, self.available, setting)


def from_lists(texts: Sequence[Any], labels: Sequence[Any], *,
               class_names: Sequence[str] | None = None, drop_empty: bool = True,
               info: dict[str, Any] | None = None) -> TextDataset:
    """Build a :class:`TextDataset` from parallel lists of texts and labels.

    Labels are either strings/ints mapped to ``class_names`` (default: the sorted distinct
    labels, numeric order for ints), or, when ``class_names`` is given and the labels are
    ints, indices into it. Empty/whitespace texts are dropped with a logged count
    (``info["dropped_empty"]``), or raise a ``ValueError`` when ``drop_empty=False``.
    """
    info = dict(info or {})
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels.")
    bad_type = [i for i, t in enumerate(texts) if t is not None and not isinstance(t, str)]
    if bad_type:
        i = bad_type[0]
        raise ValueError(f"texts must be strings; {len(bad_type)} are not (first: row {i}, "
                         f"{type(texts[i]).__name__} {texts[i]!r}). Check the text column.")
    missing = [i for i, y in enumerate(labels) if y is None]
    if missing:
        raise ValueError(f"{len(missing)} examples have no label (first: row {missing[0]}); "
                         "remove them from the data or fill in their labels.")
    empty = [i for i, t in enumerate(texts) if t is None or not t.strip()]
    if empty and not drop_empty:
        raise ValueError(f"{len(empty)} of {len(texts)} texts are empty or whitespace "
                         f"(first: row {empty[0]}); clean the data or pass drop_empty=True.")
    keep = np.ones(len(texts), bool)
    keep[empty] = False
    if empty:
        log.warning("dropped %d of %d examples with empty or whitespace-only text",
                    len(empty), len(texts))
    kept_texts = [t for t, k in zip(texts, keep) if k]
    kept_labels = [y for y, k in zip(labels, keep) if k]
    if not kept_texts:
        raise ValueError(f"no examples left: all {len(texts)} texts are empty or whitespace.")
    label_ids, names = _encode_labels(kept_labels, class_names)
    info.update(num_examples=len(kept_texts), num_classes=len(names),
                dropped_empty=len(empty))
    return TextDataset(kept_texts, label_ids, names, info)


def _encode_labels(labels: list[Any], class_names: Sequence[str] | None
                   ) -> tuple[np.ndarray, tuple[str, ...]]:
    is_int = all(isinstance(y, (int, np.integer)) and not isinstance(y, bool) for y in labels)
    if class_names is not None:
        names = tuple(str(n) for n in class_names)
        if is_int:
            ids = np.asarray(labels, np.int64)
            bad = ids[(ids < 0) | (ids >= len(names))]
            if bad.size:
                raise ValueError(f"label {int(bad[0])} is out of range for "
                                 f"{len(names)} class names.")
            return ids.astype(np.int32), names
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted({str(y) for y in labels} - index.keys())
        if unknown:
            raise ValueError(f"labels {unknown[:10]} are not among class_names {list(names)}.")
        return np.array([index[str(y)] for y in labels], np.int32), names
    distinct = sorted(set(labels)) if is_int else sorted({str(y) for y in labels})
    names = tuple(str(y) for y in distinct)
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[str(y)] for y in labels], np.int32), names


def _local_files(source: str | os.PathLike | Sequence[str | os.PathLike]
                 ) -> tuple[str, list[str]] | None:
    """(builder, files) when ``source`` names local files; None for a hub name."""
    paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    paths = [Path(p) for p in paths]
    suffixes = {p.suffix.lower() for p in paths}
    if not all(p.exists() for p in paths):
        if any(s in LOCAL_FORMATS for s in suffixes):
            missing = [str(p) for p in paths if not p.exists()]
            raise FileNotFoundError(f"data files not found: {missing}")
        if len(paths) != 1:
            raise FileNotFoundError(f"data files not found: {[str(p) for p in paths]}")
        return None  # a hub dataset name such as "ag_news" or "SetFit/emotion"
    unknown = suffixes - LOCAL_FORMATS.keys()
    if unknown:
        raise ValueError(f"cannot read files ending in {sorted(unknown)}; use one of "
                         f"{sorted(LOCAL_FORMATS)}.")
    builders = {LOCAL_FORMATS[s] for s in suffixes}
    if len(builders) > 1:
        raise ValueError(f"mixed file formats {sorted(suffixes)}; pass files of one format.")
    return builders.pop(), [str(p) for p in paths]


def load_text_dataset(source: str | os.PathLike | Sequence[str | os.PathLike], *,
                      text_column: str = "text", label_column: str = "label",
                      split: str = "train", config_name: str | None = None,
                      drop_empty: bool = True, cache_dir: str | None = None,
                      **load_kwargs: Any) -> TextDataset:
    """Load a text classification dataset through Hugging Face ``datasets``.

    Args:
      source: a local ``.csv``/``.tsv``/``.json``/``.jsonl``/``.parquet`` file (or a list
        of files of one format), or a hub dataset name (needs the network or the HF cache).
      text_column, label_column: column names; a missing one raises a ``ValueError``
        naming the available columns. A ``ClassLabel`` label column keeps its names.
      split: the split to read (local files always load as ``"train"``).
      config_name: the hub dataset's configuration, if it has several.
      drop_empty: drop empty/whitespace texts with a logged count (else raise).
      cache_dir, load_kwargs: passed to ``datasets.load_dataset``.

    Returns:
      A :class:`TextDataset`; ``info`` records the source, columns and drop counts.
    """
    import datasets

    local = _local_files(source)
    kwargs = dict(load_kwargs, cache_dir=cache_dir)
    if local is not None:
        builder, files = local
        for f in files:
            check_data_file(f, builder)
        if builder == "csv" and all(f.lower().endswith(".tsv") for f in files):
            kwargs.setdefault("delimiter", "\t")
        try:
            with _quiet(datasets):  # its per-file progress bars would bury our messages
                ds = datasets.load_dataset(builder, data_files=files, split="train", **kwargs)
        except Exception as e:  # noqa: BLE001 -- datasets wraps parser errors many ways
            raise ValueError(f"cannot read {', '.join(files)} as {builder}: "
                             f"{_root_cause(e)}") from e
        where = {"files": [os.path.abspath(f) for f in files], "format": builder}
    else:
        ds = _load_hub(datasets, str(source), config_name, split, kwargs)
        where = {"hub": str(source), "config": config_name, "split": split}
    columns = list(ds.column_names)
    for role, col in (("text", text_column), ("label", label_column)):
        if col not in columns:
            raise ColumnNotFound(role, col, str(source), columns)
    feature = ds.features[label_column]
    class_names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    info = {"source": where, "text_column": text_column, "label_column": label_column}
    return from_lists(list(ds[text_column]), list(ds[label_column]),
                      class_names=class_names, drop_empty=drop_empty, info=info)


_TRUE = {"1", "true", "yes", "on"}


@contextlib.contextmanager
def _quiet(datasets):
    """``datasets`` without progress bars inside the block (restored after)."""
    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()


def _env_offline() -> bool:
    return any(os.environ.get(v, "").lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub's address resolves and accepts a connection."""
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load_hub(datasets, name: str, config_name: str | None, split: str, kwargs: dict):
    """``datasets.load_dataset`` of a hub name, failing at once, in one line, when it cannot
    be had: offline mode and not in the local cache, or the hub unreachable (where
    ``datasets`` would retry for minutes)."""
    formats = ", ".join(sorted(LOCAL_FORMATS))
    offline = _env_offline()
    if not offline and not hub_reachable():
        raise ValueError(f"{name!r} is not a local file, and the Hugging Face hub cannot be "
                         f"reached to fetch it as a hub dataset. Pass a local file ending in "
                         f"{formats} (check the path), a built-in source, or set "
                         "HF_HUB_OFFLINE=1 to use a copy in the local hub cache.")
    try:
        with _quiet(datasets):
            return datasets.load_dataset(name, config_name, split=split, **kwargs)
    except Exception as e:  # noqa: BLE001 -- connection, not-found and cache errors alike
        where = ("in the local hub cache (HF_HUB_OFFLINE is set, so the hub is not asked)"
                 if offline else "on the hub")
        raise ValueError(f"{name!r} is not a local file, and no dataset of that name was "
                         f"found {where} ({_root_cause(e)}). Pass a local file ending in "
                         f"{formats} (check the path), or a built-in source.") from e


def _root_cause(e: BaseException) -> str:
    """The innermost cause's ``Type: first line`` (datasets nests its parser errors)."""
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:200]}"


def check_data_file(path: str | os.PathLike, builder: str) -> None:
    """Refuse, with a one-line ``ValueError``, a local file no loader can use: an empty
    file, text that is not UTF-8 (with the byte offset), a csv/tsv with a header only."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a directory; pass a data file.")
    if p.stat().st_size == 0:
        raise ValueError(f"data file {p} is empty (0 bytes); it needs a header row and "
                         "one row per example.")
    if builder == "parquet":
        return
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"data file {p} is not UTF-8 text (byte {e.start}: "
                         f"{raw[e.start:e.start + 4]!r}); convert it, e.g. `iconv -f latin1 -t "
                         f"utf-8 {p.name} > fixed{p.suffix}`.") from None
    if builder == "csv" and sum(1 for line in text.splitlines() if line.strip()) < 2:
        raise ValueError(f"data file {p} has a header but no rows; add one row per example.")
    if builder == "json" and not text.strip():
        raise ValueError(f"data file {p} holds only whitespace; it needs one JSON record "
                         "per example.")
