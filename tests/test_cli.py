"""CLI in-process: help, info exit codes, clean errors without tracebacks."""

import numpy as np
import pytest

from gen5dask import store
from gen5dask.cli import build_parser, main
from gen5dask.stages import STAGES
from gen5dask.store.testing import fake_chunk


def _make_store(path, n=40, *, nan=False):
    store.create_store(
        path, n_samples=n, stage="test", config={"x": 1}, seed=0, stamp_size=8, chunk_size=16
    )
    man = store.store_geometry(path)
    for i, (a, b) in enumerate(store.chunk_bounds(n, 16)):
        data = fake_chunk(np.arange(a, b), variables=man["variables"], stamp_size=8)
        if nan and i == 0:
            data["image"][0, 0, 0, 0] = np.nan
        store.write_chunk(path, i, data)
    store.finalize_store(path)
    return path


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in [*STAGES, "run", "info"]:
        assert name in out
    for name in STAGES:
        sub = build_parser().parse_args([name, "c.yaml", "--set", "seed=1"])
        assert sub.overrides == ["seed=1"]


def test_info_valid_and_invalid(tmp_path, capsys):
    good = _make_store(tmp_path / "good.zarr")
    assert main(["info", str(good)]) == 0
    out = capsys.readouterr().out
    assert "host: 40" in out and "valid" in out
    bad = _make_store(tmp_path / "bad.zarr", nan=True)
    assert main(["info", str(bad)]) == 1
    assert "NaN" in capsys.readouterr().out


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    f = tmp_path / "c.yaml"
    f.write_text("nonsense_key: 1\n")
    assert main(["simulate", str(f)]) == 2
    err = capsys.readouterr().err
    assert "nonsense_key" in err and "Traceback" not in err


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "gen5dask", "--version"], capture_output=True, text=True, check=True
    )
    assert "gen5dask" in out.stdout


def test_anchors_without_cutouts_says_what_to_run_first(tmp_path, capsys):
    lst = tmp_path / "my_lenses.csv"
    lst.write_text("name,ra,dec\nL1,150.1,2.2\n")
    rc = main(["anchors", "--set", f"output_dir={tmp_path / 'out'}",
               "--set", f"anchors.catalogs=[{lst}]", "--set", "anchors.reference=none"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "cutout store" in err and "does not exist" in err
    assert "gen5dask simulate" in err and "gen5dask ingest" in err


def test_bare_path_means_a_table_source(tmp_path):
    from gen5dask.config import load_config

    cfg = load_config(None, [f"anchors.catalogs=[{tmp_path / 'a.csv'}, {tmp_path / 'b.fits'}]"])
    assert [(s.kind, s.path) for s in cfg.anchors.catalogs] == [
        ("table", str(tmp_path / "a.csv")), ("table", str(tmp_path / "b.fits"))]
    assert load_config(None, ["anchors.catalogs=list.csv"]).anchors.catalogs[0].path == "list.csv"
