"""The hand-over to the provider's Znuny/OTRS (docs/ZNUNY.md)."""
