"""Optimizers as a list of phases (Adam, then L-BFGS) that the training loop walks."""
