"""Helpers every test package shares: the fault proxy in front of real servers."""
