"""The config reference (every key, type, default and meaning) generated from the models.

``gen5dask config --reference`` prints it; ``docs/config-reference.md`` is this text, and a test
keeps the two identical so the documentation cannot drift from the code.
"""

from __future__ import annotations

import json
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def _type_name(annotation) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    return (text.replace("typing.", "").replace("NoneType", "None")
            .replace("gen5dask.config.", "").replace("<class '", "").replace("'>", ""))


def _is_model(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _default(field) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "required"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
        value = [v.model_dump(mode="json") for v in value]
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _rows(model: type[BaseModel], prefix: str, out: list[str], nested: list) -> None:
    for name, field in model.model_fields.items():
        ann = field.annotation
        key = f"{prefix}{name}"
        if _is_model(ann):
            nested.append((key, ann))
            continue
        args = typing.get_args(ann)
        for arg in args:
            if _is_model(arg):
                nested.append((f"{key}[]", arg))
        desc = " ".join((field.description or "").split())
        out.append(f"| `{key}` | `{_type_name(ann)}` | `{_default(field)}` | {desc} |")


def reference_markdown() -> str:
    """Markdown tables of every config section."""
    from gen5dask.config import Config

    lines = ["# Configuration reference", "",
             "Generated from the config models (`gen5dask config --reference`). Unknown keys",
             "are errors; override any key with `--set section.key=value` (typed by YAML).", ""]
    queue: list = [("", Config)]
    seen = set()
    while queue:
        prefix, model = queue.pop(0)
        if (prefix, model) in seen:
            continue
        seen.add((prefix, model))
        title = prefix or "top level"
        lines += [f"## `{title}`", ""]
        doc = " ".join((model.__doc__ or "").split())
        if doc:
            lines += [doc, ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        nested: list = []
        _rows(model, f"{prefix}." if prefix else "", lines, nested)
        lines.append("")
        queue.extend(nested)
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["reference_markdown"]
