"""Self-supervised masked-word tasks (jaxmaml.data.smlmt) and the built-in docs_smlmt."""

from pathlib import Path

import pytest

from jaxmaml.data import smlmt
from jaxmaml.run.config_load import load_config
from jaxmaml.run.data import load_text

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
TEXTS = ["The socket sends bytes.", "A socket listens.", "Bytes arrive; bytes leave.",
         "The queue holds bytes and a socket.", "  ", "The queue holds bytes and a socket.",
         "Which socket? This queue."]


def test_rarest_word_per_text_by_hand():
    # document frequencies: socket 4, bytes 3, queue 2 (words of <= 3 letters never count;
    # "which"/"this" are function words); each text goes to its rarest chosen word
    rows = smlmt.smlmt_rows(TEXTS, min_df=2, max_df=4, min_per_class=1)
    assert rows == [("A [MASK] listens.", "socket"),
                    ("[MASK] arrive; [MASK] leave.", "bytes"),
                    ("The [MASK] holds bytes and a socket.", "queue"),
                    ("The socket sends [MASK].", "bytes"),
                    ("Which socket? This [MASK].", "queue")]
    assert smlmt.smlmt_rows(TEXTS, min_df=2, max_df=4, min_per_class=2) == [
        r for r in rows if r[1] in ("bytes", "queue")]
    # a function word is never a class, unless the stop list is emptied
    assert smlmt.smlmt_rows(["Also this.", "Also that."], 2, 2, 1) == []
    assert smlmt.smlmt_rows(["Also this.", "Also that."], 2, 2, 1, stop_words=()) == [
        ("[MASK] that.", "also"), ("[MASK] this.", "also")]
    # a word is a run of letters, and it is masked wherever it was counted: next to "_"
    # or a digit too (a \b-bounded mask left it visible there, the label in the text)
    assert smlmt.smlmt_rows(["Use socket_name here.", "A socket2 call."], 2, 2, 1) == [
        ("A [MASK]2 call.", "socket"), ("Use [MASK]_name here.", "socket")]


def test_every_word_gives_one_row_per_chosen_word():
    rows = smlmt.smlmt_rows(TEXTS, min_df=2, max_df=4, min_per_class=1, every_word=True)
    assert rows == [("A [MASK] listens.", "socket"),
                    ("[MASK] arrive; [MASK] leave.", "bytes"),
                    ("The queue holds [MASK] and a socket.", "bytes"),
                    ("The [MASK] holds bytes and a socket.", "queue"),
                    ("The queue holds bytes and a [MASK].", "socket"),
                    ("The socket sends [MASK].", "bytes"),
                    ("The [MASK] sends bytes.", "socket"),
                    ("Which socket? This [MASK].", "queue"),
                    ("Which [MASK]? This queue.", "socket")]
    ds = smlmt.smlmt_dataset(TEXTS, {"name": "t"}, min_df=2, max_df=4, min_per_class=3,
                             every_word=True)
    assert ds.class_counts() == {"bytes": 3, "socket": 4}
    assert ds.info["options"]["every_word"] and ds.info["num_texts"] == len(TEXTS)
    with pytest.raises(ValueError, match="lower min_df"):
        smlmt.smlmt_dataset(TEXTS, min_df=2, max_df=4, min_per_class=9)


def test_docs_smlmt_builtin_counts():
    ds = load_text(load_config(TINY), "docs_smlmt")
    assert (len(ds), len(ds.class_names)) == (smlmt.info["num_examples"],
                                              smlmt.info["num_classes"]) == (51_293, 925)
    assert min(ds.class_counts().values()) == 20
    assert all(smlmt.MASK in t for t in ds.texts)
    assert not set(ds.class_names) & smlmt.STOP_WORDS
