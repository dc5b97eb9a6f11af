"""Cluster state and behaviour, with no HTTP (moto's models.py split)."""
