"""benchmarks/name_template.py: the template wraps each class's label text (descriptions
and readable labels alike), and a template without exactly one ``{}`` is refused."""

import pytest
from bench_scripts import load_script


def test_template_wraps_every_label_text():
    from jaxmaml.data.label_text import label_texts

    texts = load_script("name_template").templated(label_texts, "About {}.")
    assert texts(["men-women", "httpd"], {"httpd": "Web Servers"}) == [
        "About men women.", "About Web Servers."]


def test_a_template_without_one_slot_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        load_script("name_template").main(["--template", "no slot", "--", "table"])
    assert e.value.code == 2 and "exactly one {}" in capsys.readouterr().err
