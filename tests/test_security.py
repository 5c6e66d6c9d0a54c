"""Security invariants of the source tree: safe deserialisation only."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("gen5dask", "scripts") for p in (ROOT / d).rglob("*.py")]


def _calls(pattern):
    hits = []
    for path in SOURCES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line) and not line.lstrip().startswith("#"):
                hits.append((path.relative_to(ROOT), n, line.strip()))
    return hits


def test_torch_load_always_weights_only():
    for path in SOURCES:
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 200]
            assert "weights_only=True" in call, f"{path}: torch.load without weights_only=True"


def test_yaml_safe_load_only():
    assert _calls(r"yaml\.(load|unsafe_load|full_load)\(") == []
    assert _calls(r"yaml\.Loader|yaml\.UnsafeLoader") == []


def test_no_pickle_of_user_input():
    assert _calls(r"pickle\.loads?\(|cloudpickle\.loads?\(|np\.load\(.*allow_pickle=True") == []


def test_no_shell_injection():
    assert _calls(r"shell=True") == []
    assert _calls(r"os\.system\(") == []
