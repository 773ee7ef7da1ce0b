"""The HTTP transport under the Tornado application: which requests are read, and when."""
