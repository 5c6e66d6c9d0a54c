"""Anchor catalogues: lenscat and user lists, cross-match, tiers and coordinate validation."""
