"""Tokenizing a user's texts at use time: bucketed lengths and one warning per call.

Texts are cut at ``max_len`` tokens (the base sentence encoder's ``max_seq_length``, or the
model's position limit), not at the meta-training length. A batch is padded to the
smallest length bucket that holds its longest text (powers of two from
:data:`MIN_LENGTH_BUCKET`, capped at ``max_len``), so each bucket compiles once and short
texts do not pay for the longest possible. Padding is masked, so a text's features do not
depend on the bucket. Within one call (``fit``, ``predict``, ``embed``, ...) texts cut at
``max_len`` and texts made only of unknown tokens each give one warning.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Iterator, Sequence

import numpy as np
from jaxmaml.data.tokenize import _encode

MIN_LENGTH_BUCKET = 16


def length_bucket(longest: int, max_len: int) -> int:
    """The padded length for a batch whose longest text has ``longest`` tokens."""
    return min(max_len, max(MIN_LENGTH_BUCKET, 1 << (max(longest, 1) - 1).bit_length()))


class TextTokenizer:
    """A tokenizer bound to a use-time ``max_len``, counting what each call should hear of.

    Args:
      tokenizer: a Hugging Face tokenizer.
      max_len: most tokens per text (special tokens included).
    """

    def __init__(self, tokenizer, max_len: int):
        self.tokenizer, self.max_len = tokenizer, int(max_len)
        self._cut = 0
        self._unknown: list[str] = []
        self._depth = 0

    def __call__(self, texts: Sequence[str], length: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """int32 ids and mask ``[n, L]``: ``L`` = ``length``, else the batch's bucket."""

        texts = list(texts)
        ids, mask, cut = _encode(self.tokenizer, texts, self.max_len)
        lengths = mask.sum(1)
        self._cut += cut
        self._unknown += [texts[i] for i in self._only_unknown(ids, mask)]
        n = length or length_bucket(int(lengths.max(initial=1)), self.max_len)
        return ids[:, :n], mask[:, :n]

    def _only_unknown(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        tok = self.tokenizer
        unk = tok.unk_token_id
        if unk is None:
            return np.zeros(0, int)
        special = np.isin(ids, [i for i in tok.all_special_ids if i != unk])
        content = (mask > 0) & ~special
        return np.flatnonzero(content.any(1) & ((ids == unk) | ~content).all(1))

    @contextlib.contextmanager
    def call(self, what: str) -> Iterator[None]:
        """Collect the texts of one user call; warn (once each) when it ends."""
        self._depth += 1
        if self._depth == 1:
            self._cut, self._unknown = 0, []
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0:
            self._warn(what)

    def _warn(self, what: str) -> None:
        level = _user_stacklevel()
        if self._cut:
            warnings.warn(f"{self._cut} of {what} are longer than {self.max_len} tokens "
                          f"and were cut to {self.max_len} (seq_len); pass a larger seq_len "
                          "if the model allows it, or shorten them.", stacklevel=level)
        if self._unknown:
            example = self._unknown[0][:40]
            warnings.warn(f"{len(self._unknown)} of {what} are only unknown tokens for this "
                          f"tokenizer (e.g. {example!r}); they are classified from no "
                          "content. Check the text column or use a tokenizer that covers "
                          "it.", stacklevel=level)


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside jaxmaml (and contextlib): a warning
    names the user's line, not ours."""
    frame, level = sys._getframe(2), 2
    while frame is not None and (frame.f_globals.get("__name__", "").startswith("jaxmaml")
                                 or frame.f_code.co_filename.endswith("contextlib.py")):
        frame, level = frame.f_back, level + 1
    return level
