"""Population-based training: decisions (decisions.py)."""
