"""MLflow at the edge: the only module that imports mlflow.

The engine talks to a `Tracker` (log metrics, log artifacts); `open_run` starts the MLflow run and
guarantees it ends as FINISHED, FAILED (with the error as a tag) or KILLED, never RUNNING.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Protocol, Sequence

from pinnrun.config import ConfigError, TrackingConfig

MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit


Rows = Sequence[tuple[int, Mapping[str, float]]]
"""(step, metrics) pairs, logged together."""


class Tracker(Protocol):
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_rows(self, rows: Rows) -> None: ...

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    @property
    def run_id(self) -> Optional[str]: ...


class NullTracker:
    """`tracking.enabled=false`: every call is a no-op."""

    run_id = None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_rows(self, rows: Rows) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        pass

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass


class MlflowTracker:
    """One active MLflow run; all calls go through MlflowClient with the run's id."""

    def __init__(self, client: Any, run_id: str):
        self.client = client
        self._run_id = run_id

    @property
    def run_id(self) -> str:
        return self._run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.log_rows([(step, metrics)])

    def log_rows(self, rows: Rows) -> None:
        """Metrics of several steps (e.g. every L-BFGS iteration) in batches of MLflow's limit."""
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        batch = [Metric(key, float(value), now, step) for step, metrics in rows for key, value in metrics.items()]
        for start in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self._run_id, metrics=batch[start : start + MAX_METRICS_PER_BATCH], synchronous=True)

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        """A file, or a directory's files, under `artifact_path` of the run."""
        if path.is_dir():
            self.client.log_artifacts(self._run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self._run_id, str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self._run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=True)


def check_server(uri: str, timeout_s: float) -> None:
    """Fail fast, before training, when an http(s) tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"tracking.uri={uri!r}: tracking server unreachable ({reason})") from None


@contextlib.contextmanager
def open_run(
    cfg: TrackingConfig, experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]
) -> Iterator[Tracker]:
    """Start a run, yield its tracker, and end it with the status the body earned."""
    if not cfg.enabled:
        yield NullTracker()
        return
    import mlflow
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    uri = cfg.uri or mlflow.get_tracking_uri()
    check_server(uri, cfg.timeout_s)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = experiment_id_for(client, experiment)
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    run_id = run.info.run_id
    try:
        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()], synchronous=True)
        yield MlflowTracker(client, run_id)
    except KeyboardInterrupt:
        client.set_terminated(run_id, status="KILLED")
        raise
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"[:5000]
        with contextlib.suppress(Exception):
            client.log_batch(run_id, tags=[RunTag("error", message)])
        client.set_terminated(run_id, status="FAILED")
        raise
    else:
        client.set_terminated(run_id, status="FINISHED")


def experiment_id_for(client: Any, name: str) -> str:
    """The id of the named experiment, created if absent (tolerating a concurrent creator)."""
    from mlflow.exceptions import MlflowException

    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return again.experiment_id


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"a.b.c": value}, the form MLflow params take."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat

