"""Tariffs: flat, stepped, time-of-use and combined, in versions with activation times."""
