"""Typed configuration: the top-level schema, the group-option schemas and their validation.

The top-level keys (`seed`, `device`, `dtype`, `threads`, `tracking`, `train`, `engine`, `output`) are a structured
config stored in Hydra's ConfigStore, so a typo or a wrong type there fails at compose time.
Each group option (`problem`, `model`, `sampler`, `weighting`, `optimizer`) names its class with
`_target_`; the class carries a nested `Config` dataclass, and `build` merges the YAML node into
that dataclass, so unknown keys and wrong types of an option are rejected before any work starts.
Value checks (positive counts, lr > 0, ...) live in each `Config.__post_init__`; one check over
the whole config (`check_numbers`) refuses NaN, infinities and numbers out of range for every key
at once, so no option's own check has to remember them.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

GROUPS = ("problem", "model", "sampler", "weighting", "optimizer")
DTYPES = ("float32", "float64")
DERIVATIVE_ENGINES = ("autograd", "jet")
ALLOCATORS = ("tuned", "system")
FLOAT_MAX = {"float32": 3.4028234663852886e38, "float64": 1.7976931348623157e308}  # torch.finfo(dtype).max
INT64_RANGE = (-(2**63), 2**63 - 1)

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message is one line for the user."""


@dataclass
class TrackingConfig:
    """Where and how runs are recorded in MLflow."""

    enabled: bool = True
    uri: Optional[str] = None  # None: MLflow's default (a sqlite mlflow.db in the working directory)
    experiment: Optional[str] = None  # None: the problem's name
    run_name: Optional[str] = None  # None: <problem>-<weighting>-s<seed>
    timeout_s: float = 10.0  # how long to wait for a tracking server before failing
    new_run: bool = False  # with resume=: record the continued training in a new MLflow run, not the checkpoint's


@dataclass
class TrainConfig:
    """Cadences of the training loop (in optimizer steps)."""

    log_every: int = 100
    eval_every: int = 500
    progress: bool = True  # a progress bar on a terminal; always quiet when not a TTY
    checkpoint_every: int = 1000  # steps between periodic checkpoints (a killed run resumes from the last); 0: at the end only

    def validate(self, prefix: str) -> None:
        require_positive(f"{prefix}.log_every", self.log_every)
        require_positive(f"{prefix}.eval_every", self.eval_every)
        if self.checkpoint_every < 0:
            raise ConfigError(f"{prefix}.checkpoint_every={self.checkpoint_every}: must be >= 0 (0 = at the end only)")


@dataclass
class EngineConfig:
    """How residual derivatives are computed and the step is executed."""

    derivatives: str = "autograd"  # autograd (nested reverse mode, any order) | jet (forward Taylor jet, order <= 2)
    compile: bool = False  # torch.compile the residuals (needs derivatives=jet: no double backward)
    cuda_graphs: bool = False  # capture the step in a CUDA graph (refused: not available in this version)
    allocator: str = "tuned"  # tuned: glibc malloc keeps freed memory for reuse (pinnrun.runtime.set_allocator) | system: as is

    def validate(self, prefix: str) -> None:
        require_choice(f"{prefix}.derivatives", self.derivatives, DERIVATIVE_ENGINES)
        require_choice(f"{prefix}.allocator", self.allocator, ALLOCATORS)
        if self.compile and self.derivatives != "jet":
            raise ConfigError(
                f"{prefix}.compile=true needs {prefix}.derivatives=jet: torch.compile cannot compile the double-backward graph of nested autograd"
            )


@dataclass
class OutputConfig:
    """What a run writes into its output directory (and logs as MLflow artifacts)."""

    dir: str = "${hydra:runtime.output_dir}"
    plots: bool = True
    prediction: bool = True
    checkpoint: bool = True


@dataclass
class Config:
    """The composed run configuration; group nodes are validated by their own classes."""

    problem: Any = MISSING
    model: Any = MISSING
    sampler: Any = MISSING
    weighting: Any = MISSING
    optimizer: Any = MISSING
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "float32"  # float32 | float64
    deterministic: bool = False  # repeatable CUDA kernels (slower on GPUs); CPU runs repeat without it
    resume: Optional[str] = None  # a checkpoint path, a run directory, an MLflow run id, or auto
    threads: int = 0  # torch intra-op threads for this run; 0 keeps torch's default
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def register_schemas() -> None:
    """Store the top-level schema; `conf/config.yaml` extends it through its defaults list."""
    ConfigStore.instance().store(name="base_config", node=Config)


