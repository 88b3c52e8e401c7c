"""``jaxmaml predict``: adapt a model to a labelled support file, label a file of texts.

Input tables are csv/tsv/json/jsonl/parquet (read with pandas); the output (csv or jsonl,
by suffix) is the input rows plus ``prediction`` and, with ``proba``, one ``proba_<class>``
column per class. Every check runs before anything is written, and the output is written
to a temp file in the output's directory then renamed: a failure never leaves a partial
file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxmaml.atomic_file import write_file_atomically
from jaxmaml.run.config import ConfigError

READERS = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
WRITERS = (".csv", ".jsonl")
PROGRESS_MIN_ROWS = 1000


def read_table(path: str | Path, what: str):
    """A pandas DataFrame of a csv/tsv/json/jsonl/parquet file."""
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise ConfigError(f"{what} {path}: cannot read {suffix or 'a file without suffix'}; "
                          f"use one of {', '.join(READERS)}.")
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist.")
    try:
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False,
                               na_values=[""])
        if suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=suffix == ".jsonl" or None)
    except ValueError as e:
        if suffix == ".json":  # a .json file may hold JSON lines
            try:
                return pd.read_json(path, lines=True)
            except ValueError:
                pass
        raise ConfigError(f"{what} {path} could not be read: {str(e).splitlines()[0]}") from e
    except Exception as e:  # parser errors of every reader
        raise ConfigError(f"{what} {path} could not be read: {str(e).splitlines()[0]}") from e


def _column(df, name: str, what: str, path, flag: str) -> list[Any]:
    if name not in df.columns:
        raise ConfigError(f"{what} {path} has no column {name!r} (columns: "
                          f"{', '.join(map(str, df.columns))}); pass {flag} NAME.")
    return df[name].tolist()


def _texts(values: list[Any], what: str, path) -> list[str]:
    if not values:
        raise ConfigError(f"{what} {path} has no rows.")
    for i, t in enumerate(values):
        if not isinstance(t, str) or not t.strip():
            raise ConfigError(f"{what} {path} row {i} has an empty text; fill or drop it.")
    return values


def _labels(values: list[Any], path, what: str = "support file") -> list[Any]:
    import math

    for i, y in enumerate(values):
        if y is None or (isinstance(y, float) and math.isnan(y)) or (isinstance(y, str)
                                                                     and not y.strip()):
            rows = "support example" if what == "support file" else "row"
            raise ConfigError(f"{what} {path} row {i} has no label; label every {rows}.")
    return [y.item() if hasattr(y, "item") else y for y in values]


def read_label_texts(path: str | Path, label_column: str = "label",
                     text_column: str = "text") -> dict[Any, str] | bool:
    """``--label-texts``: ``labels`` (the label strings themselves: ``True``) or a table with
    one row per class, ``label_column`` and ``text_column`` -> ``{label: text}``."""
    if str(path) == "labels":
        return True
    df = read_table(path, "label-texts file")
    labels = _labels(_column(df, label_column, "label-texts file", path, "--label-column"),
                     path, "label-texts file")
    texts = _texts(_column(df, text_column, "label-texts file", path, "--text-column"),
                   "label-texts file", path)
    dup = next((y for i, y in enumerate(labels) if y in labels[:i]), None)
    if dup is not None:
        raise ConfigError(f"label-texts file {path} has two rows for label {dup!r}; keep one "
                          "text per class.")
    return dict(zip(labels, texts))


def write_table_atomically(df, out: str | Path) -> Path:
    """Write ``df`` as csv or jsonl (by suffix) via a temp file + rename."""
    def write(f):
        if Path(out).suffix.lower() == ".csv":
            df.to_csv(f, index=False)
        else:
            f.write(df.to_json(orient="records", lines=True, force_ascii=False))

    return write_file_atomically(out, write, text=True)


def predict_files(model: str | Path, support: str | Path, texts: str | Path, out: str | Path,
                  text_column: str = "text", label_column: str = "label", proba: bool = False,
                  checkpoint: str = "best", seq_len: int | None = None,
                  progress: bool = True, head: str = "learner", adapt: str = "learner",
                  label_texts: str | Path | None = None, transductive: bool = False
                  ) -> dict[str, Any]:
    """Fit a :class:`~jaxmaml.FewShotClassifier` on ``support``, label ``texts``, write ``out``.

    ``head``: ``learner`` (the learner's own adaptation) or ``probe`` (a logistic-regression
    probe on the encoder's sentence features). ``adapt``: ``learner`` or ``finetune``
    (test-time fine-tuning with a cosine head). ``label_texts``: a label/text table, or
    ``"labels"`` (the label strings), as class priors. ``transductive`` (``finetune``):
    refine the classes over all of ``texts`` (predictions then depend on the whole file).

    Returns ``{"rows", "classes", "out"}``. Bad input raises :class:`ConfigError` (one line)
    before anything is written.
    """
    import numpy as np

    from jaxmaml.classifier import FewShotClassifier
    from jaxmaml.run.load import load

    out = Path(out)
    if out.suffix.lower() not in WRITERS:
        raise ConfigError(f"--out {out}: write .csv or .jsonl.")
    if transductive and adapt != "finetune":
        raise ConfigError("--transductive refines a cosine head: add --adapt finetune.")
    if adapt == "finetune" and head != "learner":
        raise ConfigError("--adapt finetune trains its own cosine head; drop --head probe.")
    names = None if label_texts is None else read_label_texts(label_texts, label_column,
                                                              text_column)
    sup = read_table(support, "support file")
    sup_texts = _texts(_column(sup, text_column, "support file", support, "--text-column"),
                       "support file", support)
    sup_labels = _labels(_column(sup, label_column, "support file", support, "--label-column"),
                         support)
    df = read_table(texts, "texts file")
    new_texts = _texts(_column(df, text_column, "texts file", texts, "--text-column"),
                       "texts file", texts)
    try:
        clf = FewShotClassifier(load(model, checkpoint), seq_len=seq_len, head=head,
                                adapt=adapt)
        clf.fit(sup_texts, sup_labels, label_texts=names)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    bar = None
    if progress and len(new_texts) >= PROGRESS_MIN_ROWS:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(new_texts), unit="text", desc="predict")
    try:
        p = clf.predict_proba(new_texts, progress=bar.update if bar else None,
                              transductive=transductive)
    finally:
        if bar is not None:
            bar.close()
    df = df.copy()
    df["prediction"] = clf.classes_[np.argmax(p, -1)]
    if proba:
        for j, c in enumerate(clf.classes_):
            df[f"proba_{c}"] = p[:, j]
    write_table_atomically(df, out)
    return {"rows": len(df), "classes": [str(c) for c in clf.classes_], "out": str(out)}
