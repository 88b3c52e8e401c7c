"""Bundled built-in sources of other genres: chatterbot (dialogue -> topic), appstream (app
description -> desktop category), pydocs (library-reference entry -> chapter), pyhowto
(how-to paragraph -> guide), emoji (name -> subgroup), and the
bundle format and cleaning rules they share (jaxmaml.data.bundled)."""

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from jaxmaml.data import appstream, bundled, chatterbot, emoji, pydocs
from jaxmaml.run.config_load import load_config
from jaxmaml.run.data import load_data, load_text

DATA = Path(__file__).resolve().parent
TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
CHAT_DIR, DEP11, PYDOCS_DIR = DATA / "chatterbot_mini", DATA / "dep11_mini.yml", DATA / "pydocs_mini"
# genres whose transfer is checked independently: no class of a meta-training source
HELD_OUT = re.compile(r"trivia|quiz|literature|fiction|novel|news|e-?mail|mailing", re.I)
HOWTO_DIR, EMOJI_TEST = DATA / "pyhowto_mini", DATA / "emoji_test_mini.txt"
# name -> (module, its snapshot attribute, writer, loader, fixture, info)
SOURCES = {
    "chatterbot": (chatterbot, "SNAPSHOT", chatterbot.write_snapshot,
                   chatterbot.load_chatterbot, CHAT_DIR, chatterbot.info),
    "appstream": (appstream, "SNAPSHOT", appstream.write_snapshot, appstream.load_appstream,
                  DEP11, appstream.info),
    "pydocs": (pydocs, "SNAPSHOT", pydocs.write_snapshot, pydocs.load_pydocs, PYDOCS_DIR,
               pydocs.info),
    "pyhowto": (pydocs, "HOWTO_SNAPSHOT", pydocs.write_howto_snapshot, pydocs.load_pyhowto,
                HOWTO_DIR, pydocs.howto_info),
    "emoji": (emoji, "SNAPSHOT", emoji.write_snapshot, emoji.load_emoji, EMOJI_TEST,
              emoji.info)}


def _rows(ds):
    return sorted((ds.class_names[y], t) for t, y in zip(ds.texts, ds.labels))


# ------------------------------------------------------------------------------ bundled
def test_clean_rules_by_hand():
    per_class = {"a": ["Hello  world", "hello world", "shared text", "x", "A" * 30, "keep me"],
                 "b": ["Shared  text", "bee one", "bee two", "bee three"],
                 "quiz": ["a quiz question"], "c": ["lonely one"]}
    texts, labels, drops = bundled.clean(per_class, min_examples=2, min_chars=3,
                                         max_chars=20, exclude=("quiz",))
    # whitespace collapsed; the case-insensitive repeat kept once; "x" too short, "A"*30
    # too long; the text of a and b dropped; quiz excluded; c left with 1 < 2 examples
    assert list(zip(texts, labels)) == [("Hello world", "a"), ("keep me", "a"),
                                        ("bee one", "b"), ("bee two", "b"), ("bee three", "b")]
    assert drops == {"excluded_class": 1, "length": 2, "repeated": 1,
                     "in_several_classes": 2, "small_class": 1}


def test_bundle_round_trip_reproducible_bytes_and_a_foreign_file_is_refused(tmp_path):
    per_class = {"b": ["two", "three"], "a": ["ünïcode text"]}
    out = tmp_path / "bundle.json.gz"
    assert bundled.write_bundle(out, per_class, name="n", package="p 1.0",
                                licence="MIT") == {"b": 2, "a": 1}
    first = out.read_bytes()
    bundled.write_bundle(out, per_class, name="n", package="p 1.0", licence="MIT")
    assert out.read_bytes() == first  # no time stamp in the gzip header
    payload = bundled.read_bundle(out)
    assert payload["classes"] == per_class and list(payload["classes"]) == ["b", "a"]
    assert (payload["package"], payload["licence"]) == ("p 1.0", "MIT")
    foreign = tmp_path / "other.json.gz"
    with gzip.open(foreign, "wt") as f:
        json.dump({"files": {}}, f)
    with pytest.raises(ValueError, match="rerun its scripts"):
        bundled.read_bundle(foreign)
    with pytest.raises(ValueError, match="lower min_examples"):
        bundled.load_bundle(out, {}, min_examples=5, min_chars=1, max_chars=99)


