"""The prepaid card meter model (issue 3): metering, tariffs, relay, card and keypad."""
