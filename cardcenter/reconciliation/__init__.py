"""Reading back what meters wrote to cards and reconciling it with the books."""
