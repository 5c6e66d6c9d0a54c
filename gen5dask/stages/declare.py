"""What a stage reads, declared once where the stage is defined, and enforced.

Every stage function is decorated with :func:`stage`::

    @stage("inject", reads=("inject", "calibrate.target", "seed", ...), after=("calibrate",))
    def run_inject(cfg, client=None, *, force=False): ...

The decorator records a :class:`StageDecl` and calls the function with a :class:`ConfigView` of
the run config that exposes only the declared keys: reading anything else raises
:class:`UndeclaredConfigError` naming the stage and the key, so a declaration cannot drift from
what the code reads. ``gen5dask run`` (:mod:`gen5dask.stages.run`) derives the whole plan --
order, fingerprints, what reruns after a change -- from these declarations.

A declared key is a top-level key (``seed``), a whole section (``inject``) or one key of a
section (``calibrate.bins``). ``after`` names the upstream stages whose artifacts the stage
reads (their fingerprints enter its own). ``output_dir``, ``layout`` (artifact paths) and
``cluster`` (how to execute, never what to compute) are readable by every stage and are not part
of any fingerprint.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: readable by every stage; never fingerprinted (they locate or execute, they do not compute).
ALWAYS_READABLE = ("output_dir", "layout", "cluster")


class UndeclaredConfigError(RuntimeError):
    """A stage read a config key that its :func:`stage` declaration does not list.

    Not an ``AttributeError``, so ``getattr(cfg.section, key, default)`` cannot swallow it."""


@dataclass(frozen=True)
class StageDecl:
    """The declaration of one stage: its name, config keys read and upstream stages.

    ``reads_when`` lists conditional reads ``(key, value, keys)``: the stage also reads
    ``keys`` when config ``key`` (itself in ``reads``) equals ``value`` -- e.g. ``simulate``
    reads the injection laws only when ``simulate.anchor_model`` is ``injection``.
    """

    name: str
    reads: tuple[str, ...]
    after: tuple[str, ...] = ()
    reads_when: tuple[tuple[str, object, tuple[str, ...]], ...] = ()

    def for_config(self, cfg: Any) -> StageDecl:
        """This declaration with the conditional reads that hold for ``cfg`` made plain."""
        if not self.reads_when:
            return self
        extra: list[str] = []
        for key, value, keys in self.reads_when:
            if config_value(cfg, key) == value:
                extra += [k for k in keys if k not in self.reads and k not in extra]
        return StageDecl(self.name, self.reads + tuple(extra), self.after)

    def covers(self, key: str) -> bool:
        """True when ``key`` (dotted) is declared, itself or through an enclosing section."""
        parts = key.split(".")
        return any(".".join(parts[: i + 1]) in self.reads for i in range(len(parts)))


#: every declared stage, by name (filled as stage modules are imported).
DECLARATIONS: dict[str, StageDecl] = {}


class ConfigView:
    """Read-only view of a config restricted to a stage's declared keys.

    Attribute access returns the real value for a declared key or section, a narrower view for
    a section of which only some keys are declared, and raises :class:`UndeclaredConfigError`
    otherwise. Views pickle (Dask tasks may receive them).
    """

    __slots__ = ("_decl", "_obj", "_prefix")

    def __init__(self, obj: Any, decl: StageDecl, prefix: str = ""):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_decl", decl)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        decl, prefix = self._decl, self._prefix
        key = f"{prefix}{name}"
        if (not prefix and name in ALWAYS_READABLE) or decl.covers(key):
            return getattr(self._obj, name)
        if any(r.startswith(key + ".") for r in decl.reads):
            return ConfigView(getattr(self._obj, name), decl, key + ".")
        msg = (
            f"stage {decl.name!r} reads config key {key!r}, which its declaration does not "
            f"list (reads: {', '.join(decl.reads)}); add it to the @stage(...) declaration"
        )
        raise UndeclaredConfigError(msg)

    def __setattr__(self, name: str, value: Any) -> None:
        msg = f"config view of stage {self._decl.name!r} is read-only"
        raise AttributeError(msg)

    def __repr__(self) -> str:
        return f"ConfigView({self._decl.name!r}, prefix={self._prefix!r})"

    def model_dump(self, **kwargs) -> dict:
        """The declared part of the config as a nested dict (what provenance records: the
        values this stage read), like pydantic's ``model_dump``."""
        full = self._obj.model_dump(**kwargs)
        out: dict = {}
        keys = [r[len(self._prefix):] for r in self._decl.reads if r.startswith(self._prefix)]
        if not self._prefix:
            keys.append("output_dir")
        for key in keys:
            src, dst = full, out
            parts = key.split(".")
            for part in parts[:-1]:
                src = src[part]
                dst = dst.setdefault(part, {})
            dst[parts[-1]] = src[parts[-1]]
        return out

    def __getstate__(self):
        return (self._obj, self._decl, self._prefix)

    def __setstate__(self, state) -> None:
        obj, decl, prefix = state
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_decl", decl)
        object.__setattr__(self, "_prefix", prefix)


