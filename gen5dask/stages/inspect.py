"""``gen5dask inspect``: a self-contained HTML gallery for visually grading the anchors.

The plan validates Tier-A anchors "by visual inspection + annulus flux". This stage writes
``inspect/gallery.html`` (one file: base64 PNGs, inline CSS and JS, no external URL) showing,
per accepted anchor (``anchors.csv`` + pixels from ``anchors.zarr``): the grz colour composite
(Legacy Surveys viewer stretch), the r-band residual after the smooth lens-light model of the
visibility proxy (azimuthal median in 1-px radial bins, :mod:`gen5dask.viz`), the visibility
proxy, tier, centre S/N, coordinate-match separation and provenance. The inspector grades each
object A / B / C / not_a_lens (radio buttons or keys), grades persist in the browser's
``localStorage``, and "Export CSV" downloads ``grades.csv`` (``name,grade``) -- the file that
``anchors.visual_grades`` reads back (:func:`gen5dask.stages.anchors.select_anchors`). The page
starts from the grades already known (``anchors.visual_grades`` file, ``visual_grade`` column),
and the export keeps grades of objects not shown (e.g. those already rejected as not_a_lens), so
an export -> rerun ``anchors`` -> re-inspect cycle never silently drops a grade. Rejected
anchors are listed with their reasons.

The stage reads at most ``inspect.max_items`` stamps in-process (no Dask: a gallery is small);
it is idempotent: the page is rewritten only when its inputs or the ``inspect`` config changed,
or with ``force=True``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask.provenance import config_hash, utc_now
from gen5dask.stages.declare import stage

#: Grades the page offers, exactly as ``select_anchors`` reads them.
GRADES = ("A", "B", "C", "not_a_lens")
_TIER_ORDER = {"A": 0, "B": 1, "secondary": 2, "stress": 3}


class InspectInputError(FileNotFoundError):
    """An input of the ``inspect`` stage is missing (run ``gen5dask anchors`` first)."""


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


def normalize_grade(value: object) -> str:
    """Map a free-form grade to one of :data:`GRADES` (or ``""`` when ungraded/unknown)."""
    s = str(value).strip() if value is not None else ""
    if s.lower() in ("not_a_lens", "not a lens", "n", "no"):
        return "not_a_lens"
    return s.upper() if s.upper() in ("A", "B", "C") else ""


def read_prior_grades(cfg, anchors: pd.DataFrame) -> dict[str, str]:
    """Grades known before this inspection: ``visual_grade`` of ``anchors.csv``, overridden by
    the ``anchors.visual_grades`` file (which also holds grades of rejected objects)."""
    prior: dict[str, str] = {}
    if "visual_grade" in anchors.columns:
        for name, g in zip(
            anchors["name"], anchors["visual_grade"].astype("string").fillna(""), strict=True
        ):
            if normalize_grade(g):
                prior[str(name)] = normalize_grade(g)
    path = cfg.anchors.visual_grades
    if path:
        path = Path(str(path).replace("{output_dir}", str(cfg.output_dir)))
        if not path.exists():
            msg = f"anchors.visual_grades: {path} does not exist"
            raise InspectInputError(msg)
        grades = pd.read_csv(path, dtype=str).fillna("")
        if not {"name", "grade"} <= set(grades.columns):
            msg = f"anchors.visual_grades: {path} needs columns name,grade; has {list(grades)}"
            raise ValueError(msg)
        for name, g in zip(grades["name"], grades["grade"], strict=True):
            if normalize_grade(g):
                prior[str(name)] = normalize_grade(g)
    return prior


def order_anchors(table: pd.DataFrame, sort_by: str) -> pd.DataFrame:
    """Gallery order: ``visibility`` (descending, NaN last), ``tier`` (A, B, secondary, stress,
    then visibility) or ``name``; ties broken by name."""
    t = table.copy()
    vis = pd.to_numeric(t.get("visibility", np.nan), errors="coerce")
    t["_vis"] = np.where(np.isfinite(vis), -vis, np.inf)
    t["_name"] = t["name"].astype(str)
    if sort_by == "visibility":
        keys = ["_vis", "_name"]
    elif sort_by == "tier":
        t["_tier"] = t["tier"].map(_TIER_ORDER).fillna(len(_TIER_ORDER))
        keys = ["_tier", "_vis", "_name"]
    elif sort_by == "name":
        keys = ["_name"]
    else:
        msg = f"inspect.sort_by must be visibility, tier or name, got {sort_by!r}"
        raise ValueError(msg)
    t = t.sort_values(keys, kind="stable").reset_index(drop=True)
    return t.drop(columns=[c for c in t.columns if c.startswith("_")])


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------


def _esc(value: object) -> str:
    """HTML-escaped text; ``://`` is written as an entity so no literal URL appears in the page
    (text only: the page loads no external resource)."""
    return html.escape(str(value), quote=True).replace("://", "&#58;//")


def _json_script(obj: object) -> str:
    """JSON safe to embed in a ``<script>`` element (no ``</``, no literal ``://``)."""
    return json.dumps(obj, ensure_ascii=True).replace("</", "<\\/").replace("://", "\\u003a//")


def _fmt(value: object, spec: str, unit: str = "") -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return _esc(value) if value not in (None, "") else "&mdash;"
    return f"{v:{spec}}{unit}" if np.isfinite(v) else "&mdash;"


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "&mdash;"
    s = str(value)
    return _esc(s) if s not in ("", "nan") else "&mdash;"


def _radios(idx: str, name: str) -> str:
    opts = [
        ("A", "A", "1"),
        ("B", "B", "2"),
        ("C", "C", "3"),
        ("not_a_lens", "not a lens", "4"),
        ("", "ungraded", "0"),
    ]
    parts = []
    for value, label, key in opts:
        parts.append(
            f'<label title="key {key}"><input type="radio" name="g{idx}" value="{value}" '
            f'data-name="{_esc(name)}"> {label}</label>'
        )
    return '<div class="grades">' + "".join(parts) + "</div>"


def _b64png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


CSS = """
body{font-family:system-ui,sans-serif;margin:1em;background:#fafafa;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
#bar{position:sticky;top:0;background:#fafafa;padding:.4em 0;border-bottom:1px solid #ccc;z-index:2}
#bar button{margin-right:.5em}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:2px solid #ddd;border-radius:6px;padding:6px;width:min-content}
.card.current{border-color:#1a73e8}
.card.g-A{background:#e6f4ea}.card.g-B{background:#fef7e0}.card.g-C{background:#fce8e6}
.card.g-not_a_lens{background:#eee;opacity:.75}
.imgs{display:flex;gap:4px}
.imgs img{image-rendering:crisp-edges;image-rendering:pixelated;display:block}
.imgs figure{margin:0}.imgs figcaption{font-size:.7em;color:#666;text-align:center}
table.meta{font-size:.78em;border-collapse:collapse;margin-top:4px;width:100%}
table.meta td{padding:1px 4px;vertical-align:top}
table.meta td:first-child{color:#666;white-space:nowrap}
.prov{word-break:break-all}
.grades{font-size:.85em;margin-top:4px}.grades label{margin-right:.4em;white-space:nowrap}
table.rej{border-collapse:collapse;font-size:.85em}
table.rej td,table.rej th{border:1px solid #ccc;padding:2px 6px;text-align:left}
#csvout{width:100%;height:8em;display:none;font-family:monospace}
.note{color:#555;font-size:.9em}
"""

#: Pure CSV helpers (also run by the tests under node).
JS_CSV = r"""
const GRADES = ["A", "B", "C", "not_a_lens"];
function csvField(s) {
  s = String(s);
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}
function gradesToCsv(grades) {
  const lines = ["name,grade"];
  for (const name of Object.keys(grades).sort()) {
    if (GRADES.includes(grades[name])) lines.push(csvField(name) + "," + csvField(grades[name]));
  }
  return lines.join("\n") + "\n";
}
if (typeof module !== "undefined") module.exports = {gradesToCsv, csvField, GRADES};
"""

JS_APP = r"""
(function () {
  let grades = {};
  let fromStorage = false;
  try {
    const s = window.localStorage.getItem(STORAGE_KEY);
    if (s) { grades = JSON.parse(s); fromStorage = true; }
  } catch (e) { /* no localStorage (private mode): grades live in the page only */ }
  if (!fromStorage) grades = Object.assign({}, PRIOR);
  const cards = Array.from(document.querySelectorAll(".card"));
  let current = 0;
  function save() {
    try { window.localStorage.setItem(STORAGE_KEY, JSON.stringify(grades)); } catch (e) {}
  }
  function paint() {
    document.querySelectorAll('input[type=radio]').forEach(function (el) {
      el.checked = (grades[el.dataset.name] || "") === el.value;
    });
    cards.forEach(function (c) {
      c.classList.remove("g-A", "g-B", "g-C", "g-not_a_lens");
      const g = grades[c.dataset.name];
      if (g) c.classList.add("g-" + g);
    });
    const n = cards.filter(function (c) { return grades[c.dataset.name]; }).length;
    document.getElementById("progress").textContent =
      n + " / " + cards.length + " shown objects graded; " + Object.keys(grades).length +
      " grades in total" + (fromStorage ? " (restored from this browser)" : "");
  }
  function setGrade(name, g) {
    if (g) grades[name] = g; else delete grades[name];
    save(); paint();
  }
  function focusCard(i) {
    if (!cards.length) return;
    current = Math.max(0, Math.min(cards.length - 1, i));
    cards.forEach(function (c, k) { c.classList.toggle("current", k === current); });
    cards[current].scrollIntoView({block: "nearest"});
  }
  document.addEventListener("change", function (ev) {
    const el = ev.target;
    if (el.type === "radio" && el.dataset.name !== undefined) setGrade(el.dataset.name, el.value);
  });
  cards.forEach(function (c, k) { c.addEventListener("click", function () { focusCard(k); }); });
  const KEYS = {"1": "A", "a": "A", "2": "B", "b": "B", "3": "C", "c": "C",
                "4": "not_a_lens", "n": "not_a_lens", "0": "", "u": ""};
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.target.tagName === "TEXTAREA") return;
    const k = ev.key.toLowerCase();
    if (k === "j" || k === "arrowright" || k === "arrowdown") { focusCard(current + 1); }
    else if (k === "k" || k === "arrowleft" || k === "arrowup") { focusCard(current - 1); }
    else if (k in KEYS && cards.length) {
      setGrade(cards[current].dataset.name, KEYS[k]); focusCard(current + 1);
    } else { return; }
    ev.preventDefault();
  });
  document.getElementById("export").addEventListener("click", function () {
    const text = gradesToCsv(grades);
    const out = document.getElementById("csvout");
    out.value = text; out.style.display = "block";
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
    a.download = "grades.csv";
    document.body.appendChild(a); a.click(); a.remove();
  });
  document.getElementById("reset").addEventListener("click", function () {
    if (!window.confirm("Discard the grades saved in this browser and restore the file grades?"))
      return;
    try { window.localStorage.removeItem(STORAGE_KEY); } catch (e) {}
    grades = Object.assign({}, PRIOR); fromStorage = false; paint();
  });
  paint(); focusCard(0);
})();
"""


def _card(i: int, row: pd.Series, item: dict | None, prior: str, img_px: int | None) -> str:
    name = str(row["name"])
    size = f' width="{int(img_px)}" height="{int(img_px)}"' if img_px else ""
    imgs = ""
    if item is not None:
        imgs = (
            f'<div class="imgs"><figure><img{size} alt="grz composite of '
            f'{_esc(name)}" src="{_b64png(item["png_bytes"])}"><figcaption>grz</figcaption>'
            "</figure>"
        )
        if "residual_png_bytes" in item:
            imgs += (
                f'<figure><img{size} alt="r-band residual of {_esc(name)}" '
                f'src="{_b64png(item["residual_png_bytes"])}"><figcaption>r &minus; azimuthal '
                "median</figcaption></figure>"
            )
        imgs += "</div>"
    fields = [
        ("name", _text(name)),
        ("sample", _text(row.get("sample"))),
        ("kind / tier", f"{_text(row.get('kind'))} / <b>{_text(row.get('tier'))}</b>"),
        ("visibility", _fmt(row.get("visibility"), ".2f")),
        ("centre S/N", _fmt(row.get("centre_snr"), ".1f")),
        (
            "match sep",
            _fmt(row.get("match_sep_arcsec"), ".2f", "&Prime;")
            + (
                f" ({_text(row.get('reference_name'))})"
                if _text(row.get("reference_name")) != "&mdash;"
                else ""
            ),
        ),
        ("RA, Dec", f"{_fmt(row.get('ra'), '.5f')}, {_fmt(row.get('dec'), '+.5f')}"),
        ("cat. grade", _text(row.get("grade"))),
        ("origin", _text(row.get("origin"))),
        ("theta_E", _fmt(row.get("theta_e"), ".2f", "&Prime;")),
        ("reference", _text(row.get("ref"))),
        ("provenance", f'<span class="prov">{_text(row.get("provenance"))}</span>'),
        ("prior grade", _text(prior) if prior else "&mdash;"),
    ]
    meta = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in fields)
    return (
        f'<div class="card" id="card{i}" data-name="{_esc(name)}">{imgs}'
        f'<table class="meta">{meta}</table>{_radios(str(i), name)}</div>'
    )


