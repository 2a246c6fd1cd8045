"""scripts/profile_step.py's split of a step into matrix products, other kernels and the rest."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from profile_step import MATMUL_TF, MATMUL_TORCH, split  # noqa: E402


def test_a_profile_is_split_per_step_by_kernel_kind() -> None:
    """Three steps: 30 ms of mm and addmm, 12 ms of other kernels; the profiled step took 20 ms."""
    kernels = {"aten::mm": 18.0, "aten::addmm": 12.0, "cpp_fused_tanh_0": 9.0, "aten::mul": 3.0}
    row = split(kernels, MATMUL_TORCH, wall_ms=15.0, profiled_ms=20.0, steps=3)
    assert row["step_ms"] == 15.0 and row["profiled_step_ms"] == 20.0
    assert row["matmul_ms"] == pytest.approx(10.0) and row["other_kernels_ms"] == pytest.approx(4.0)
    assert row["unaccounted_ms"] == pytest.approx(6.0)
    assert row["top_ops_ms"][0] == ["aten::mm", 6.0] and [name for name, _ in row["top_ops_ms"]][-1] == "aten::mul"


def test_tensorflow_matrix_products_are_counted_under_their_onednn_names() -> None:
    row = split({"_MklMatMul": 4.0, "_MklNativeFusedMatMul": 2.0, "Mul": 2.0}, MATMUL_TF, 5.0, 5.0, 2)
    assert row["matmul_ms"] == pytest.approx(3.0) and row["other_kernels_ms"] == pytest.approx(1.0)
