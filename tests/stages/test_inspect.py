"""Inspect: a self-contained grading gallery whose CSV export feeds ``anchors.visual_grades``."""

import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gen5dask.config import config_from_dict
from gen5dask.stages.anchors import run_anchors, select_anchors
from gen5dask.stages.inspect import (
    InspectInputError,
    normalize_grade,
    order_anchors,
    run_inspect,
)
from tests.stages.test_anchors import STAMP, _cutout_store

NODE = shutil.which("node")


def _setup(tmp_path, **inspect):
    cut = tmp_path / "cut.zarr"
    ids = _cutout_store(cut, arcs=True)
    ra = 150.0 + 0.01 * np.arange(10)
    ref = pd.DataFrame({"name": [f"L{i}" for i in range(10)], "ra": ra, "dec": np.full(10, 2.0),
                        "grade": "confident", "ref": "Huang et al. (2021)"})
    ref.to_csv(tmp_path / "ref.csv", index=False)
    typed = ref.copy()
    typed["id"] = ids[:10]
    typed.loc[5, "dec"] += 3.0 / 60.0  # planted 3-arcmin coordinate error
    typed.to_csv(tmp_path / "list.csv", index=False)
    return config_from_dict({
        "output_dir": str(tmp_path / "out"), "chunk_size": 4,
        "anchors": {"catalogs": [{"kind": "table", "path": str(tmp_path / "list.csv")}],
                    "reference": str(tmp_path / "ref.csv"), "cutouts": str(cut),
                    "min_anchors": 3},
        "inspect": {"scale": 2, **inspect},
    })


@pytest.fixture
def built(tmp_path):
    cfg = _setup(tmp_path)
    run_anchors(cfg)
    return cfg


def _scripts(page):
    return re.findall(r"<script[^>]*>(.*?)</script>", page, flags=re.S)


def _csv_js(page):
    m = re.search(r'<script id="gen5dask-csv">(.*?)</script>', page, flags=re.S)
    assert m, "CSV helper script missing"
    return m.group(1)


def _export_csv(page, grades, tmp_path):
    """Run the page's own ``gradesToCsv`` (node) on ``grades``; the file the button downloads."""
    js = tmp_path / "csv.js"
    js.write_text(_csv_js(page))
    drv = tmp_path / "drv.js"
    drv.write_text(
        f"const m = require({json.dumps(str(js))});\n"
        f"process.stdout.write(m.gradesToCsv({json.dumps(grades)}));\n"
    )
    return subprocess.run([NODE, str(drv)], check=True, capture_output=True, text=True).stdout


