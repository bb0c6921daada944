"""colour corruptions (being written)."""
