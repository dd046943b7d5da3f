"""Customers, their categories and their meters."""
