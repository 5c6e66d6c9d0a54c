"""Config fuzzing: every bad config file or ``--set`` override is a one-message user error.

Each case runs the CLI in-process (``gen5dask.cli.main``) and requires exit code 2, an error
message on stderr that names the offending key / file / value, and no traceback. A hypothesis
property then throws random override strings and random nested mappings at the config loader:
the only exception allowed is :class:`ConfigError`.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen5dask.cli import main
from gen5dask.config import Config, ConfigError, config_from_dict, load_config, parse_override

# (case id, YAML text of the config file or None for defaults, --set overrides, expected text)
CASES = [
    ("unknown_top_key", "outputdir: x\n", [], "outputdir"),
    ("unknown_nested_key", "inject:\n  replicatez: 2\n", [], "inject.replicatez"),
    ("wrong_type_int", "chunk_size: abc\n", [], "chunk_size"),
    ("wrong_type_list", "bands: grz\n", [], "bands"),
    ("negative_chunk", "chunk_size: -5\n", [], "chunk_size"),
    ("zero_chunk", None, ["chunk_size=0"], "chunk_size"),
    ("stamp_too_small", "stamp_size: 4\n", [], "stamp_size"),
    ("negative_count", None, ["simulate.n_hosts=-3"], "simulate.n_hosts"),
    ("bad_enum_cluster", "cluster:\n  kind: kubernetes\n", [], "cluster.kind"),
    ("bad_enum_data", None, ["data=real"], "data"),
    ("section_is_scalar", "inject: 3\n", [], "inject"),
    ("bad_yaml_syntax", "seed: [1, 2\n", [], "not valid YAML"),
    ("tab_indentation", "seed: 1\n\tinject: {}\n", [], "not valid YAML"),
    ("python_tag_refused", '!!python/object/apply:os.system ["echo pwned"]\n', [],
     "not valid YAML"),
    ("top_level_list", "- seed\n- 3\n", [], "top level must be a mapping"),
    ("override_no_equals", None, ["inject.replicates"], "KEY=VALUE"),
    ("override_bad_yaml", None, ["seed=[1,"], "not valid YAML"),
    ("override_into_scalar", "seed: 3\n", ["seed.x=1"], "not a section"),
    ("override_into_default_scalar", None, ["seed.x=1"], "seed"),
    ("override_empty_part", None, ["inject..replicates=2"], "invalid key"),
    ("override_unknown_key", None, ["nope=1"], "nope"),
    ("url_template_attribute", None, ["fetch.url_template=https://x/{ra.__class__}"],
     "url_template"),
    ("pattern_attribute", None, ["ingest.pattern={id.__globals__}.fits"], "ingest.pattern"),
    ("reversed_range", None, ["inject.theta_e_range=[2.0, 1.0]"], "theta_e_range"),
    ("both_ingest_sources", None, ["ingest.cutouts=a", "ingest.bricks=b"], "ingest"),
]


def _run(capsys, tmp_path, text, overrides, command="config"):
    argv = [command]
    if text is not None:
        path = tmp_path / "cfg.yaml"
        path.write_text(text)
        argv.append(str(path))
    for o in overrides:
        argv += ["--set", o]
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr()


@pytest.mark.parametrize(("text", "overrides", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_exit_2_without_traceback(capsys, tmp_path, text, overrides, expected):
    rc, cap = _run(capsys, tmp_path, text, overrides)
    assert rc == 2, cap
    assert "Traceback" not in cap.err and cap.out == ""
    assert cap.err.startswith("gen5dask config: error: ")
    assert expected in cap.err, cap.err
    if text is not None:
        # errors name the file (or the --set item when an override is at fault)
        assert "cfg.yaml" in cap.err or "--set" in cap.err


def test_python_tag_never_executed(capsys, tmp_path):
    marker = tmp_path / "pwned"
    text = f'!!python/object/apply:os.system ["touch {marker}"]\n'
    rc, _ = _run(capsys, tmp_path, text, [])
    assert rc == 2 and not marker.exists()


def test_stage_commands_report_config_errors_the_same_way(capsys, tmp_path):
    for command in ("inject", "simulate", "run", "job-script"):
        rc, cap = _run(capsys, tmp_path, "inject:\n  replicatez: 2\n", [], command)
        assert rc == 2 and "Traceback" not in cap.err
        assert "inject.replicatez" in cap.err and "cfg.yaml" in cap.err
    # a valid config whose input is missing: one line, exit 2
    rc, cap = _run(capsys, tmp_path, None, [f"output_dir={tmp_path / 'out'}",
                                          "cluster.kind=synchronous"], "inject")
    assert rc == 2 and "Traceback" not in cap.err
    assert len(cap.err.strip().splitlines()) == 1 and "survey.zarr" in cap.err


def test_missing_file_and_empty_file(capsys, tmp_path):
    capsys.readouterr()
    assert main(["config", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert "nope.yaml" in err and "does not exist" in err and "Traceback" not in err
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == Config()  # an empty file means all defaults


def test_directory_or_binary_config_file(capsys, tmp_path):
    (tmp_path / "adir").mkdir()
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01 not text")
    for path in (tmp_path / "adir", binary):
        capsys.readouterr()
        rc = main(["config", str(path)])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err and path.name in err


def test_seed_outside_int64_is_a_config_error():
    with pytest.raises(ConfigError, match="seed"):
        config_from_dict({}, overrides=["seed=99999999999999999999999"])


# --- property-based ---------------------------------------------------------------------------

SECTIONS = sorted(Config.model_fields)
_keys = st.one_of(
    st.sampled_from(SECTIONS),
    st.builds(lambda s, k: f"{s}.{k}", st.sampled_from(SECTIONS),
              st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)),
    st.text(min_size=0, max_size=20),
)
_values = st.one_of(
    st.text(max_size=30), st.integers(), st.floats(allow_nan=True), st.booleans(),
    st.sampled_from(["[", "{", "]", "!!python/name:os.system", "*a", "&a [1]", "'", "- 1", ":"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=_keys, value=_values, eq=st.booleans())
def test_random_overrides_only_raise_config_error(key, value, eq):
    text = f"{key}={value}" if eq else f"{key}{value}"
    try:
        cfg = config_from_dict({}, overrides=[text])
    except ConfigError as exc:
        assert str(exc)
        return
    # accepted: the override really landed where it says
    k, v = parse_override(text)
    assert isinstance(cfg, Config) and k


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(),
              st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.dictionaries(st.sampled_from(SECTIONS + ["bogus"]), _json, max_size=4))
def test_random_trees_only_raise_config_error(tree):
    try:
        config_from_dict(tree)
    except ConfigError as exc:
        assert "invalid config" in str(exc)
