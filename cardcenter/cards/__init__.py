"""User cards: issue, replacement, and what was last written to each."""