def gallery_html(
    shown: pd.DataFrame,
    items: list[dict],
    *,
    hidden: pd.DataFrame,
    rejected: pd.DataFrame,
    prior: dict[str, str],
    storage_key: str,
    title: str,
    notes: list[str],
    img_px: int | None = None,
) -> str:
    """The gallery page (self-contained HTML text).

    Parameters
    ----------
    shown : pandas.DataFrame
        ``anchors.csv`` rows shown with stamps, in display order.
    items : list of dict
        :func:`gen5dask.viz.stamp_gallery_items` output aligned with ``shown``.
    hidden : pandas.DataFrame
        Accepted anchors beyond ``inspect.max_items`` (listed by name only).
    rejected : pandas.DataFrame
        ``anchors_rejected.csv`` (name, ra, dec, reason).
    prior : dict
        Grades known before this inspection, name -> grade; seed of the page's state and carried
        into the export.
    storage_key : str
        ``localStorage`` key of this run's grades.
    title : str
        Page title.
    notes : list of str
        Plain-text lines shown under the title (provenance of the page).
    img_px : int, optional
        Displayed stamp size, CSS pixels: PNGs are scaled in the browser without smoothing
        (``image-rendering: pixelated``), so they can be embedded at native resolution. Also
        fixes the card width. Default: the PNGs' own size.
    """
    if len(items) != len(shown):
        msg = f"gallery_html: {len(items)} stamp items for {len(shown)} rows"
        raise ValueError(msg)
    cards = "\n".join(
        _card(i, row, item, prior.get(str(row["name"]), ""), img_px)
        for i, ((_, row), item) in enumerate(zip(shown.iterrows(), items, strict=True))
    )
    hidden_html = ""
    if len(hidden):
        hidden_html = (
            f"<h2>Not shown ({len(hidden)}; raise <code>inspect.max_items</code>)</h2><p>"
            + ", ".join(_esc(n) for n in hidden["name"])
            + "</p>"
        )
    rej_rows = []
    for i, (_, r) in enumerate(rejected.iterrows()):
        name = str(r["name"])
        regrade = ""
        if "visual inspection" in str(r.get("reason", "")) or name in prior:
            regrade = _radios(f"r{i}", name)
        rej_rows.append(
            f"<tr><td>{_esc(name)}</td><td>{_fmt(r.get('ra'), '.5f')}</td>"
            f"<td>{_fmt(r.get('dec'), '+.5f')}</td><td>{_text(r.get('reason'))}</td>"
            f"<td>{regrade}</td></tr>"
        )
    rej_html = (
        f"<h2>Rejected anchors ({len(rejected)})</h2>"
        '<p class="note">Never evaluated. Objects rejected by visual inspection can be re-graded '
        "here (their grade is kept in the export).</p>"
        '<table class="rej"><tr><th>name</th><th>RA</th><th>Dec</th><th>reason</th>'
        "<th>grade</th></tr>" + "".join(rej_rows) + "</table>"
    )
    width_css = f".card{{width:{max(2 * int(img_px) + 16, 240)}px}}" if img_px else ""
    note_html = "".join(f'<p class="note">{_esc(n)}</p>' for n in notes)
    help_html = (
        '<p class="note">Grade: click a card then keys <b>1</b>/<b>a</b> = A, <b>2</b>/<b>b</b> = '
        "B, <b>3</b>/<b>c</b> = C, <b>4</b>/<b>n</b> = not a lens, <b>0</b>/<b>u</b> = ungraded "
        "(the next card is selected); <b>j</b>/<b>k</b> or arrows move. Grades are saved in this "
        "browser. <b>Export CSV</b> downloads <code>grades.csv</code> (name,grade) with every "
        "grade, including those of objects not shown; set <code>anchors.visual_grades</code> to "
        "it and rerun <code>gen5dask anchors</code> (A/B/C set the tier, not_a_lens rejects).</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{CSS}{width_css}</style></head><body>"
        f"<h1>{_esc(title)}</h1>{note_html}"
        '<div id="bar"><button id="export" type="button">Export CSV</button>'
        '<button id="reset" type="button">Reset to file grades</button>'
        '<span id="progress"></span><textarea id="csvout" readonly></textarea></div>'
        f"{help_html}<h2>Anchors ({len(shown)} shown)</h2>"
        f'<div class="grid">{cards}</div>{hidden_html}{rej_html}'
        f'<script id="gen5dask-csv">{JS_CSV}</script>'
        f"<script>const STORAGE_KEY = {_json_script(storage_key)};\n"
        f"const PRIOR = {_json_script(prior)};\n{JS_APP}</script>"
        "</body></html>\n"
    )


