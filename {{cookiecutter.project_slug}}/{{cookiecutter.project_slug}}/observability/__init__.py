"""Seeing the service run: request ids and access lines, logs, metrics, traces and the loop watchdog."""
