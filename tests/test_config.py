"""Configuration: validation messages, --set parsing, TOML round trip, the model registry."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass

import pytest
import torch

from genlearn import __version__, registry
from genlearn import config as cfg
from genlearn.errors import UserError
from genlearn.models.vae import VAE


@dataclass
class _Flags(cfg.Common):
    """A config with one field of every kind --set has to parse."""

    verbose: bool = False
    name: str = "x"
    ratio: float = cfg.bounded(0.5, min=0.0, max=1.0)
    mode: str = cfg.choice("a", ("a", "b"))


def test_unknown_key_names_it_and_lists_the_known_keys():
    with pytest.raises(UserError) as info:
        registry.make_config("vae", {"latnet_dim": "3"})
    msg = str(info.value)
    assert "'latnet_dim'" in msg and "vae" in msg
    for known in ("latent_dim", "epochs", "batch_size", "lr", "seed", "train_limit", "checkpoint_every"):
        assert known in msg


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("activation", "sigmoid", ("tanh", "relu", "softplus", "elu")),
        ("device", "tpu", ("cpu", "cuda", "auto")),
        ("likelihood", "poisson", ("bernoulli", "gaussian")),
        ("lr_schedule", "step", ("constant", "cosine")),
    ],
)
def test_bad_choice_lists_the_allowed_values(key, value, allowed):
    with pytest.raises(UserError) as info:
        registry.make_config("vae", {key: value})
    msg = str(info.value)
    assert repr(key) in msg and value in msg
    assert all(a in msg for a in allowed)


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [("batch_size", "0", "at least 1"), ("epochs", "-1", "at least 0"), ("lr", "-0.1", "at least 0"),
     ("latent_dim", "0", "at least 1"), ("checkpoint_every", "-5", "at least 0")],
)  # fmt: skip
def test_below_minimum_says_the_bound(key, value, bound):
    with pytest.raises(UserError, match=bound) as info:
        registry.make_config("vae", {key: value})
    assert repr(key) in str(info.value)


def test_above_maximum_says_the_bound():
    with pytest.raises(UserError, match="at most 1"):
        cfg.build(_Flags, {"ratio": "1.5"})


def test_set_strings_are_parsed_to_the_field_types():
    c = cfg.build(
        _Flags,
        {"epochs": "3", "lr": "2e-4", "verbose": "yes", "name": "relu", "batch_size": " 7 ", "ratio": "1"},
    )
    assert c.epochs == 3 and type(c.epochs) is int
    assert c.lr == 2e-4 and type(c.lr) is float
    assert c.verbose is True
    assert c.name == "relu"
    assert c.batch_size == 7
    assert c.ratio == 1.0 and type(c.ratio) is float
    for text, value in [
        ("true", True),
        ("1", True),
        ("on", True),
        ("FALSE", False),
        ("no", False),
        ("0", False),
    ]:
        assert cfg.build(_Flags, {"verbose": text}).verbose is value
    # TOML already typed values pass through; an integral float is fine for an int field.
    assert cfg.build(_Flags, {"epochs": 4.0, "verbose": True, "lr": 1}).epochs == 4


@pytest.mark.parametrize(
    ("key", "raw"),
    [("epochs", "abc"), ("epochs", "1.5"), ("epochs", "1e3"), ("epochs", True), ("epochs", 2.5),
     ("lr", "fast"), ("lr", False), ("verbose", "maybe"), ("batch_size", ""), ("epochs", [1, 2])],
)  # fmt: skip
def test_unparsable_values_are_refused_with_the_type(key, raw):
    with pytest.raises(UserError) as info:
        cfg.build(_Flags, {key: raw})
    assert f"bad value for {key!r}" in str(info.value)


def test_vae_rejects_abc_for_an_int_field():
    with pytest.raises(UserError, match=r"'latent_dim'.*'abc'.*int"):
        registry.make_config("vae", {"latent_dim": "abc"})


@pytest.mark.parametrize("value", ["nan", "-nan", "NaN"])
def test_nan_is_not_a_valid_learning_rate(value):
    with pytest.raises(UserError, match="'lr'"):
        registry.make_config("vae", {"lr": value})


def test_parse_sets():
    assert cfg.parse_sets(["a=1", " b = x ", "c=u=v", "d="]) == {"a": "1", "b": "x", "c": "u=v", "d": ""}
    for bad in ("novalue", "=3", " =3"):
        with pytest.raises(UserError, match="key=value") as info:
            cfg.parse_sets(["ok=1", bad])
        assert repr(bad) in str(info.value)


def test_toml_round_trip_gives_an_equal_config(tmp_path):
    original = registry.make_config(
        "vae",
        {"epochs": "7", "lr": "3.5e-05", "lr_schedule": "cosine", "latent_dim": "2", "activation": "relu",
         "data_dir": 'C:\\data\\"mnist" é', "checkpoint_every": "0.25", "weight_decay": "1e-30",
         "min_logvar": "-inf", "seed": "123456789012"},
    )  # fmt: skip
    text = cfg.to_toml(original, "vae", __version__)
    path = tmp_path / "config.toml"
    path.write_text(text)
    values = cfg.read_toml(path)
    assert values.pop("model") == "vae"
    assert values.pop("genlearn_version") == __version__
    assert set(values) == {f.name for f in dataclasses.fields(original)}, "config.toml must hold every field"
    again = registry.make_config("vae", values)
    assert again == original
    assert math.isinf(again.min_logvar) and again.data_dir == 'C:\\data\\"mnist" é'
    # Also valid TOML for any other reader.
    assert tomllib.loads(text)["latent_dim"] == 2


def test_read_toml_accepts_a_config_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('model = "vae"\n[config]\nepochs = 3\nlatent_dim = 4\n')
    values = cfg.read_toml(path)
    assert values == {"model": "vae", "epochs": 3, "latent_dim": 4}


def test_read_toml_missing_and_invalid_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        cfg.read_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = \n")
    with pytest.raises(UserError, match="not valid TOML"):
        cfg.read_toml(bad)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="not valid TOML"):
        cfg.read_toml(binary)


def test_create_builds_the_model_with_the_fields():
    model = registry.create("vae", latent_dim=2, hidden_units=16)
    assert isinstance(model, VAE)
    assert model.latent_dim == 2 and model.config.latent_dim == 2
    assert model.config.hidden_units == 16 and model.config.epochs == VAE.Config().epochs
    out = model.encoder(torch.zeros(3, 784))
    assert out.shape == (3, 4)  # mean and log-variance of a 2-D z
    assert model.sample(5).shape == (5, 1, 28, 28)


def test_every_config_field_has_a_default_and_the_common_names():
    config = VAE.Config()
    common = {f.name for f in dataclasses.fields(cfg.Common)}
    assert {
        "epochs",
        "batch_size",
        "lr",
        "seed",
        "device",
        "train_limit",
        "checkpoint_every",
        "eval_every",
    } <= common
    assert common <= {f.name for f in dataclasses.fields(config)}
    cfg.validate(config)


def test_unknown_model_lists_the_known_models():
    with pytest.raises(UserError) as info:
        registry.create("vea")
    msg = str(info.value)
    assert "'vea'" in msg
    for name in registry.names():
        assert name in msg
    assert "vae" in registry.names()


def test_preset_applies_before_the_users_values(monkeypatch):
    monkeypatch.setitem(
        registry._REGISTRY,
        "vae-tiny",
        registry.Entry(
            "vae-tiny", "genlearn.models.vae", "VAE", "test preset", {"hidden_units": 8, "latent_dim": 3}
        ),
    )
    assert registry.make_config("vae-tiny").hidden_units == 8
    config = registry.make_config("vae-tiny", {"hidden_units": "16"})
    assert config.hidden_units == 16 and config.latent_dim == 3
    assert registry.create("vae-tiny").latent_dim == 3


def test_every_shipped_config_file_names_its_model_and_is_valid_for_it():
    from pathlib import Path

    from genlearn import config as cfg
    from genlearn import registry

    configs = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(p for p in configs.glob("*.toml") if p.name != "zoo.toml")  # zoo.toml: the plan
    assert files
    for path in files:
        values = cfg.read_toml(path)
        name = values.pop("model")
        config = registry.make_config(name, values)  # unknown or out-of-range fields raise
        for key, value in values.items():
            assert getattr(config, key) == value, (path.name, key)


def test_the_zoo_plan_names_a_preset_of_its_model_for_every_entry():
    """configs/zoo.toml: each entry names a registered model and a preset in configs/ for it."""
    import tomllib
    from pathlib import Path

    from genlearn import config as cfg
    from genlearn import registry

    configs = Path(__file__).resolve().parents[1] / "configs"
    plan = tomllib.loads((configs / "zoo.toml").read_text())
    assert len(plan) == 16
    for name, entry in plan.items():
        registry.entry(entry["model"])
        preset = cfg.read_toml(configs / entry["preset"])
        assert preset["model"] == entry["model"], name