def test_gallery_content_is_self_contained(built):
    out = run_inspect(built)
    assert out == built.layout.inspect_dir / "gallery.html"
    page = out.read_text()
    acc = pd.read_csv(built.layout.anchors_csv)
    rej = pd.read_csv(built.layout.anchors_rejected_csv)
    for name in acc.name:
        assert f'data-name="{name}"' in page
    for name, reason in zip(rej.name, rej.reason, strict=True):
        assert name in page and reason.split(" (")[0] in page
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:image/png;base64,)""", page)
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(srcs) == 2 * len(acc)  # composite + residual per anchor
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        im.load()
        assert im.format == "PNG" and im.size == (STAMP, STAMP)  # native, browser upscales
    assert len(re.findall(rf'<img width="{2 * STAMP}" height="{2 * STAMP}"', page)) == len(srcs)
    # per-anchor facts shown: tier, centre S/N, visibility, match separation, provenance
    row = acc.set_index("name").loc["L0"]
    card = page[page.index('data-name="L0"'):]
    card = card[: card.index('<div class="card"') if '<div class="card"' in card else None]
    assert f"{row.visibility:.2f}" in card and f"{row.centre_snr:.1f}" in card
    assert f"{row.match_sep_arcsec:.2f}" in card and "<b>A</b>" in card
    assert str(row.provenance).split(":")[0] in card
    for g in ("A", "B", "C", "not_a_lens"):
        assert f'value="{g}"' in card
    assert "localStorage" in page and "grades.csv" in page


def test_gallery_order_and_max_items(tmp_path):
    cfg = _setup(tmp_path, max_items=3, sort_by="visibility")
    run_anchors(cfg)
    page = run_inspect(cfg).read_text()
    acc = pd.read_csv(cfg.layout.anchors_csv)
    shown = re.findall(r'<div class="card" id="card\d+" data-name="([^"]+)"', page)
    want = acc.sort_values("visibility", ascending=False).name.tolist()
    assert shown == want[:3]
    assert "Not shown (6" in page and all(n in page for n in want[3:])
    assert len(re.findall(r"<img ", page)) == 6
    # arcs (even rows) score higher on the visibility proxy than arc-free anchors
    vis = acc.set_index("name").visibility
    assert vis[["L0", "L2", "L4"]].min() > vis[["L1", "L9"]].max()


def test_order_anchors_rules():
    t = pd.DataFrame({"name": ["b", "a", "c", "d"], "tier": ["stress", "B", "A", "A"],
                      "visibility": [5.0, np.nan, 1.0, 3.0]})
    assert order_anchors(t, "visibility").name.tolist() == ["b", "d", "c", "a"]
    assert order_anchors(t, "tier").name.tolist() == ["d", "c", "a", "b"]
    assert order_anchors(t, "name").name.tolist() == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="sort_by"):
        order_anchors(t, "ra")
    assert [normalize_grade(g) for g in ["a", " B", "c", "Not a lens", "n", "x", None]] == [
        "A", "B", "C", "not_a_lens", "not_a_lens", "", ""]


@pytest.mark.skipif(NODE is None, reason="node not installed")
def test_export_js_header_quoting_and_syntax(built, tmp_path):
    page = run_inspect(built).read_text()
    text = _export_csv(page, {"L2": "C", 'odd, "name"': "A", "L1": "B", "L3": "maybe"}, tmp_path)
    assert text.splitlines()[0] == "name,grade"
    back = pd.read_csv(io.StringIO(text), dtype=str)
    assert dict(zip(back.name, back.grade, strict=True)) == {
        "L1": "B", "L2": "C", 'odd, "name"': "A"}
    # every inline script of the page is valid JavaScript
    for k, src in enumerate(_scripts(page)):
        f = tmp_path / f"s{k}.js"
        f.write_text(src)
        subprocess.run([NODE, "--check", str(f)], check=True, capture_output=True)


def test_grades_round_trip_through_anchors(built, tmp_path):
    page = run_inspect(built).read_text()
    grades = {"L0": "not_a_lens", "L1": "B", "L2": "C", "L4": "A"}
    if NODE is not None:
        text = _export_csv(page, grades, tmp_path)
    else:  # same format, written by hand
        text = "name,grade\n" + "".join(f"{k},{v}\n" for k, v in sorted(grades.items()))
    (tmp_path / "grades.csv").write_text(text)
    before, _ = select_anchors(built)
    assert set(before[before.kind == "anchor"].tier) == {"A"}
    built.anchors.visual_grades = str(tmp_path / "grades.csv")
    acc, rej = select_anchors(built)
    tiers = acc.set_index("name").tier
    assert tiers["L1"] == "B" and tiers["L2"] == "secondary" and tiers["L4"] == "A"
    assert "L0" not in tiers.index
    assert rej.set_index("name").loc["L0", "reason"] == "visual inspection: not a lens"
    # rerun anchors with the grades, then re-inspect: prior grades seed the page, including
    # that of the now-rejected L0, so a second export keeps it
    run_anchors(built)
    page2 = run_inspect(built).read_text()
    prior = json.loads(re.search(r"const PRIOR = (\{.*?\});", page2).group(1))
    assert prior == grades
    rej_sec = page2[page2.index("Rejected anchors"):]
    assert 'data-name="L0"' in rej_sec and "visual inspection: not a lens" in rej_sec
    assert 'data-name="L0"' not in page2[: page2.index("Rejected anchors")]


def test_idempotent_force_and_missing_inputs(built, tmp_path):
    out = run_inspect(built)
    stamp = os.stat(out).st_mtime_ns
    meta = json.loads((built.layout.inspect_dir / "gallery.json").read_text())
    assert meta["n_shown"] == 9 and meta["n_rejected"] == 3
    assert run_inspect(built) == out and os.stat(out).st_mtime_ns == stamp
    run_inspect(built, force=True)
    assert os.stat(out).st_mtime_ns != stamp
    built.inspect.sort_by = "name"  # config change -> regenerated
    page = run_inspect(built).read_text()
    shown = re.findall(r'<div class="card" id="card\d+" data-name="([^"]+)"', page)
    assert shown == sorted(shown)
    empty = config_from_dict({"output_dir": str(tmp_path / "nothing")})
    with pytest.raises(InspectInputError, match="run `gen5dask anchors` first"):
        run_inspect(empty)
    built.anchors.visual_grades = str(tmp_path / "missing.csv")
    with pytest.raises(InspectInputError, match="visual_grades"):
        run_inspect(built, force=True)


CHROMIUM = "/usr/bin/chromium"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed")
def test_gallery_renders_in_headless_chromium(built, tmp_path):
    pd.DataFrame({"name": ["L1", "L2", "L0"], "grade": ["B", "C", "not_a_lens"]}).to_csv(
        tmp_path / "grades.csv", index=False)
    built.anchors.visual_grades = str(tmp_path / "grades.csv")
    run_anchors(built)
    page = run_inspect(built)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *CHROME_FLAGS, f"--screenshot={shot}", "--window-size=1200,900",
         f"--user-data-dir={tmp_path / 'chrome1'}", f"file://{page}"],
        check=True, capture_output=True, timeout=120,
    )
    assert shot.exists() and Image.open(shot).size == (1200, 900)
    # the page script ran: cards painted with the prior grades, progress counted
    dom = subprocess.run(
        [CHROMIUM, *CHROME_FLAGS, "--dump-dom", f"--user-data-dir={tmp_path / 'chrome2'}",
         f"file://{page}"],
        check=True, capture_output=True, timeout=120, text=True,
    ).stdout
    found = re.findall(r'class="(card[^"]*)" id="card\d+" data-name="([^"]+)"', dom)
    cls = {name: c for c, name in found}
    assert "g-B" in cls["L1"] and "g-C" in cls["L2"] and "g-" not in cls["L4"]
    assert "current" in cls[re.search(r'id="card0" data-name="([^"]+)"', dom).group(1)]
    assert re.search(r"2 / 8 shown objects graded; 3 grades in total", dom)
