"""The virtual CPU card: card operating system, image file, vpcd bridge."""
