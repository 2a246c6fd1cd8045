"""Uniform weighting: L = sum_i c_i mean_j r_ij^2 with the problem's fixed term constants."""

from __future__ import annotations

from pinnrun.weighting.base import Weighting


class Uniform(Weighting):
    """The plain PINN loss of Raissi et al. (2019); the baseline every scheme is compared with."""
