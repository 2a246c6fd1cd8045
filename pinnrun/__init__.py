"""pinnrun: a command-line experiment runner for physics-informed neural networks."""

__version__ = "0.1.0"
