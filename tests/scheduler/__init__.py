"""Tests on a real batch scheduler (a local single-node SLURM)."""