# ------------------------------------------------------------------------------ parsers
def test_chatterbot_fixture_parse_and_rules():
    assert chatterbot.read_corpus_dir(CHAT_DIR) == {  # trivia is never read
        "coding": ["What is a loop? A loop repeats a block of code. Python has for and "
                   "while loops.", "What is recursion? A function that calls itself.",
                   "Hey Hello."],
        "greetings": ["Hello Hi there, how are you?", "Good morning! Good morning to you "
                      "too.", "Hello Hi there, how are you?", "How do you do? 42",
                      "Hey Hello."]}
    ds = chatterbot.load_chatterbot(CHAT_DIR, min_examples=1)
    assert _rows(ds) == [  # "Hey Hello." is in both topics; the repeated greeting once
        ("coding", "What is a loop? A loop repeats a block of code. Python has for and "
                   "while loops."),
        ("coding", "What is recursion? A function that calls itself."),
        ("greetings", "Good morning! Good morning to you too."),
        ("greetings", "Hello Hi there, how are you?"), ("greetings", "How do you do? 42")]
    assert ds.info["dropped"]["in_several_classes"] == 2
    assert chatterbot.load_chatterbot(CHAT_DIR, min_examples=3).class_names == ("greetings",)


def test_appstream_fixture_parse_and_rules():
    assert appstream.first_paragraph("<p>A <em>b</em> &amp;\n c.</p><p>d</p>") == "A b & c."
    assert appstream.main_category(["Audio", "AudioVideo", "Player"]) == "AudioVideo"
    assert appstream.main_category(["Education", "Science"]) is None
    # no description, no main category (a font), no <p>, two main categories: left out
    assert appstream.read_components(DEP11) == {
        "AudioVideo": ["Player plays your music collection and internet radio."] * 2,
        "Game": ["Chess is a board game for two players & friends.",
                 "Racer is a fast arcade racing game with split-screen mode."]}
    ds = appstream.load_appstream(DEP11, min_examples=1)
    assert ds.class_counts() == {"AudioVideo": 1, "Game": 2}
    assert ds.info["dropped"]["repeated"] == 1
    with pytest.raises(FileNotFoundError, match="DefaultEnabled=true"):
        appstream.read_components(DATA / "none.yml.gz")


def test_pydocs_fixture_parse_and_rules():
    got = pydocs.read_library_dir(PYDOCS_DIR)
    # Introduction and Superseded Modules are not topics; string.html belongs to the first
    # chapter that lists it; math-extra.html is reached through math.html's own contents;
    # only the first paragraph directly inside each documented object's <dd> is read
    assert got == {
        "Text Processing Services": [
            "Split the argument into words using str.split(), capitalize each word & join "
            "them.", "The constructor takes a single argument which is the template string.",
            "Performs the template substitution, returning a new string.", "Alias.",
            "Return a new reference to the object."],
        "Numeric and Mathematical Modules": [
            "Return the ceiling of x, the smallest integer greater than or equal to x.",
            "Return the floor of x, the largest integer less than or equal to x.",
            "Return the greatest common divisor of the specified integer arguments.",
            "Return a new reference to the object."]}
    ds = pydocs.load_pydocs(PYDOCS_DIR, min_examples=1)
    assert ds.class_counts() == {"Numeric and Mathematical Modules": 3,
                                 "Text Processing Services": 3}
    assert ds.info["dropped"] == {"excluded_class": 0, "length": 1, "repeated": 0,
                                  "in_several_classes": 2, "small_class": 0}
    with pytest.raises(FileNotFoundError, match="apt-get download python3.11-doc"):
        pydocs.read_library_dir(DATA)


def test_pyhowto_fixture_parse_and_rules():
    # the body only (no navigation, no sidebar), admonition titles left out, a guide whose
    # page is missing skipped
    assert pydocs.read_howto_dir(HOWTO_DIR) == {
        "Sorting HOW TO": [
            "Andrew Dalke",
            "Python lists have a built-in list.sort() method that modifies the list in-place.",
            "You can also use the sorted() function & get a new sorted list back.",
            "A simple ascending sort is very easy: just call the function and you get a list.",
            "See also the section on sockets for the part that both guides share word for "
            "word."],
        "Socket Programming HOWTO": [
            "Sockets are used nearly everywhere, but are one of the most severely "
            "misunderstood technologies around.",
            "See also the section on sockets for the part that both guides share word for "
            "word.", "0.1"]}
    ds = pydocs.load_pyhowto(HOWTO_DIR, min_examples=1)
    assert ds.class_counts() == {"Socket Programming HOWTO": 1, "Sorting HOW TO": 3}
    assert ds.info["dropped"] == {"excluded_class": 0, "length": 2, "repeated": 0,
                                  "in_several_classes": 2, "small_class": 0}
    with pytest.raises(FileNotFoundError, match="html/howto"):
        pydocs.read_howto_dir(DATA)


