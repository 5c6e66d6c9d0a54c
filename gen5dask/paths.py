"""Names of every artifact under ``output_dir`` — the one place stages agree on file layout.

Each stage reads its inputs and writes its outputs through these helpers, so a reader of the
output directory (or of the report) can find any artifact from its name alone.
"""

from __future__ import annotations

from pathlib import Path


class OutputLayout:
    """Paths of the artifacts of one run, rooted at ``output_dir``."""

    def __init__(self, output_dir: str | Path):
        self.root = Path(output_dir)

    # --- stores -------------------------------------------------------------------------------
    @property
    def survey(self) -> Path:
        """Mock survey store (kinds host, anchor, stress, hard_negative, ring)."""
        return self.root / "survey.zarr"

    @property
    def hosts(self) -> Path:
        """Ingested real host cutouts (``ingest.out`` default)."""
        return self.root / "hosts.zarr"

    @property
    def anchors(self) -> Path:
        """Accepted anchors (kinds anchor, stress) — never used for training."""
        return self.root / "anchors.zarr"

    @property
    def hardneg(self) -> Path:
        """Hard negatives (kind hard_negative; ``eval_only`` marks the evaluation slice)."""
        return self.root / "hardneg.zarr"

    @property
    def train(self) -> Path:
        """Injections (both brightness modes), controls and null injections."""
        return self.root / "train.zarr"

    def scores(self, arm: str) -> Path:
        """Scores table of one ablation arm (one row per scored sample)."""
        return self.root / "scores" / f"{arm}.zarr"

    # --- tables and json ------------------------------------------------------------------------
    @property
    def anchors_csv(self) -> Path:
        return self.root / "anchors.csv"

    @property
    def anchors_rejected_csv(self) -> Path:
        return self.root / "anchors_rejected.csv"

    @property
    def calibration_json(self) -> Path:
        return self.root / "calibration.json"

    @property
    def calibration_dir(self) -> Path:
        return self.root / "calibration"

    @property
    def split_dir(self) -> Path:
        """regions.json (region -> split, bricks), summary.json (fractions, KS), region_map.png."""
        return self.root / "split"

    @property
    def gates_json(self) -> Path:
        return self.root / "gates.json"

    @property
    def audit_dir(self) -> Path:
        """audit.json (all diagnostics) and audit figures."""
        return self.root / "audit"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model(self, arm: str) -> Path:
        return self.models_dir / f"{arm}.pt"

    def train_log(self, arm: str) -> Path:
        """Per-epoch training log (JSON lines: epoch, train_loss, val metrics, lr, throughput)."""
        return self.models_dir / f"{arm}_log.jsonl"

    def checkpoint_dir(self, arm: str) -> Path:
        return self.models_dir / f"{arm}_checkpoints"

    @property
    def inspect_dir(self) -> Path:
        """Visual-inspection gallery (gallery.html) and exported grades."""
        return self.root / "inspect"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def metrics_json(self) -> Path:
        return self.report_dir / "metrics.json"

    @property
    def report_html(self) -> Path:
        return self.report_dir / "index.html"

    @property
    def state_dir(self) -> Path:
        """Stage completion records (``<stage>.json`` with the stage's config hash)."""
        return self.root / ".gen5dask"


__all__ = ["OutputLayout"]
