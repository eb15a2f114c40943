"""Tests of the GitHub-facing layer (job log, file commands, summary, check runs)."""
