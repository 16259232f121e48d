"""Logging interval and random seed, shared by every benchmark config."""

log_config = dict(interval=50)
seed = 0
