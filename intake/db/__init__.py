"""Persistence: schema, engine set-up, migrations and queries."""
