"""Fully asynchronous backend clients sharing one lifecycle and one error tree."""
