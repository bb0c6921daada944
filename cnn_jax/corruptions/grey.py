"""grey corruptions (being written)."""
