"""Tests of the template itself (bakes, hooks, the repo files); run with `make test`."""
