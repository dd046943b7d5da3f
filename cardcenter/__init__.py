"""The billing centre (issue 4): accounts, cards, sales, reconciliation, reports."""
