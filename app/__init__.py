"""The Tornado service: settings, one client per backend, handlers, the local stack."""
