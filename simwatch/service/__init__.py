"""The daemon: task group, ingest, evaluation clock, checkpoints, and the wiring."""