# ---------------------------------------------------------------------------------------------
# stage
# ---------------------------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else ""


@stage(
    "inspect",
    reads=("inspect", "anchors.visual_grades", "pixscale"),
    after=("anchors",),
)
def run_inspect(cfg, client=None, *, force: bool = False) -> Path:
    """Write the anchor inspection gallery; returns ``cfg.layout.inspect_dir / "gallery.html"``.

    Parameters
    ----------
    cfg : gen5dask.config.Config
        Uses ``inspect`` (max_items, scale, sort_by, kinds, stretch, q, residual_nsigma) and
        ``anchors.visual_grades`` (prior grades).
    client : distributed.Client, optional
        Unused: the gallery reads at most ``inspect.max_items`` stamps in-process.
    force : bool
        Rewrite the page even when its inputs and config are unchanged.

    Raises
    ------
    InspectInputError
        ``anchors.csv`` or ``anchors.zarr`` is missing.
    """
    from gen5dask.store import fingerprint, store_geometry
    from gen5dask.viz import stamp_gallery_items

    del client
    icfg = cfg.inspect
    lay = cfg.layout
    for need in (lay.anchors_csv, lay.anchors):
        if not need.exists():
            msg = f"inspect: {need} not found; run `gen5dask anchors` first"
            raise InspectInputError(msg)
    out_dir = lay.inspect_dir
    out = out_dir / "gallery.html"
    meta_path = out_dir / "gallery.json"
    vg = cfg.anchors.visual_grades
    vg_path = Path(str(vg).replace("{output_dir}", str(cfg.output_dir))) if vg else None
    key = config_hash(
        {
            "inspect": icfg.model_dump(mode="json"),
            "anchors_store": fingerprint(lay.anchors),
            "anchors_csv": _file_digest(lay.anchors_csv),
            "rejected_csv": _file_digest(lay.anchors_rejected_csv),
            "visual_grades": _file_digest(vg_path) if vg_path else "",
        }
    )
    if not force and out.exists() and meta_path.exists():
        try:
            if json.loads(meta_path.read_text()).get("inputs_hash") == key:
                return out
        except (OSError, ValueError):
            pass
    anchors = pd.read_csv(lay.anchors_csv, keep_default_na=True)
    rejected = (
        pd.read_csv(lay.anchors_rejected_csv)
        if lay.anchors_rejected_csv.exists()
        else pd.DataFrame(columns=["name", "ra", "dec", "reason"])
    )
    for col in ("name", "sample"):
        if col not in anchors.columns:
            msg = f"inspect: {lay.anchors_csv} has no column {col!r}"
            raise ValueError(msg)
    anchors["name"] = anchors["name"].astype(str)
    prior = read_prior_grades(cfg, anchors)
    table = anchors[anchors["kind"].isin(icfg.kinds)] if "kind" in anchors else anchors
    table = order_anchors(table, icfg.sort_by)
    shown = table.iloc[: icfg.max_items].reset_index(drop=True)
    hidden = table.iloc[icfg.max_items :].reset_index(drop=True)
    items = stamp_gallery_items(
        lay.anchors,
        shown["sample"].to_numpy(np.int64),
        max_items=icfg.max_items,
        names=shown["name"].tolist(),
        scale=1,  # native-resolution PNGs, upscaled by the browser (img_px): ~40% smaller page
        stretch=icfg.stretch,
        Q=icfg.q,
        residual=True,
        residual_nsigma=icfg.residual_nsigma,
    )
    stamp = int(store_geometry(lay.anchors)["stamp_size"])
    n_tier = shown["tier"].value_counts().to_dict() if "tier" in shown else {}
    notes = [
        f"{len(anchors)} accepted anchors, {len(rejected)} rejected; shown by tier: "
        f"{', '.join(f'{k} {v}' for k, v in n_tier.items()) or 'none'}; ordered by "
        f"{icfg.sort_by}.",
        "Left: grz composite (Legacy Surveys viewer asinh stretch, z->R r->G g->B). Right: r-band "
        "cutout minus its azimuthal median in 1-px radial bins (the visibility proxy's smooth "
        f"lens-light model), grey scale +-{icfg.residual_nsigma:g} outer sigma. Visibility: ring "
        "energy in 4 <= r < 16 px of that residual / (1.4826 MAD(outer) sqrt(N)).",
        f"Generated {utc_now()} from {lay.anchors_csv.name}, {lay.anchors.name} (config "
        f"{config_hash(icfg)}).",
    ]
    page = gallery_html(
        shown,
        items,
        hidden=hidden,
        rejected=rejected,
        prior=prior,
        storage_key=f"gen5dask-inspect:{Path(cfg.output_dir).resolve()}",
        title="gen5dask anchor inspection",
        notes=notes,
        img_px=stamp * icfg.scale,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    meta_path.write_text(
        json.dumps(
            {
                "inputs_hash": key,
                "n_shown": len(shown),
                "n_hidden": len(hidden),
                "n_rejected": len(rejected),
                "n_prior_grades": len(prior),
                "created": utc_now(),
            },
            indent=1,
        )
    )
    print(
        f"inspect: {len(shown)} anchors shown ({len(hidden)} not shown), {len(rejected)} "
        f"rejected -> {out}",
        file=sys.stderr,
    )
    return out


__all__ = [
    "GRADES",
    "InspectInputError",
    "gallery_html",
    "normalize_grade",
    "order_anchors",
    "read_prior_grades",
    "run_inspect",
]
