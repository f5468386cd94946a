"""Entitlement rules: one small named rule per condition, run in the order of chain.py."""
