"""Where and how a run computes: device, dtype and seeding."""

from __future__ import annotations

import ctypes
import functools
import os
import random
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from pinnrun.config import ConfigError

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(name: str) -> torch.device:
    """The torch device for `device=...`, refusing one this machine does not have."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device='mps': MPS is not available on this machine; use device=cpu or device=auto")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise ConfigError(f"device={name!r}: not one of {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: CUDA is not available on this machine; use device=cpu or device=auto")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return torch.device("cuda", index)


def use_deterministic(enabled: bool) -> None:
    """`deterministic=true`: bitwise-repeatable runs on CUDA too (cuBLAS workspace pinned,
    deterministic kernels required, cuDNN autotuning off). It costs GPU speed (not measured here:
    these machines have no GPU); CPU runs are repeatable without it."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    if enabled != torch.are_deterministic_algorithms_enabled():  # the call imports inductor (about 2 s)
        torch.use_deterministic_algorithms(enabled)


def set_threads(threads: int) -> None:
    """Cap torch's intra-op threads (0 keeps its default), so parallel sweep workers do not
    oversubscribe the cores: n workers x 1 thread on n cores rather than n x n."""
    if threads > 0:
        torch.set_num_threads(threads)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h> mallopt parameters
TUNED_THRESHOLD = 1 << 30  # bytes: above any temporary of a PINN step at 100k points
_malloc_tuned = False


@functools.cache
def glibc() -> Optional[ctypes.CDLL]:
    """The process's C library when it is glibc (the only one whose mallopt takes these
    parameters), else None (macOS, musl, Windows)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def set_allocator(mode: str) -> None:
    """`engine.allocator=tuned`: raise glibc's mmap and trim thresholds to 1 GiB for this process,
    so the step's freed temporaries are reused from the heap instead of unmapped and mapped again
    as fresh, zero-filled pages at every step. The compiled jet step's (4, 10k, 20) float32
    temporaries are 3.2 MB each, above glibc's default 128 KiB mmap threshold: measured on Burgers
    8 x 20 at 10k points in scripts/benchmark.py's race, 5,400-13,800 minor page faults per step
    with `system` against 0 with `tuned`, and a 1.3-1.85x slower step (docs/benchmark.md). Both
    thresholds are needed: in a one-off probe the trim threshold alone gave 15,500 faults per step
    and the mmap threshold alone 4,700-12,200. The cost: the process keeps its peak heap
    until it exits, as torch's CUDA caching allocator does on a GPU. `system` leaves malloc alone;
    a threshold once set stays set for the process, so `system` after `tuned` in one process (a
    test session) does not undo it. Elsewhere than glibc this does nothing."""
    global _malloc_tuned
    libc = glibc()
    if mode == "tuned" and libc is not None and not _malloc_tuned:
        _malloc_tuned = bool(libc.mallopt(M_MMAP_THRESHOLD, TUNED_THRESHOLD)) & bool(libc.mallopt(M_TRIM_THRESHOLD, TUNED_THRESHOLD))


def malloc_tuned() -> bool:
    """Whether set_allocator raised glibc's thresholds in this process (the run's `malloc_tuned` tag)."""
    return _malloc_tuned


def process_age() -> Optional[float]:
    """Seconds since this process was launched (Linux: /proc start time, 10 ms resolution), None
    where /proc is not available: the start-up cost a run reports before its first step."""
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")


class JobClock:
    """When the current job started, for `time/startup_s` (start to first step) and the closing
    summary's wall time.

    A process's first job started when the process was launched (its imports are its start-up
    cost); a later job in the same process (Hydra's basic launcher runs a sweep's jobs one after
    another in one process, a joblib worker is reused) started when `run` was called for it, not
    at the process's launch, so start-up does not grow with the job index."""

    def __init__(self) -> None:
        self.started: Optional[float] = None  # time.time() at the current job's start

    def start(self) -> None:
        """Mark the start of a job (called once per job, first thing in `engine.run`)."""
        age = process_age() if self.started is None else None
        self.started = time.time() - (age or 0.0)

    def age(self) -> Optional[float]:
        """Seconds since the current job started; before any `start`, the process's age."""
        return process_age() if self.started is None else time.time() - self.started


JOB_CLOCK = JobClock()


def check_cuda_graphs(enabled: bool, device: torch.device) -> None:
    """Refuse `engine.cuda_graphs=true`: graphs need CUDA, and the captured step (static buffers,
    capturable Adam) is not shipped until it has been verified on a GPU."""
    if not enabled:
        return
    if device.type != "cuda":
        raise ConfigError(f"engine.cuda_graphs=true: CUDA graphs need a CUDA device, this run is on {device.type}")
    raise ConfigError("engine.cuda_graphs=true: the CUDA-graph step is not available in this version; run without it")


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (model initialisation uses torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class RunInterrupted(KeyboardInterrupt):
    """A stop signal (`signum`) stopped the run after a step, with a checkpoint written."""

    def __init__(self, message: str, signum: signal.Signals):
        super().__init__(message)
        self.signum = signum

    def __reduce__(self) -> tuple[type, tuple[str, signal.Signals]]:
        """Pickled with its signal, for a launcher that carries a job's error to another process."""
        return type(self), (self.args[0], self.signum)


class StopOnSignal:
    """Turns the first stop signal into a request the loop honours after the current step.

    SIGINT and SIGTERM are Ctrl-C, `kill`, and SLURM's cancel, requeue and preemption; SIGUSR1 and
    SIGUSR2 are what batch systems send ahead of a time limit (`sbatch --signal`; submitit asks SLURM
    for USR2). A second signal interrupts at once (KeyboardInterrupt). Handlers are restored on
    exit, and nothing is installed off the main thread (where Python cannot take signals).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self) -> None:
        self.requested: Optional[signal.Signals] = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum)

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def pass_on(signum: signal.Signals) -> None:
    """Hand a stop signal, once the run has stopped for it (checkpoint written, run KILLED), to the
    Python handler that was there before pinnrun's: a launcher's, such as submitit's USR2 handler,
    which requeues the job (the requeued job continues the run with `resume=auto`) and exits.
    Python's own default handlers are left out: the run has already stopped."""
    handler = signal.getsignal(signum)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signum, None)
