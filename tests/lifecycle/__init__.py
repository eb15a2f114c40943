"""End-to-end lifecycle tests of the run queue: the CLI, both stores, the database rules."""
