"""Test suite of saferelay (a package so that ``from tests.fakebot import ...`` works)."""
