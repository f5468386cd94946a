"""Helpers the tests share: settings and a fixed instant, databases, test data, servers on
loopback, the fake Bot API, the `intake` command, the staff pages. Fixtures live in conftest.py."""
