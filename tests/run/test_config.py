"""Experiment config: YAML parsing, typed --set overrides, validation messages."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from jaxmaml.run.config import ConfigError, PRESETS, all_keys, to_dict
from jaxmaml.run.config_load import apply_overrides, from_dict, load_config
from jaxmaml.meta.config import MetaConfig, OptimConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
BASE = {"model": {"name": "tiny", "tokenizer": str(ROOT / "tests/data/tokenizer")}}


def test_tiny_config_parses_with_paths_relative_to_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths in the YAML must not depend on the cwd
    cfg = load_config(TINY)
    assert cfg.name == "tiny"
    assert cfg.model.name == "tiny" and dict(cfg.model.overrides) == {"vocab_size": 128}
    assert cfg.meta.model.vocab_size == 128 and cfg.meta.model.num_hidden_layers == 2
    assert Path(cfg.data.source) == ROOT / "tests/data/tiny_topics.csv"
    assert Path(cfg.model.tokenizer) == ROOT / "tests/data/tokenizer"
    assert cfg.eval.settings == ((2, 1, 4), (2, 2, 4))


def test_all_bundled_configs_parse():
    names = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
    assert "quickstart.yaml" in names and "tiny.yaml" in names
    for name in names:
        cfg = load_config(ROOT / "configs" / name)
        assert from_dict(to_dict(cfg)) == cfg


def test_overrides_are_yaml_typed():
    cfg = load_config(TINY, ["train.steps=3", "optim.lr=1e-3", "meta.first_order=false",
                             "eval.settings=[[3, 1, 2]]", "data.max_per_class=null",
                             "model.dtype=bfloat16", "parallel.mesh=[2, -1]"])
    assert cfg.train.steps == 3 and isinstance(cfg.train.steps, int)
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)  # 1e-3 is a YAML string
    assert cfg.meta.first_order is False
    assert cfg.eval.settings == ((3, 1, 2),)
    assert cfg.data.max_per_class is None
    assert cfg.meta.model.dtype == "bfloat16"
    assert cfg.parallel.mesh == (2, -1)


def test_an_empty_set_value_clears_a_string_key(tmp_path):
    """`--set meta.outer_regex=` (or `outer_regex:` in YAML) is the empty string: the way to
    turn off a string option a config sets."""
    quick = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
    raw = yaml.safe_load(quick.read_text())
    raw["meta"]["outer_regex"] = "encoder/encoder/layer/5/.*"
    raw["meta"]["lora_rank"] = 0  # the quickstart's LoRA excludes an outer_regex
    path = tmp_path / "regex.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path).meta.outer_regex == "encoder/encoder/layer/5/.*"
    assert load_config(path, ["meta.outer_regex="]).meta.outer_regex == ""
    assert load_config(path, ["meta.outer_regex=''"]).meta.outer_regex == ""
    empty = {**raw, "meta": {**raw["meta"], "outer_regex": None}}  # `outer_regex:` in YAML
    path.write_text(yaml.safe_dump(empty))
    assert load_config(path).meta.outer_regex == ""


def test_round_trip_and_frozen_hashable():
    cfg = load_config(TINY)
    assert from_dict(to_dict(cfg)) == cfg
    hash(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.steps = 5


def test_meta_section_is_built_from_metaconfig_fields():
    keys = set(all_keys())
    for f in dataclasses.fields(MetaConfig):
        if f.name != "model":
            assert f"meta.{f.name}" in keys
    for f in dataclasses.fields(OptimConfig):
        assert f"optim.{f.name}" in keys


@pytest.mark.parametrize("raw, message", [
    ({"trian": {}}, "Did you mean 'train'"),
    ({"train": {"stpes": 3}}, "Did you mean 'train.steps'"),
    ({"meta": {"inner_rl": 0.1}}, "Did you mean 'meta.inner_lr'"),
    ({"train": {"steps": "many"}}, "train.steps must be an integer, got 'many'"),
    ({"train": {"steps": 0}}, "train.steps=0 must be >= 1"),
    ({"meta": {"adapt": "top"}}, "meta.adapt='top' is not one of"),
    ({"meta": {"adapt": "top_k_layers", "adapt_top_k": 9}}, "meta.adapt_top_k=9 must be in"),
    ({"optim": {"name": "lamb"}}, "optim.name='lamb' is not one of"),
    ({"train": {"shot": [1]}}, "train.shot must be an integer"),
    ({"eval": {"settings": [[5, 1]]}}, "must have 3 items"),
    ({"model": {"name": "no/such/dir"}}, "neither a preset"),
    ({"data": {"seq_len": 1000}}, "exceeds the model's max_position_embeddings"),
    ({"parallel": {"mesh": [-1, -1]}}, "at most one -1"),
    ({"train": {"tasks": 4}, "meta": {"task_chunk": 3}}, "meta.task_chunk=3 must divide train.tasks=4"),
    ({"meta": {"task_chunk": -2}}, "meta.task_chunk=-2 must be >= 0"),
    ({"train": []}, "must be a mapping"),
])
def test_validation_errors_say_how_to_fix(raw, message):
    merged = {k: dict(v) for k, v in BASE.items()}
    for k, v in raw.items():
        merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) else v
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        from_dict(merged)


def test_random_preset_needs_a_tokenizer():
    with pytest.raises(ConfigError, match="set model.tokenizer"):
        from_dict({"model": {"name": "tiny"}})


def test_bad_set_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["train.steps"])
    with pytest.raises(ConfigError, match="Did you mean 'train.steps'"):
        apply_overrides({}, ["trian.steps=3"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        apply_overrides({}, ["train.steps=[1"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_presets_and_minilm(minilm_path):
    for name in PRESETS:
        cfg = from_dict({"model": {"name": name, "tokenizer": minilm_path}})
        assert cfg.model.name == name
    cfg = from_dict({"model": {"name": "minilm"}})
    assert cfg.meta.model.hidden_size == 384 and cfg.meta.model.num_hidden_layers == 6


def test_options_group_loads_from_yaml_and_set_and_round_trips(tmp_path):
    """``meta.finetune`` is a nested group: YAML mapping, ``--set meta.finetune.steps=3``,
    to_dict -> from_dict identical; an unknown key inside it is a one-line error."""
    raw = {**BASE, "meta": {"algorithm": "finetune", "finetune": {"part": "lora", "top_k": 1}}}
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path, ["meta.finetune.steps=3", "meta.finetune.scale=5"])
    ft = cfg.meta.finetune
    assert (ft.part, ft.top_k, ft.steps, ft.scale) == ("lora", 1, 3, 5.0)
    assert (cfg.meta.adapt, cfg.meta.adapt_top_k, cfg.meta.first_order) == (
        "top_k_layers", 1, True)  # the inner loop's filter is the fine-tuned part
    assert from_dict(to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"unknown config key 'meta.finetune.stpes'"):
        load_config(path, ["meta.finetune.stpes=3"])
    with pytest.raises(ConfigError, match="finetune part='bogus'"):
        load_config(path, ["meta.finetune.part=bogus"])


def test_learner_options_groups_and_the_old_flat_keys(tmp_path):
    """Every learner family's options are a group (``meta.imaml.lam``); the flat keys of
    earlier versions (YAML, ``--set``, a saved run's config) load into the same config with
    one deprecation line naming the new keys; given both ways, the group wins."""
    grouped = {**BASE, "meta": {"algorithm": "imaml", "imaml": {"lam": 0.5, "cg_steps": 3},
                                "mamlpp": {"msl_steps": 4}, "relation": {"hidden": 8},
                                "protonet": {"distance": "cosine"},
                                "matching": {"fce": True, "fce_steps": 3},
                                "reptile": {"all_data": False}}}
    flat = {**BASE, "meta": {"algorithm": "imaml", "imaml_lambda": 0.5, "cg_steps": 3,
                             "msl_steps": 4, "relation_hidden": 8, "distance": "cosine",
                             "fce": True, "fce_steps": 3, "reptile_all_data": False}}
    new = from_dict(grouped)
    assert (new.meta.imaml.lam, new.meta.imaml.cg_steps, new.meta.relation.hidden,
            new.meta.reptile.all_data) == (0.5, 3, 8, False)
    with pytest.warns(FutureWarning) as said:
        old = from_dict(flat)
    assert old == new and len(said) == 1
    note = str(said[0].message)
    assert "\n" not in note and "meta.imaml_lambda -> meta.imaml.lam" in note
    assert "meta.relation_hidden -> meta.relation.hidden" in note
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(BASE))
    with pytest.warns(FutureWarning, match="meta.cg_steps -> meta.imaml.cg_steps"):
        assert load_config(path, ["meta.algorithm=imaml", "meta.cg_steps=7"]).meta.imaml.cg_steps == 7
    both = {**BASE, "meta": {"cg_steps": 2, "imaml": {"cg_steps": 9}}}
    with pytest.warns(FutureWarning):
        assert from_dict(both).meta.imaml.cg_steps == 9
    assert "imaml_lambda" not in yaml.safe_dump(to_dict(new))  # written back grouped
    with pytest.raises(ConfigError, match=r"unknown config key 'meta.imaml.lamda'"):
        from_dict({**BASE, "meta": {"imaml": {"lamda": 1.0}}})


def test_exports_and_learner_factories_read_flat_settings_into_groups():
    """An export's ``jaxmaml.json`` of an earlier version (flat ``meta`` keys) and the learner
    factories' keywords (``learners.protonet(distance="cosine")``) build grouped configs."""
    from jaxmaml import learners
    from jaxmaml.meta.config import meta_config
    from jaxmaml.meta.options import ProtoNetOptions

    want = MetaConfig(algorithm="protonet", pooling="mean",
                      protonet=ProtoNetOptions("cosine", normalize_features=True))
    assert meta_config({"algorithm": "protonet", "pooling": "mean", "distance": "cosine",
                        "normalize_features": True}) == want
    assert meta_config({"algorithm": "protonet", "pooling": "mean", "protonet": {
        "distance": "cosine", "normalize_features": True}}) == want
    assert learners.protonet(pooling="mean", distance="cosine",
                             normalize_features=True).cfg == want
