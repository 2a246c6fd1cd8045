"""Point sets per loss term, each point with a stable identity."""
