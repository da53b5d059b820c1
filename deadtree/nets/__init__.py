"""Torch modules (training side only)."""
