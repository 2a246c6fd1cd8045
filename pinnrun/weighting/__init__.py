"""Loss-weighting schemes: how per-term, per-point residuals become one scalar loss."""