def test_emoji_fixture_parse_and_rules():
    with open(EMOJI_TEST, encoding="utf-8") as f:
        parsed = emoji.parse_emoji_test(f)
    assert parsed["face-smiling"] == ["grinning face", "slightly smiling face",
                                      "smiling face"]  # the unqualified spelling: once
    # skin tones, colon templates (the whole country-flag subgroup) and gendered variants
    # of a listed person go; "woman scientist" stays (no "scientist" listed)
    assert emoji.read_emoji_test(EMOJI_TEST) == {
        "face-smiling": ["grinning face", "slightly smiling face", "smiling face"],
        "person-role": ["health worker", "guard", "police officer", "woman scientist"],
        "person-gesture": ["person facepalming", "woman and man holding hands"],
        "animal-mammal": ["ox", "grinning face"]}
    ds = emoji.load_emoji(EMOJI_TEST, min_examples=1)
    assert ds.class_counts() == {"animal-mammal": 1, "face-smiling": 2,
                                 "person-gesture": 2, "person-role": 4}
    assert ds.info["dropped"]["in_several_classes"] == 2
    with pytest.raises(FileNotFoundError, match="apt-get install unicode-data"):
        emoji.read_emoji_test(DATA / "none.txt")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_snapshot_writer_round_trips_to_the_reader(name, tmp_path, monkeypatch):
    module, attr, write, load, fixture, _ = SOURCES[name]
    out = tmp_path / "snap.json.gz"
    counts = write(fixture, out)
    assert counts == {k: len(v) for k, v in bundled.read_bundle(out)["classes"].items()}
    monkeypatch.setattr(module, attr, out)
    for k in (1, 2):
        got, ref = load(min_examples=k), load(fixture, min_examples=k)
        assert got.texts == ref.texts and got.class_names == ref.class_names
        assert np.array_equal(got.labels, ref.labels)
        assert got.info["dropped"] == ref.info["dropped"]


# ------------------------------------------------------------------------------ the bundles
@pytest.mark.parametrize("name,counts", [
    ("chatterbot", (492, 11, 22, "coding", 97)),
    ("appstream", (1500, 10, 47, "Game", 340)),
    ("pydocs", (7237, 30, 29, "Generic Operating System Services", 976)),
    ("pyhowto", (1851, 18, 31, "Logging Cookbook", 219)),
    ("emoji", (713, 23, 20, "animal-mammal", 66))])
def test_bundled_snapshot_counts_through_the_builtin_name(name, counts):
    module, attr, _, _, _, info = SOURCES[name]
    ds = load_text(load_config(TINY), name)
    n, k, smallest, cls, size = counts
    assert (len(ds), len(ds.class_names)) == (n, k) == (info["num_examples"],
                                                        info["num_classes"])
    assert min(ds.class_counts().values()) == smallest >= module.MIN_EXAMPLES
    assert ds.class_counts()[cls] == size
    assert len(set(t.lower() for t in ds.texts)) == n  # no text twice
    assert ds.info["package"] == info["package"] and module.COPYRIGHT.is_file()
    assert getattr(module, attr).stat().st_size < 1_000_000


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_held_out_genres_are_absent_from_bundles(name):
    module, attr = SOURCES[name][:2]
    classes = bundled.read_bundle(getattr(module, attr))["classes"]
    assert not [c for c in classes if HELD_OUT.search(c)]
    assert not [c for c in load_text(load_config(TINY), name).class_names
                if HELD_OUT.search(c)]


def test_chatterbot_excludes_trivia_and_literature_at_load_too(tmp_path, monkeypatch):
    out = tmp_path / "snap.json.gz"
    bundled.write_bundle(out, {"trivia": ["Who wrote it? Me.", "Q? A."],
                               "literature": ["Who wrote Hamlet? Shakespeare."],
                               "greetings": ["Hi there. Hello!", "Good day. Good day!"]},
                         name="n", package="p", licence="l")
    monkeypatch.setattr(chatterbot, "SNAPSHOT", out)
    ds = chatterbot.load_chatterbot(min_examples=1)
    assert ds.class_names == ("greetings",) and ds.info["dropped"]["excluded_class"] == 3


def test_new_sources_mix_in_data_sources_by_name(tmp_path):
    sources = ("[{source: chatterbot, num_train: 5, num_val: 2, num_test: 4}, "
               "{source: emoji, role: heldout}]")
    cfg = load_config(TINY, [f"data.sources={sources}", f"data.cache_dir={tmp_path}"])
    data, split = load_data(cfg)
    for name, k in (("chatterbot", 11), ("emoji", 23)):
        assert sum(c.startswith(f"{name}/") for c in data.class_names) == k
    assert len(split["train"]) == 5 and not any(
        c.startswith("emoji/") for part in ("train", "val") for c in split[part])
