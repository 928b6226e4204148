"""Configs: validation messages, presets, overrides, stable hashes."""

from __future__ import annotations

import pytest

from mtdiff.config import (
    PRESETS,
    ConfigError,
    DiffusionConfig,
    ModelConfig,
    apply_overrides,
    config_hash,
    flatten,
    from_dict,
    get_preset,
    to_dict,
)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_build_and_round_trip(name):
    cfg = get_preset(name)
    assert cfg.preset == name
    assert from_dict(to_dict(cfg)) == cfg


def test_paper_preset_has_appendix_a_values():
    cfg = get_preset("paper")
    assert (cfg.model.n_layer, cfg.model.n_head) == (6, 4)
    assert cfg.diffusion.num_steps == 200 and cfg.diffusion.guidance == 1.2
    assert cfg.diffusion.temperature == 0.5 and cfg.diffusion.cond_drop == 0.25
    assert cfg.train.lr == 2e-4 and cfg.data.batch_per_task == 8 and cfg.data.prompt_len == 20
    assert cfg.data.history_for("metaworld") == 2 and cfg.data.history_for("maze2d") == 5
    assert cfg.metaworld.transitions_per_task == 1_000_000


def test_unknown_preset_lists_known():
    with pytest.raises(ConfigError, match=r"unknown preset 'big'.*smoke"):
        get_preset("big")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ModelConfig(d_model=100, n_head=3), "not divisible by n_head=3"),
        (lambda: ModelConfig(n_layer=0), r"n_layer: must be > 0, got 0"),
        (lambda: DiffusionConfig(sampler="euler"), r"'euler' is not one of \['ddpm'"),
        (lambda: DiffusionConfig(sample_steps=300), "exceeds num_steps=200"),
        (lambda: DiffusionConfig(temperature=1.5), r"temperature: must be in \[0, 1\]"),
        (lambda: ModelConfig(d_model="256"), "expected an integer"),
    ],
)
def test_bad_values_name_the_field(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_overrides_parse_types_and_revalidate():
    cfg = get_preset("smoke")
    new = apply_overrides(cfg, ["train.lr=1e-3", "train.bf16=true", "maze2d.train_maps=a,b",
                                "data.history=none", "train.steps=1e3"])
    assert new.train.lr == 1e-3 and new.train.bf16 is True and new.train.steps == 1000
    assert new.maze2d.train_maps == ("a", "b") and new.data.history is None
    assert cfg.train.lr != 1e-3  # the original is untouched
    with pytest.raises(ConfigError, match="has no field 'lrr'"):
        apply_overrides(cfg, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="no config section 'trian'"):
        apply_overrides(cfg, ["trian.lr=1"])
    with pytest.raises(ConfigError, match="cannot read 'abc' as int"):
        apply_overrides(cfg, ["train.steps=abc"])
    with pytest.raises(ConfigError, match="not divisible"):
        apply_overrides(cfg, ["model.d_model=33"])
    with pytest.raises(ConfigError, match="of the form"):
        apply_overrides(cfg, ["train.lr"])


def test_hash_is_stable_and_sensitive():
    a, b = get_preset("smoke"), get_preset("smoke")
    assert config_hash(a) == config_hash(b) and len(config_hash(a)) == 12
    c = apply_overrides(a, ["maze2d.episodes_per_map=5"])
    assert config_hash(c) != config_hash(a)
    assert c.collection_hash("maze2d") != a.collection_hash("maze2d")
    # Changing training does not rename the dataset.
    d = apply_overrides(a, ["train.lr=1e-3"])
    assert d.collection_hash("maze2d") == a.collection_hash("maze2d")


def test_flatten_for_mlflow():
    flat = flatten(get_preset("smoke"))
    assert flat["train.lr"] == 2e-4 and flat["maze2d.train_maps"] == "train-0,train-1"


def _float_fields() -> list[str]:
    """Every float-typed field of the config (optional floats and tuples of floats too)."""
    import dataclasses
    import typing

    from mtdiff.config import Config

    sections = [(name, cls) for name, cls in typing.get_type_hints(Config).items()
                if dataclasses.is_dataclass(cls)]
    sections += [(f"methods.{name}", type(section))
                 for name, section in get_preset("smoke").methods.items()]
    return [f"{section}.{name}" for section, cls in sections
            for name, tp in typing.get_type_hints(cls).items()
            if float in (tp, *typing.get_args(tp))]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_non_finite_floats_are_rejected_for_every_float_field(value):
    """Non-finite values are refused in every float field, range-checked or not."""
    fields = _float_fields()
    assert {"train.lr", "metaworld.scripted_noise", "methods.mtiql.beta",
            "methods.mttd3bc.alpha"} <= set(fields) and len(fields) > 30
    for f in fields:
        with pytest.raises(ConfigError, match="expected a finite number"):
            apply_overrides(get_preset("smoke"), [f"{f}={value}"])


def test_empty_metaworld_task_spec_is_rejected():
    with pytest.raises(ConfigError, match=r"MetaWorldConfig.tasks: empty task spec"):
        apply_overrides(get_preset("smoke"), ["metaworld.tasks="])
    with pytest.raises(ConfigError, match="empty task spec"):
        apply_overrides(get_preset("smoke"), ["metaworld.tasks= , "])


def test_each_method_has_its_own_section_with_the_presets_values():
    smoke, local, paper = get_preset("smoke"), get_preset("local"), get_preset("paper")
    assert set(paper.methods) == {"mtbc", "mtiql", "mtcql", "mtdt", "promptdt", "mttd3bc"}
    m = paper.methods
    assert (m["mtbc"].hidden, m["mtiql"].hidden, m["mtcql"].n_actions) == (1024, 256, 10)
    assert (m["mtdt"].context, m["mtdt"].warmup_steps, m["promptdt"].lr) == (20, 10_000, 1e-4)
    assert local.methods["mtdt"].warmup_steps == local.methods["promptdt"].warmup_steps == 200
    m = smoke.methods
    assert (m["mtbc"].hidden, m["mtiql"].hidden, m["mttd3bc"].hidden) == (64, 32, 32)
    assert (m["mtcql"].n_actions, m["promptdt"].context, m["mtdt"].max_timestep) == (4, 4, 200)


def test_method_overrides_reach_only_their_section_and_revalidate():
    cfg = get_preset("smoke")
    new = apply_overrides(cfg, ["methods.mtiql.beta=10", "methods.mtcql.next_action_obs=next"])
    assert new.methods["mtiql"].beta == 10.0 and new.methods["mtcql"].next_action_obs == "next"
    assert cfg.methods["mtiql"].beta == 3.0  # the original is untouched
    assert new.methods["mttd3bc"] == cfg.methods["mttd3bc"]
    assert from_dict(to_dict(new)) == new
    assert flatten(new)["methods.mtiql.beta"] == 10.0
    with pytest.raises(ConfigError, match="no method 'mtfoo' has a config section"):
        apply_overrides(cfg, ["methods.mtfoo.beta=1"])
    with pytest.raises(ConfigError, match="MTIQLConfig has no field 'betta'"):
        apply_overrides(cfg, ["methods.mtiql.betta=1"])
    with pytest.raises(ConfigError, match="MTIQLConfig.expectile: must be in"):
        apply_overrides(cfg, ["methods.mtiql.expectile=1.5"])
    with pytest.raises(ConfigError, match="is not a field"):
        apply_overrides(cfg, ["methods.mtiql=1"])
    with pytest.raises(ConfigError, match="no config section 'baselines'"):
        apply_overrides(cfg, ["baselines.iql_beta=1"])


def test_a_methods_section_names_its_runs_only():
    base = get_preset("local")
    tweaked = apply_overrides(base, ["methods.mtiql.beta=10"])
    assert tweaked.training_hash("d") == base.training_hash("d")  # MTDiff-P: unchanged
    iql = apply_overrides(base, ["model.kind=mtiql"])
    assert apply_overrides(iql, ["methods.mtiql.beta=10"]).training_hash("d") != \
        iql.training_hash("d")
    assert apply_overrides(iql, ["methods.mtcql.alpha=1"]).training_hash("d") == \
        iql.training_hash("d")


def test_a_config_with_the_flat_baselines_section_still_reads():
    """Checkpoints written when the methods shared one `baselines` section keep it."""
    data = {k: v for k, v in to_dict(get_preset("smoke")).items() if k != "methods"}
    data["baselines"] = {"hidden": 48, "task_embed_dim": 6, "bc_hidden": 96, "iql_beta": 5.0,
                         "cql_alpha": 1.0, "discount": 0.9, "dt_context": 7}
    m = from_dict(data).methods
    assert (m["mtiql"].hidden, m["mtcql"].hidden, m["mttd3bc"].hidden, m["mtbc"].hidden) == \
        (48, 48, 48, 96)
    assert m["mtdt"].task_embed_dim == m["mtbc"].task_embed_dim == 6
    assert (m["mtiql"].beta, m["mtcql"].alpha, m["mttd3bc"].discount) == (5.0, 1.0, 0.9)
    assert m["mtdt"].context == m["promptdt"].context == 7
    assert m["mtcql"].n_actions == 4  # not in that section: the preset's value
