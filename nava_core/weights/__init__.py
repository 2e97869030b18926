"""Checkpoint layouts, converters, weight sets and the tiny weight-set builder."""
