"""Networks that map a problem's inputs to its solution u."""
