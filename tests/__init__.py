"""Test suite of saferelay."""
