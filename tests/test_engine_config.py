"""The `engine` group of keys: choices are checked and impossible combinations refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pinnrun.config import ConfigError
from pinnrun.engine import validate
from pinnrun.runtime import glibc
from tests.conftest import run_cli


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["engine.derivatives=forward"], "engine.derivatives='forward': not one of autograd, jet"),
        (["engine.compile=true"], "engine.compile=true needs engine.derivatives=jet"),
        (["engine.cuda_graphs=true", "device=cpu"], "engine.cuda_graphs=true: CUDA graphs need a CUDA device, this run is on cpu"),
        (["engine.allocator=jemalloc"], "engine.allocator='jemalloc': not one of tuned, system"),
    ],
)
def test_engine_settings_are_checked_before_anything_runs(make_cfg, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate(make_cfg(*overrides))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_jet_with_compile_is_accepted(make_cfg) -> None:
    validate(make_cfg("engine.derivatives=jet", "engine.compile=true"))


def test_cuda_graphs_on_cpu_is_a_one_line_error_from_the_command(tmp_path: Path) -> None:
    result = run_cli(["engine.cuda_graphs=true", "device=cpu", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "pinnrun: error: engine.cuda_graphs=true: CUDA graphs need a CUDA device, this run is on cpu"


FAULTS_OF_BIG_BUFFERS = """
import ctypes, resource, sys
from pinnrun.runtime import malloc_tuned, set_allocator
set_allocator(sys.argv[1])
libc, size = ctypes.CDLL(None), 40 << 20  # above glibc's largest dynamic mmap threshold (32 MiB)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    buffer = libc.malloc(size)
    ctypes.memset(buffer, 1, size)
    libc.free(buffer)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, malloc_tuned())
"""


@pytest.mark.skipif(glibc() is None, reason="mallopt thresholds are glibc's")
def test_tuned_allocator_reuses_freed_memory_instead_of_faulting_in_fresh_pages() -> None:
    """Ten 40 MB buffers, each touched then freed: with the system malloc every one is a fresh
    mapping (about 10k page faults each with 4 KiB pages); tuned, the heap keeps the first one's
    pages, so the other nine fault in nothing."""

    def faults(mode: str) -> tuple[int, str]:
        out = subprocess.run([sys.executable, "-c", FAULTS_OF_BIG_BUFFERS, mode], capture_output=True, text=True, check=True)
        count, tuned = out.stdout.split()
        return int(count), tuned

    (system, system_tuned), (tuned, tuned_tuned) = faults("system"), faults("tuned")
    assert (system_tuned, tuned_tuned) == ("False", "True")
    assert system > 5 * tuned
