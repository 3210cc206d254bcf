"""Concrete events, one module per producing service."""
