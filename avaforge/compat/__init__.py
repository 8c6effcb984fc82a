"""Adapters for known defects of pinned third-party packages (each says which and why)."""
