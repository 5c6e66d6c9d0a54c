"""README contract: CI runs exactly README's test command and installs the same way."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_blocks():
    text = (ROOT / "README.md").read_text()
    blocks, inside, cur = [], False, []
    for line in text.splitlines():
        if line.startswith("```"):
            if inside:
                blocks.append("\n".join(cur))
                cur = []
            inside = not inside
        elif inside:
            cur.append(line)
    return text, blocks


def test_ci_runs_readme_test_command_verbatim():
    text, _ = _readme_blocks()
    after = text.split("<!-- test-command -->", 1)[1]
    command = after.split("```bash", 1)[1].split("```", 1)[0].strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in [line.strip() for line in ci]


def test_ci_installs_like_quick_start():
    _, blocks = _readme_blocks()
    quick = blocks[0]
    assert "-c constraints-cpu.txt" in quick and "gen5dask run configs/demo.yaml" in quick
    ci = (ROOT / ".ci" / "run").read_text()
    assert '-c constraints-cpu.txt -e ".[dev]"' in ci
    assert "torch==2.13.0" in (ROOT / "constraints-cpu.txt").read_text()
