"""The card API: whole-card operations in as few APDUs as the layout allows.

Callers (the billing centre, the meter model, the CLI) work in files and
values; this package turns them into SELECT / READ / UPDATE exchanges with
the write protocol of docs/card.md section 5 that survives a pulled card.
"""
