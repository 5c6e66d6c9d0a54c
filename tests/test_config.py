"""Config loading: typed, strict, overrides, clear errors naming key and file."""

import pytest

from gen5dask.config import Config, ConfigError, config_from_dict, load_config, parse_override


def test_defaults_and_override_types(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("seed: 3\ncluster:\n  kind: synchronous\n")
    cfg = load_config(f, ["cluster.n_workers=2", "output_dir=out", "bands=[g, r]"])
    assert cfg.seed == 3 and cfg.cluster.n_workers == 2 and cfg.bands == ["g", "r"]
    assert str(cfg.layout.train).endswith("out/train.zarr")


def test_unknown_key_names_key_and_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("sed: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml[\s\S]*sed"):
        load_config(f)


def test_nested_unknown_and_mistyped_key():
    with pytest.raises(ConfigError, match="cluster.kindd"):
        config_from_dict({"cluster": {"kindd": "local"}})
    with pytest.raises(ConfigError, match="cluster.n_workers"):
        config_from_dict({}, overrides=["cluster.n_workers=abc"])


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("seed")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(f)


def test_every_packaged_config_validates():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert files, "configs/*.yaml missing"
    for f in files:
        assert isinstance(load_config(f), Config), f
