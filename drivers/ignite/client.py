"""Placeholder while the client is assembled."""
class Client:  # noqa
    pass
