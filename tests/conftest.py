"""Suite-wide pytest setup: markers registered here (pyproject's list is owned elsewhere)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "scheduler: runs on a real single-node SLURM started by tests/scheduler/slurm_local.py "
        "(skips, saying why, where it cannot start: not root, packages missing)",
    )
