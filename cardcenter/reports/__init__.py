"""Reports: takings and cash-up, consumption, non-buying customers, low credit, findings."""
