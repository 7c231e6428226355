"""From what a user names to a token store: sources, tables, cleaning, preparation (no PyTorch)."""