def full_config(cfg: Any) -> Any:
    """The underlying config of a view (the config itself otherwise)."""
    while isinstance(cfg, ConfigView):
        cfg = object.__getattribute__(cfg, "_obj")
    return cfg


def view_for(cfg: Any, decl: StageDecl) -> ConfigView:
    """The view of ``cfg`` that stage ``decl`` may read.

    ``cfg`` may itself be a view (a stage calling another stage, e.g. ``ablation`` calling
    ``train``): then every key the callee reads must be readable through the caller's view.
    """
    if isinstance(cfg, ConfigView):
        caller = object.__getattribute__(cfg, "_decl")
        if object.__getattribute__(cfg, "_prefix"):
            msg = f"stage {decl.name!r} called with a section view, not a run config"
            raise TypeError(msg)
        missing = [k for k in decl.reads if not caller.covers(k)]
        if missing:
            msg = (
                f"stage {caller.name!r} calls stage {decl.name!r}, which reads {missing} that "
                f"{caller.name!r} does not declare"
            )
            raise UndeclaredConfigError(msg)
    return ConfigView(full_config(cfg), decl)


def stage(
    name: str,
    *,
    reads: Iterable[str],
    after: Iterable[str] = (),
    reads_when: Iterable[tuple[str, object, Iterable[str]]] = (),
) -> Callable:
    """Declare a stage function (see the module docstring); registers it in
    :data:`DECLARATIONS` and makes it receive a :class:`ConfigView`."""
    decl = StageDecl(
        name, tuple(reads), tuple(after),
        tuple((k, v, tuple(keys)) for k, v, keys in reads_when),
    )
    bad = [k for k in decl.reads if not k or k.split(".")[0] in ALWAYS_READABLE]
    bad += [k for k, _, _ in decl.reads_when if not decl.covers(k)]
    if bad:
        msg = f"stage {name!r}: keys {bad} need no declaration (always readable) or are empty"
        raise ValueError(msg)

    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(cfg, client=None, *, force: bool = False):
            return func(view_for(cfg, decl.for_config(full_config(cfg))), client=client,
                        force=force)

        run.declaration = decl  # type: ignore[attr-defined]
        DECLARATIONS[name] = decl
        return run

    return wrap


def config_value(cfg: Any, key: str) -> Any:
    """JSON value of a dotted ``key`` of a config (for fingerprints)."""
    node = full_config(cfg).model_dump(mode="json")
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            msg = f"declared config key {key!r} does not exist in the config"
            raise KeyError(msg)
        node = node[part]
    return node


__all__ = [
    "ALWAYS_READABLE",
    "DECLARATIONS",
    "ConfigView",
    "StageDecl",
    "UndeclaredConfigError",
    "config_value",
    "full_config",
    "stage",
    "view_for",
]