def unwritable(directory: Path) -> Optional[str]:
    """Why a file cannot be created in an existing `directory` (the OS's words), None when it can.
    A real probe file, not `os.access`, which says yes to root on a read-only mount."""
    try:
        probe = directory / f".pinnrun-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists: where creating `path` would start."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def require_positive(key: str, value: float) -> None:
    """Reject a count, cadence or rate that is not > 0."""
    if value <= 0:
        raise ConfigError(f"{key}={value!r}: must be > 0")


def check_numbers(tree: Any, dtype: str, prefix: str = "") -> None:
    """Refuse, anywhere in a config tree, a float that is NaN or infinite or beyond the run dtype's
    range, and an integer that does not fit int64: `lr=nan` or `problem.nu=inf` would otherwise
    reach torch and fail as a non-finite loss after the run started."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        name = f"{prefix}{key}" if isinstance(tree, dict) else f"{prefix.rstrip('.')}[{key}]"
        if isinstance(value, (dict, list)):
            check_numbers(value, dtype, f"{name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name}={value!r}: must be a finite number")
        elif isinstance(value, float) and abs(value) > FLOAT_MAX.get(dtype, FLOAT_MAX["float64"]):
            raise ConfigError(f"{name}={value!r}: beyond the range of {dtype} (largest {FLOAT_MAX[dtype]:.3g})")
        elif isinstance(value, int) and not isinstance(value, bool) and not INT64_RANGE[0] <= value <= INT64_RANGE[1]:
            raise ConfigError(f"{name}={value!r}: does not fit a 64-bit integer")


def require_choice(key: str, value: str, allowed: Iterable[str]) -> None:
    """Reject a string that is not one of the allowed choices, naming them."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: not one of {', '.join(allowed)}")


def target_class(group: str, node: DictConfig) -> type:
    """Import the class a group option names with `_target_`."""
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(f"{group}._target_={target!r}: must name a class, e.g. pinnrun.problems.burgers.Burgers")
    module_name, _, class_name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{group}._target_={target!r}: cannot import it ({exc})") from None
    if not hasattr(cls, "Config"):
        raise ConfigError(f"{group}._target_={target!r}: has no Config schema")
    return cls


def parse_node(group: str, schema: type[T], node: Any) -> T:
    """Merge a YAML node into a dataclass schema; unknown keys and wrong types become ConfigError."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        parsed = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(describe_omegaconf_error(group, schema, exc)) from None
    if hasattr(parsed, "validate"):
        parsed.validate(group)
    return parsed  # type: ignore[return-value]


def describe_omegaconf_error(group: str, schema: type, exc: OmegaConfBaseException) -> str:
    """Turn OmegaConf's multi-line error into one line naming the key and what is allowed."""
    key = getattr(exc, "full_key", None) or ""
    full = f"{group}.{key}" if key else group
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if first.startswith("Key '") and "not in" in first:
        fields = ", ".join(f.name for f in dataclasses.fields(schema))
        return f"{full}: unknown key; allowed keys: {fields}"
    match = re.search(r"Value '(.*?)' (?:of type '\w+' )?(?:could not be converted to|is not a valid) (\w+)", first)
    if match:
        return f"{full}={match.group(1)!r}: expected {match.group(2).lower()}"
    if "Missing mandatory value" in first:
        return f"{full}: missing value (required)"
    return f"{full}: {first}"


@dataclass(frozen=True)
class Option:
    """A validated group option: its class and its typed config, not yet constructed."""

    cls: type
    cfg: Any

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Construct the option with its run-time dependencies (problem, device, ...), which do not
        belong in YAML."""
        return self.cls(self.cfg, *args, **kwargs)


def parse_option(group: str, node: Any) -> Option:
    """Validate a group option against its class's Config.

    The YAML's `_target_` is the registry: adding an option is one module plus one YAML.
    """
    cls = target_class(group, node)
    values = OmegaConf.to_container(node, resolve=True)
    values.pop("_target_", None)
    return Option(cls, parse_node(group, cls.Config, values))


def validate_top_level(cfg: DictConfig) -> None:
    """Check the top-level values that the schema's types cannot express, and every number."""
    require_choice("dtype", cfg.dtype, DTYPES)
    check_numbers(OmegaConf.to_container(cfg, resolve=False), cfg.dtype)
    require_positive("tracking.timeout_s", cfg.tracking.timeout_s)
    if cfg.threads < 0:
        raise ConfigError(f"threads={cfg.threads!r}: must be >= 0 (0 keeps torch's default)")
    TrainConfig(**OmegaConf.to_container(cfg.train)).validate("train")
    EngineConfig(**OmegaConf.to_container(cfg.engine)).validate("engine")
    for group in GROUPS:
        if not isinstance(cfg.get(group), DictConfig):
            raise ConfigError(f"{group}: missing; choose one with {group}=<option> (see pinnrun --help)")
