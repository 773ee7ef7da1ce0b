"""The cache's remote tiers: one interface (``base.RemoteTier``), one module per store."""
