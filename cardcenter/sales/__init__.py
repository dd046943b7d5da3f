"""Sales to card meters: quote, pending, written, delivered; reversal; the journal."""
