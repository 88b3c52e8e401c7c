"""Tokenize a text dataset once with the model's tokenizer and cache the int32 arrays.

The cache file is ``<cache_dir>/tokens-<key>.npz`` where ``key`` hashes the texts, labels,
class names, the tokenizer's files and ``seq_len``; any change to one of them is a
different file, so a stale cache is never read. A hit does not even load the tokenizer.

The default cache directory is ``$JAXMAML_CACHE_DIR/tokens`` or ``~/.cache/jaxmaml/tokens``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxmaml.atomic_file import write_file_atomically
from jaxmaml.data.sources import TextDataset

log = logging.getLogger(__name__)

_FORMAT = b"jaxmaml-tokens-v1"
# Files that define a Hugging Face tokenizer (weights are deliberately not hashed).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "merges.txt", "special_tokens_map.json", "added_tokens.json",
                   "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
_CHUNK = 8192


class TokenizedData(NamedTuple):
    """A tokenized labelled dataset (host numpy arrays).

    ``input_ids``/``attention_mask``: int32 ``[N, seq_len]`` (``[CLS] ... [SEP]`` then
    padding); ``labels``: int32 ``[N]``, indices into ``class_names``.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]


def default_cache_dir() -> Path:
    root = os.environ.get("JAXMAML_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxmaml")
    return Path(root) / "tokens"


def tokenizer_files(tokenizer_dir: str | os.PathLike) -> list[Path]:
    """The tokenizer-defining files present in ``tokenizer_dir`` (sorted by name)."""
    root = Path(tokenizer_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"tokenizer directory {root} does not exist.")
    files = sorted(root / n for n in TOKENIZER_FILES if (root / n).is_file())
    if not files:
        raise FileNotFoundError(f"no tokenizer files in {root}; expected some of "
                                f"{list(TOKENIZER_FILES)} (a Hugging Face model directory).")
    return files


def cache_key(dataset: TextDataset, tokenizer_dir: str | os.PathLike, seq_len: int) -> str:
    """Hex digest identifying (texts, labels, class names, tokenizer files, seq_len)."""
    h = hashlib.sha256(_FORMAT)
    h.update(f"seq_len={int(seq_len)}".encode())
    for path in tokenizer_files(tokenizer_dir):
        h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    h.update("\0".join(dataset.class_names).encode() + b"\1")
    h.update(np.ascontiguousarray(dataset.labels, np.int32).tobytes())
    for text in dataset.texts:  # length-prefixed, so no two text lists hash alike
        b = text.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()[:32]


@functools.lru_cache(maxsize=8)
def special_token_ids(tokenizer_dir: str | os.PathLike) -> tuple[int | None, tuple[int, ...]]:
    """``(unk_id, special_ids)`` of a tokenizer (``unk_id`` None if it has no unknown token)."""
    tok = _load_tokenizer(tokenizer_dir)
    return tok.unk_token_id, tuple(tok.all_special_ids)


def _load_tokenizer(tokenizer_dir: str | os.PathLike):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def _encode(tokenizer, texts: list[str], seq_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Token ids and mask ``[n, seq_len]`` plus how many texts were truncated.

    Tokenizing to ``seq_len + 1`` tells which texts do not fit: only those are encoded
    again with truncation to ``seq_len`` (so each keeps its final ``[SEP]``).
    """
    kw = dict(truncation=True, padding="max_length", return_tensors="np",
              return_token_type_ids=False)
    out = tokenizer(texts, max_length=seq_len + 1, **kw)
    ids, mask = out["input_ids"], out["attention_mask"]
    long = np.flatnonzero(mask[:, -1])
    ids, mask = ids[:, :seq_len].astype(np.int32), mask[:, :seq_len].astype(np.int32)
    if long.size:
        cut = tokenizer([texts[i] for i in long], max_length=seq_len, **kw)
        ids[long], mask[long] = cut["input_ids"], cut["attention_mask"]
    return ids, mask, int(long.size)


def tokenize_dataset(dataset: TextDataset, tokenizer_dir: str | os.PathLike, seq_len: int,
                     cache_dir: str | os.PathLike | None = None) -> TokenizedData:
    """Tokenize every text to exactly ``seq_len`` tokens (truncate + pad), cached on disk.

    Args:
      dataset: the texts and labels.
      tokenizer_dir: a Hugging Face model/tokenizer directory, loaded offline with
        ``AutoTokenizer.from_pretrained``.
      seq_len: tokens per example including special tokens (>= 2).
      cache_dir: where ``tokens-<key>.npz`` files live (default :func:`default_cache_dir`).

    Returns:
      :class:`TokenizedData` with int32 ``[N, seq_len]`` ids and mask, int32 ``[N]`` labels.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 (room for [CLS] and [SEP]); got {seq_len}.")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(dataset, tokenizer_dir, seq_len)
    file = cache / f"tokens-{key}.npz"
    if file.is_file():
        with np.load(file, allow_pickle=False) as z:
            data = TokenizedData(z["input_ids"], z["attention_mask"], z["labels"],
                                 tuple(str(n) for n in z["class_names"]))
            truncated = int(z["num_truncated"])
        log.info("token cache hit %s (%d examples, %d truncated to %d tokens)",
                 file, len(data.labels), truncated, seq_len)
        return data
    tokenizer = _load_tokenizer(tokenizer_dir)
    parts = [_encode(tokenizer, dataset.texts[i:i + _CHUNK], seq_len)
             for i in range(0, len(dataset.texts), _CHUNK)]
    ids = np.concatenate([p[0] for p in parts])
    mask = np.concatenate([p[1] for p in parts])
    truncated = sum(p[2] for p in parts)
    if truncated:
        log.warning("truncated %d of %d texts to seq_len=%d tokens", truncated, len(ids),
                    seq_len)
    data = TokenizedData(ids, mask, np.asarray(dataset.labels, np.int32),
                         tuple(dataset.class_names))
    # atomic: concurrent runs never read a half-written cache
    write_file_atomically(file, lambda f: np.savez(
        f, input_ids=ids, attention_mask=mask, labels=data.labels,
        class_names=np.array(data.class_names, dtype=str), num_truncated=np.int64(truncated)))
    log.info("tokenized %d examples to %d tokens; cached at %s", len(ids), seq_len, file)
    return data
