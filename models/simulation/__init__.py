"""Synthetic children's social care system on the real geography (ground truth for tests)."""
