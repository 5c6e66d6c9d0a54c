"""The evaluate stage's compact scores table (string columns as Categorical codes) gives the
values and the metrics of the decoded table, and never drops a value outside the legend."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gen5dask.columns import read_table_categorical, string_codes
from gen5dask.evaluate.metrics import compute_arm_metrics, validate_scores
from gen5dask.train.scoring import read_scores, write_scores
from tests.evaluate.synth import make_scores


@pytest.fixture
def scores_path(tmp_path):
    df = make_scores(4)
    rng = np.random.default_rng(1)
    df["snr_opt"] = np.where(df["label"] == 1, rng.lognormal(1.5, 1.0, len(df)),
                             np.nan).astype(np.float32)
    path = tmp_path / "scores" / "arm.zarr"
    write_scores(path, df)
    return path


def test_categorical_table_has_the_decoded_values(scores_path):
    ref = read_scores(scores_path)
    got = read_table_categorical(scores_path, block_rows=97)  # many blocks, uneven last one
    assert list(got.columns) == list(ref.columns)
    for col in ref.columns:
        if isinstance(got[col].dtype, pd.CategoricalDtype):
            assert got[col].cat.codes.dtype == np.int8
            assert got[col].astype(str).tolist() == ref[col].astype(str).tolist(), col
        else:
            assert got[col].dtype == ref[col].dtype, col
            np.testing.assert_array_equal(got[col].to_numpy(), ref[col].to_numpy())
    assert isinstance(got["kind"].dtype, pd.CategoricalDtype)
    # validation keeps the codes (no string per row) and the values
    v = validate_scores(got)
    assert isinstance(v["split"].dtype, pd.CategoricalDtype)
    assert v["split"].astype(str).tolist() == ref["split"].tolist()


def test_metrics_identical_on_categorical_and_decoded_tables(scores_path):
    ref = compute_arm_metrics(read_scores(scores_path), n_boot=50, seed=3)
    got = compute_arm_metrics(read_table_categorical(scores_path, block_rows=101), n_boot=50,
                              seed=3)
    assert json.dumps(got, sort_keys=True) == json.dumps(ref, sort_keys=True)
    assert ref["n_injections"] > 0 and ref["tier_a_n"] > 0


def test_categorical_with_missing_values_and_missing_string_columns():
    df = make_scores(2)
    obj = df.assign(tier=df["tier"].where(df["kind"] != "stress", None)).drop(columns="subtype")
    cat = obj.assign(**{c: obj[c].astype("category") for c in ("kind", "split", "tier",
                                                                "inject_mode", "store")})
    ref = compute_arm_metrics(obj, n_boot=30, seed=1)
    got = compute_arm_metrics(cat, n_boot=30, seed=1)
    assert json.dumps(got, sort_keys=True) == json.dumps(ref, sort_keys=True)
    v = validate_scores(cat)
    assert (v["tier"].astype(str) == validate_scores(obj)["tier"]).all()
    assert set(v["subtype"]) == {""}


def test_string_codes_append_values_outside_the_legend():
    cats = ["a", "b"]
    vals = np.array(["b", "z", "a", "c", "z"], dtype=np.dtypes.StringDType())
    codes = string_codes(vals, cats)
    assert cats == ["a", "b", "c", "z"]
    assert [cats[c] for c in codes] == vals.tolist()
