"""Typed, validated configuration from YAML with ``--set a.b=c`` overrides.

An unknown or mistyped key is an error naming the key and the file. Relative paths in the
config are relative to the current working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from gen5dask.config.ablation import AblationConfig
from gen5dask.config.anchors import AnchorsConfig
from gen5dask.config.audit import AuditConfig
from gen5dask.config.base import Section
from gen5dask.config.calibrate import CalibrateConfig
from gen5dask.config.cluster import ClusterConfig
from gen5dask.config.evaluate import EvaluateConfig
from gen5dask.config.fetch import FetchConfig
from gen5dask.config.gates import GatesConfig
from gen5dask.config.hardneg import HardnegConfig
from gen5dask.config.ingest import IngestConfig
from gen5dask.config.inject import InjectConfig
from gen5dask.config.inspect import InspectConfig
from gen5dask.config.report import ReportConfig
from gen5dask.config.score import ScoreConfig
from gen5dask.config.simulate import SimulateConfig
from gen5dask.config.split import SplitConfig
from gen5dask.config.train import TrainConfig
from gen5dask.paths import OutputLayout


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and the file."""


class Config(Section):
    """The whole gen5dask configuration (shared keys plus one section per stage)."""

    output_dir: str = "output"
    """Directory for every artifact of a run (see ``gen5dask.paths.OutputLayout``)."""
    seed: int = Field(12345, ge=0, lt=2**63, strict=True)
    """Run seed (0 <= seed < 2**63): every random draw is keyed by (seed, stage, sample id, ...)."""
    chunk_size: int = Field(256, gt=0)
    """Samples per Zarr chunk (and per Dask task)."""
    stamp_size: int = Field(64, gt=7)
    """Cutout side, pixels."""
    bands: list[str] = Field(default_factory=lambda: ["g", "r", "z"])
    """Band set of every store."""
    pixscale: float = 0.262
    """Pixel scale, arcsec/pixel (DR10)."""
    data: Literal["mock", "ingested"] = "mock"
    """``mock``: ``run`` starts by simulating the mock DR10 survey; ``ingested``: ``run`` skips
    ``simulate`` and works on stores made by ``fetch`` + ``ingest`` (see configs/dr10.yaml)."""
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    anchors: AnchorsConfig = Field(default_factory=AnchorsConfig)
    inspect: InspectConfig = Field(default_factory=InspectConfig)
    hardneg: HardnegConfig = Field(default_factory=HardnegConfig)
    calibrate: CalibrateConfig = Field(default_factory=CalibrateConfig)
    inject: InjectConfig = Field(default_factory=InjectConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    ablation: AblationConfig = Field(default_factory=AblationConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="after")
    def _arm_replicates(self):
        over = [a.name for a in self.ablation.arms
                if a.replicates is not None and a.replicates > self.inject.replicates]
        if over:
            msg = (f"ablation.arms: {over} ask for more injection replicates than "
                   f"inject.replicates ({self.inject.replicates}) makes")
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _crop(self):
        if self.train.crop is not None and self.train.crop > self.stamp_size:
            msg = f"train.crop ({self.train.crop}) must be <= stamp_size ({self.stamp_size})"
            raise ValueError(msg)
        return self

    @property
    def layout(self) -> OutputLayout:
        """Artifact paths under ``output_dir``."""
        return OutputLayout(self.output_dir)


def _set_dotted(tree: dict, dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    if not all(keys):
        msg = f"{source}: invalid key {dotted!r}"
        raise ConfigError(msg)
    node = tree
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            msg = f"{source}: cannot set {dotted!r}: {k!r} is not a section"
            raise ConfigError(msg)
        node = nxt
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``'a.b=c'`` -> ``('a.b', value)`` with the value typed by YAML (``3``, ``true``, ``[x]``)."""
    if "=" not in text:
        msg = f"--set {text!r}: expected KEY=VALUE (e.g. inject.replicates=2)"
        raise ConfigError(msg)
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        msg = f"--set {text!r}: value is not valid YAML: {exc}"
        raise ConfigError(msg) from None
    return key.strip(), value


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {key}: {err['msg']}")
    return f"invalid config {source}:\n" + "\n".join(lines)


def config_from_dict(data: dict, *, source: str = "<dict>", overrides=()) -> Config:
    """Build a validated :class:`Config` from a mapping plus ``KEY=VALUE`` overrides."""
    tree = dict(data or {})
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        _set_dotted(tree, key, value, f"--set {key}")
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | Path | None = None, overrides=()) -> Config:
    """Load a YAML config (``None`` = defaults) and apply ``--set`` overrides."""
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.exists():
            msg = f"config file {p} does not exist"
            raise ConfigError(msg)
        if not p.is_file():
            msg = f"config file {p} is not a regular file"
            raise ConfigError(msg)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            msg = f"config file {p} is not valid YAML: {exc}"
            raise ConfigError(msg) from None
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"config file {p} cannot be read as UTF-8 text: {exc}"
            raise ConfigError(msg) from None
        if not isinstance(data, dict):
            msg = f"config file {p}: top level must be a mapping, got {type(data).__name__}"
            raise ConfigError(msg)
    return config_from_dict(data, source=source, overrides=overrides)


__all__ = ["Config", "ConfigError", "config_from_dict", "load_config", "parse_override"]
