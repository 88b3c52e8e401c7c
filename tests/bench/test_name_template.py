"""benchmarks/name_template.py: the template wraps each class's label text (descriptions
and readable labels alike), and a template without exactly one ``{}`` is refused."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("name_template",
                                                  ROOT / "benchmarks/name_template.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_template_wraps_every_label_text():
    from jaxmaml.data.label_text import label_texts

    texts = _module().templated(label_texts, "About {}.")
    assert texts(["men-women", "httpd"], {"httpd": "Web Servers"}) == [
        "About men women.", "About Web Servers."]


def test_a_template_without_one_slot_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        _module().main(["--template", "no slot", "--", "table"])
    assert e.value.code == 2 and "exactly one {}" in capsys.readouterr().err
