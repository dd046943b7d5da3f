"""Operators of the centre and their roles."""
