"""Class names as text: readable labels and built-in descriptions."""

import pytest

from jaxmaml.data import load_builtin
from jaxmaml.data.label_text import builtin_descriptions, label_texts, readable_label
from jaxmaml.data.wordnet import LEXNAMES


@pytest.mark.parametrize("name, text", [
    ("noun.animal", "animal"), ("verb.body", "body verbs"), ("adj.ppl", "ppl adjectives"),
    ("American_football", "American football"), ("songs-poems", "songs poems"),
    ("a/b.c__d", "a b c d"), ("linuxcookie", "linuxcookie"), ("x11", "x11"), ("_", "_"),
])
def test_readable_label(name, text):
    assert readable_label(name) == text


def test_descriptions_replace_the_label_and_default_to_readable():
    assert label_texts(["otherosfs", "foo_bar"], {"otherosfs": "Cross Platform"}) == [
        "Cross Platform", "foo bar"]
    assert label_texts(["noun.Tops"]) == ["Tops"]
    assert builtin_descriptions("fortunes") == {}


def test_builtin_descriptions_cover_their_sources_classes_and_are_distinct():
    debian = load_builtin("debian").class_names
    assert set(builtin_descriptions("debian")) == set(debian)
    for names, source in ((debian, "debian"), (LEXNAMES, "wordnet")):
        texts = label_texts(names, builtin_descriptions(source))
        assert len(set(texts)) == len(names), source  # no two classes share a text
        assert set(builtin_descriptions(source)) <= set(names)
