"""Request handlers; each receives the process's Context through ``initialize()``."""
