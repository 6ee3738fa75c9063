"""Evaluation of trained checkpoints beyond their own test split (cross-dataset tables)."""
