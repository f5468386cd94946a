"""The command groups of `intake` (see intake/cli.py for the table of contents)."""
