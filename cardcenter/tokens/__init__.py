"""STS tokens for keypad meters: vending, key changes, engineering tokens, reprints."""
