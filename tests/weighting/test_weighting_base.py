"""The shared pieces: the id-keyed point table and the weight summaries."""

from __future__ import annotations

import torch

from pinnrun.weighting.base import PointTable, weight_summaries


def test_point_table_looks_up_by_id_and_keeps_known_ids_on_rekey() -> None:
    table = PointTable(torch.tensor([42, 7, 19]), torch.tensor([4.2, 0.7, 1.9]))
    assert torch.equal(table.values[table.index(torch.tensor([19, 42, 7]))], torch.tensor([1.9, 4.2, 0.7]))
    assert torch.equal(table.known(torch.tensor([7, 8, 99, 42])), torch.tensor([True, False, False, True]))
    rekeyed = table.rekey(torch.tensor([100, 19, 7]), torch.tensor([-1.0, -2.0, -3.0]))
    assert torch.equal(rekeyed.ids, torch.tensor([7, 19, 100]))
    assert torch.equal(rekeyed.values, torch.tensor([0.7, 1.9, -1.0]))


def test_weight_summaries_by_hand() -> None:
    """w = 1..101: mean 51, median 51, p90 91, p99 100, max 101 (linear interpolation)."""
    summaries = weight_summaries({"pde": torch.arange(1.0, 102.0)})
    expected = {"mean": 51.0, "p50": 51.0, "p90": 91.0, "p99": 100.0, "max": 101.0}
    assert {k: round(float(v), 4) for k, v in summaries.items()} == {f"w/pde/{k}": v for k, v in expected.items()}
