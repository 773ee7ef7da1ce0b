"""The service on simulated hosts behind nginx: ``python -m stack hosts``, against real namespaces."""
