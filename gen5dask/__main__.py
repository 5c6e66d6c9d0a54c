"""``python -m gen5dask`` entry point."""

from gen5dask.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
