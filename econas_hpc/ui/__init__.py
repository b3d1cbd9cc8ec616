"""ui layer (see docs/interfaces.md)."""
