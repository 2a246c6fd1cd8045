"""MLflow at the edge: the only module that imports mlflow.

The engine talks to a `Tracker` (log metrics, log artifacts); `open_run` starts the MLflow run and
ends it as FINISHED, FAILED (with the error as a tag) or KILLED. No tracker call ever stops a run:
calls the store refuses wait in a queue (retried with a capped backoff), and what it still has not
taken at the end, the final status included, is written to the run directory's
`tracking_pending.json`, which `push_pending` (`pinnrun-sync <dir>`) sends later.
Sweeps open and close their parent run through `start_sweep_run` / `end_sweep_run`;
`pinnrun-compare` reads runs as a table through `search_runs` and `metric_history` and records
its own output with `log_comparison`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Protocol, Sequence

from pinnrun.config import ConfigError, TrackingConfig, unwritable

if TYPE_CHECKING:
    import pandas as pd

RUN_COLUMNS = ("run_id", "run_name", "experiment", "status", "start_time", "end_time")
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
PENDING_FILE = "tracking_pending.json"  # in a run's output directory: the calls its store did not take
RETRY_FIRST_S, RETRY_CAP_S = 2.0, 60.0  # backoff between tries while the store refuses calls
HEARTBEAT_TAG = "heartbeat"  # unix seconds of a run's last log step
STALE_AFTER_S = 600.0  # a RUNNING run without a heartbeat for this long was killed (SIGKILL, OOM killer, node loss)
REFUSED_FOR_GOOD = ("INVALID_PARAMETER_VALUE", "BAD_REQUEST")  # MLflow error codes of a call that is wrong, not unlucky
STORE_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql")  # MLflow's database and server stores
# What MLflow's UI shows when it opens an experiment (read in mlflow/server/js of MLflow 3.17).
# `mlflow.experimentKind` is the experiment's kind ("custom_model_development": model training,
# not GenAI), which the UI reads where its GenAI / Model-training switch is off; with the switch
# (3.17) the view follows the `workflowType` address parameter, else the browser's last choice
# (GenAI at first), so the addresses pinnrun prints carry workflowType=machine_learning.
# `mlflow.sharedViewState.<key>` holds a runs-table view (columns, sort) that an address opens
# with `viewStateShareKey=<key>`: pinnrun's shows the final metrics and the chosen options, best first.
EXPERIMENT_KIND = "mlflow.experimentKind"
RUNS_VIEW_KEY = "pinnrun"
RUNS_VIEW = {"selectedColumns": ["metrics.`final/l2_rel`", "metrics.`l2_rel_best`", "metrics.`final/steps`",
                                 "metrics.`final/time_s`", "tags.`weighting`", "tags.`seed`", "tags.`sampler`",
                                 "tags.`optimizer`", "tags.`model`"],
             "orderByKey": "metrics.`final/l2_rel`", "orderByAsc": True}
EXPERIMENT_TAGS = {EXPERIMENT_KIND: "custom_model_development",
                   f"mlflow.sharedViewState.{RUNS_VIEW_KEY}": json.dumps(RUNS_VIEW)}

Rows = Sequence[tuple[int, Mapping[str, float]]]
"""(step, metrics) pairs, logged together."""

LOG = logging.getLogger(__name__)


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


class MemoryTracker:
    """Keeps a run's metrics (by step) and tags in memory: for `train()` called from a script or a
    notebook, benchmarks and tests, where no MLflow store is wanted."""

    run_id = None

    def __init__(self) -> None:
        self.metrics: dict[int, dict[str, float]] = {}
        self.tags: dict[str, str] = {}

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.metrics.setdefault(step, {}).update(metrics)

    def log_rows(self, rows: Rows) -> None:
        for step, metrics in rows:
            self.log_metrics(metrics, step)

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        pass

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update(tags)


class TrackingIncomplete(RuntimeError):
    """The run itself completed (its files are in the output directory) but the store did not take
    everything; what it did not take is in the run's PENDING_FILE for `pinnrun-sync`."""


Call = dict[str, Any]
"""One tracker call as plain data (JSON), so that it can wait in memory and in PENDING_FILE:
{"kind": "metrics", "metrics": [[key, value, timestamp_ms, step], ...]}, {"kind": "tags", "tags": {...}},
{"kind": "params", "params": {...}} or {"kind": "artifact", "path": ..., "artifact_path": ...}."""


class MlflowTracker:
    """One active MLflow run; all calls go through MlflowClient with the run's id.

    Training never stops for the tracker and never waits long for it: every call (metrics, tags,
    params, artifacts) joins a queue sent in order; when the store fails, the queue waits and is
    retried no sooner than a backoff (RETRY_FIRST_S, doubling to RETRY_CAP_S), so a store that is
    away costs one attempt per backoff, not one per log step. What is still queued at the end is
    written to PENDING_FILE by `end_run`."""

    def __init__(self, client: Any, run_id: str, uri: str = "", clock: Callable[[], float] = time.monotonic,
                 logged_through: int = -1):
        self.client, self._run_id, self.uri, self.clock = client, run_id, uri, clock
        self.logged_through = logged_through  # metrics of steps up to here are in the store already (a resumed kill)
        self.pending: list[Call] = []  # calls not yet accepted by the store, oldest first
        self.delay = 0.0  # the current backoff in seconds; 0 while the store answers
        self.retry_at = -math.inf
        self.last_error = ""

    @property
    def run_id(self) -> str:
        return self._run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.log_rows([(step, metrics)])

    def log_rows(self, rows: Rows) -> None:
        """Metrics of several steps (e.g. every L-BFGS iteration) in batches of MLflow's limit."""
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        batch = [[key, float(value), now, step] for step, metrics in rows if step > self.logged_through
                 for key, value in metrics.items()]
        self.submit([{"kind": "metrics", "metrics": batch[start : start + MAX_METRICS_PER_BATCH]}
                     for start in range(0, len(batch), MAX_METRICS_PER_BATCH)])

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.submit([{"kind": "params", "params": {key: str(value)[:6000] for key, value in params.items()}}])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.submit([{"kind": "tags", "tags": {key: str(value) for key, value in tags.items()}}])

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        """A file, or a directory's files, under `artifact_path` of the run. A file queued already
        (a periodic checkpoint the store has not taken yet) is queued once: the upload sends
        whatever the file holds then."""
        call = {"kind": "artifact", "path": str(path.absolute()), "artifact_path": artifact_path}
        self.submit([] if call in self.pending else [call])

    def submit(self, calls: list[Call]) -> None:
        self.pending.extend(calls)
        self.flush(final=False)

    def flush(self, final: bool = True) -> bool:
        """Send the queued calls in order, stopping at the first the store refuses; True when none
        is left. Between log steps (`final=False`) nothing is tried before the backoff has passed."""
        if not final and self.clock() < self.retry_at:
            return not self.pending
        while self.pending:
            try:
                self.send(self.pending[0])
            except Exception as exc:  # any store error: keep training, retry later
                if getattr(exc, "error_code", None) in REFUSED_FOR_GOOD:  # retrying cannot help; do not block the rest
                    LOG.warning("tracking: the store refused a %s call (%s); dropped", self.pending.pop(0)["kind"],
                                str(exc).splitlines()[0][:300])
                    continue
                self.delay = min(max(2 * self.delay, RETRY_FIRST_S), RETRY_CAP_S)
                self.retry_at = self.clock() + self.delay
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
                LOG.warning("tracking: the store refused a call (%s); %d call(s) kept, next try in %.0f s",
                            type(exc).__name__, len(self.pending), self.delay)
                return False
            self.pending.pop(0)
        self.delay, self.retry_at = 0.0, -math.inf
        return True

    def send(self, call: Call) -> None:
        """Make one queued call against the store (raises what the store raises)."""
        from mlflow.entities import Metric, Param, RunTag

        kind = call["kind"]
        if kind == "metrics":
            self.client.log_batch(self._run_id, metrics=[Metric(*m) for m in call["metrics"]], synchronous=True)
        elif kind == "tags":
            self.client.log_batch(self._run_id, tags=[RunTag(k, v) for k, v in call["tags"].items()], synchronous=True)
        elif kind == "params":
            self.client.log_batch(self._run_id, params=[Param(k, v) for k, v in call["params"].items()], synchronous=True)
        elif kind == "artifact":
            path = Path(call["path"])
            if path.is_dir():
                self.client.log_artifacts(self._run_id, str(path), call["artifact_path"])
            elif path.is_file():
                self.client.log_artifact(self._run_id, str(path), call["artifact_path"])
            else:
                LOG.warning("tracking: %s is gone; not uploaded", path)
        else:
            raise ValueError(f"tracking: unknown call kind {kind!r}")


def check_server(uri: str, timeout_s: float) -> None:
    """Fail fast, before training, when an http(s) tracking server does not answer, or answers
    but is not an MLflow server (no `/health`)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"tracking.uri={uri!r}: not an MLflow tracking server (GET /health: HTTP {exc.code} {exc.reason})") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"tracking.uri={uri!r}: tracking server unreachable ({reason})") from None


def store_scheme(uri: str) -> str:
    """A tracking URI's scheme without its driver (`postgresql+psycopg2` -> `postgresql`); `file`
    for a bare path (or a Windows drive letter), which MLflow takes as a file store."""
    scheme, sep, _ = uri.partition(":")
    return "file" if not sep or len(scheme) == 1 else scheme.split("+", 1)[0].lower()


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a `sqlite:///rel.db` or `sqlite:////abs.db` URI; None for another
    scheme or an in-memory database (`sqlite://`)."""
    rest = uri.partition(":")[2]
    if store_scheme(uri) != "sqlite" or not rest.startswith("///"):
        return None
    return Path(rest[3:])


def check_store_uri(uri: str, writes: bool) -> None:
    """One line for a tracking URI pinnrun cannot use, before MLflow creates anything: a file store
    (MLflow's deprecated ./mlruns folder, created silently for any mistyped path), an unknown
    scheme, a sqlite database whose directory does not exist or (for `writes`) is not writable."""
    scheme = store_scheme(uri)
    if scheme == "file":
        raise ConfigError(f"tracking.uri={uri!r}: a file store is not supported; use sqlite:///<dir>/mlflow.db or http://<host>:<port>")
    if scheme not in STORE_SCHEMES:
        raise ConfigError(f"tracking.uri={uri!r}: unknown scheme {scheme!r}; use one of {', '.join(STORE_SCHEMES)}")
    path = sqlite_path(uri)
    if path is None:
        return
    if not path.parent.is_dir():
        raise ConfigError(f"tracking.uri={uri!r}: directory {path.parent} does not exist")
    reason = unwritable(path.parent) if writes else None
    if reason:
        raise ConfigError(f"tracking.uri={uri!r}: directory {path.parent} is not writable ({reason})")


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Turn a store failing before a run exists (a file that is no database, a full or read-only
    disk, a server that is not MLflow) into one config line; nothing is left RUNNING."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as exc:  # any store error before the run: the run does not start
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ConfigError(f"tracking.uri={absolute_sqlite_uri(uri)!r}: the store failed ({type(exc).__name__}: {first})") from exc


@contextlib.contextmanager
def open_run(
    cfg: TrackingConfig,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    resume_run_id: Optional[str] = None,
    out_dir: Optional[Path] = None,
) -> Iterator[Tracker]:
    """Start a run (or reopen `resume_run_id`), yield its tracker, and end it with the status the
    body earned: FINISHED, FAILED with the error as a tag, or KILLED. What the store did not take
    by then goes to `out_dir`'s PENDING_FILE; a run that finished raises TrackingIncomplete then."""
    if not cfg.enabled:
        yield NullTracker()
        return
    client, uri = client_for(cfg.uri, cfg.timeout_s, writes=True)
    logged_through = -1
    with store_errors(uri):
        if resume_run_id:
            logged_through = reopen_run(client, resume_run_id, uri)
            run_id = resume_run_id
        else:
            run_id = client.create_run(experiment_id_for(client, experiment), run_name=run_name, tags=dict(tags)).info.run_id
    tracker = MlflowTracker(client, run_id, uri, logged_through=logged_through)
    try:
        if not resume_run_id:
            tracker.log_params(params)
        yield tracker
    except KeyboardInterrupt:
        end_run(tracker, "KILLED", out_dir)
        raise
    except BaseException as exc:
        tracker.set_tags({"error": f"{type(exc).__name__}: {exc}"[:5000]})
        end_run(tracker, "FAILED", out_dir)
        raise
    unsent = end_run(tracker, "FINISHED", out_dir)
    if unsent:
        raise TrackingIncomplete(unsent)


def reopen_run(client: Any, run_id: str, uri: str) -> int:
    """Set a resumed run RUNNING again and return the last step its metrics reached (-1: none), so
    that steps a killed process logged after its last checkpoint are not logged twice. Config
    errors: a run this store does not have (the checkpoint was recorded elsewhere), with the two
    ways on; a run still RUNNING with a fresh heartbeat (another process is training it)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ConfigError(f"resume: the checkpoint's MLflow run {run_id} is not in {absolute_sqlite_uri(uri)}; set tracking.uri "
                          "to the store it was recorded in, or add tracking.new_run=true to continue in a new run") from None
    age = heartbeat_age(run.data.tags, run.info.start_time, time.time())
    if run.info.status == "RUNNING" and age < STALE_AFTER_S:
        raise ConfigError(f"resume: MLflow run {run_id} is RUNNING with a heartbeat {age:.0f} s ago: another process may be "
                          f"training it; stop it first, or if it was killed, mark it with pinnrun-sync --mark-stale --older-than {age:.0f}")
    history = client.get_metric_history(run_id, "loss/total")
    client.update_run(run_id, status="RUNNING")
    return max((m.step for m in history), default=-1)


def heartbeat_tags() -> dict[str, str]:
    """The tag a run sets at every log step: the proof of life `pinnrun-sync --mark-stale` and
    `pinnrun-compare` look for. Milliseconds, not whole seconds: a time rounded up would lie up to
    half a second in the future, and a run killed just after it would not read as stale at once."""
    return {HEARTBEAT_TAG: f"{time.time():.3f}"}


def heartbeat_age(tags: Mapping[str, Any], start_time_ms: Optional[float], now: float) -> float:
    """Seconds since a run last showed life: its heartbeat tag, else its start."""
    beat = tags.get(HEARTBEAT_TAG)
    last = float(beat) if isinstance(beat, str) and beat else (start_time_ms or 0) / 1e3
    return now - last


def mark_stale(uri: Optional[str], older_than_s: float) -> list[str]:
    """End as KILLED, with a `killed_reason` tag, every RUNNING run whose heartbeat is older than
    `older_than_s` (a process that could not mark itself); sweep parents, which have no heartbeat,
    are left alone. Returns the ids it marked."""
    client, resolved = client_for(uri, writes=True)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    marked, now, token = [], time.time(), None
    while experiments:
        page = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000, page_token=token)
        for run in page:
            age = heartbeat_age(run.data.tags, run.info.start_time, now)
            if age < older_than_s or run.data.tags.get("sweep_role") == "parent":
                continue
            reason = f"no heartbeat for {age:.0f} s (process killed?); marked by pinnrun-sync --mark-stale"
            client.set_tag(run.info.run_id, "killed_reason", reason)
            client.set_terminated(run.info.run_id, status="KILLED")
            marked.append(run.info.run_id)
        token = page.token
        if not token:
            break
    return marked


def connect(cfg: TrackingConfig) -> Any:
    """An MlflowClient for the configured store, after checking that a server answers."""
    return client_for(cfg.uri, cfg.timeout_s)[0]


@contextlib.contextmanager
def sqlite_setup_lock(uri: str) -> Iterator[None]:
    """Serialise the creation of a sqlite store between processes.

    MLflow creates a new sqlite store's tables on first use; several runs of a parallel sweep
    doing it at once collide ("table already exists"). A file lock beside the database lets the
    first process create it while the others wait."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri[len("sqlite:///"):]).with_suffix(".lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def end_run(tracker: MlflowTracker, status: str, out_dir: Optional[Path]) -> Optional[str]:
    """Send what is queued and set the final status. When the store does not take all of it, the
    rest (status included) goes to `out_dir`'s PENDING_FILE, counted in a `tracking_pending` tag
    where the store still takes tags; returns the line that says so (None when all arrived)."""
    if tracker.flush():
        try:
            tracker.client.set_terminated(tracker.run_id, status=status)
        except Exception as exc:  # any store error: the status waits with the rest
            tracker.last_error = f"{type(exc).__name__}"
        else:
            if out_dir is not None:
                (out_dir / PENDING_FILE).unlink(missing_ok=True)
            return None
    with contextlib.suppress(Exception):
        tracker.send({"kind": "tags", "tags": {"tracking_pending": str(len(tracker.pending) + 1)}})
    where = "nowhere (no output directory)"
    if out_dir is not None:
        record = {"uri": absolute_sqlite_uri(tracker.uri), "run_id": tracker.run_id, "status": status, "calls": tracker.pending}
        write_atomically(out_dir / PENDING_FILE, json.dumps(record))
        where = str(out_dir / PENDING_FILE)
    message = (f"the tracking store {tracker.uri} did not take {len(tracker.pending)} call(s) and the run's {status} status "
               f"({tracker.last_error}); the run's files are in {out_dir}; what is missing is in {where}: "
               f"push it with pinnrun-sync {out_dir}")
    LOG.warning("tracking: %s", message)
    return message


def write_atomically(path: Path, text: str) -> None:
    """Write a small text file through a temporary file and a rename: never half written."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(tmp, path)


def push_pending(directory: Path) -> str:
    """`pinnrun-sync`: send a run directory's PENDING_FILE to the store it names and set the run's
    final status; returns what was pushed. Raises ConfigError when there is nothing to push or the
    store does not answer, TrackingIncomplete when it still does not take everything."""
    path = directory / PENDING_FILE
    if not path.is_file():
        raise ConfigError(f"{directory}: no {PENDING_FILE} here (nothing to push)")
    record = json.loads(path.read_text())
    client, uri = client_for(record["uri"], writes=True)
    tracker = MlflowTracker(client, record["run_id"], uri)
    tracker.pending = list(record["calls"])
    calls = len(tracker.pending)
    unsent = end_run(tracker, record["status"], directory)
    if unsent:
        raise TrackingIncomplete(unsent)
    return f"run {record['run_id']} in {uri}: {calls} call(s) pushed, status {record['status']}"


def download_artifact(cfg: TrackingConfig, run_id: str, name: str, destination: Path) -> Optional[Path]:
    """A run's artifact downloaded into `destination`, or None when there is no such run/artifact."""
    from mlflow.exceptions import MlflowException

    client = connect(cfg)
    destination.mkdir(parents=True, exist_ok=True)
    try:
        return Path(client.download_artifacts(run_id, name, str(destination)))
    except (MlflowException, OSError):
        return None


def experiment_id_for(client: Any, name: str) -> str:
    """The id of the named experiment, created if absent (tolerating a concurrent creator), with
    pinnrun's experiment tags (EXPERIMENT_TAGS) where it does not have them yet."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags=EXPERIMENT_TAGS)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    for key, value in EXPERIMENT_TAGS.items():
        if key not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


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



def run_location(uri: Optional[str], run_id: str) -> tuple[str, str, str]:
    """(tracking URI, experiment id, run id) of a run, the URI with an absolute sqlite path, so
    the `mlflow ui` command a summary prints works from any directory. The experiment id is ""
    when the store does not answer (the run's files are all in its output directory anyway)."""
    resolved = resolve_uri(uri)
    try:
        experiment_id = client_for(resolved)[0].get_run(run_id).info.experiment_id
    except Exception as exc:  # any store error: the summary goes without the address
        LOG.warning("tracking: could not look up run %s (%s)", run_id, type(exc).__name__)
        experiment_id = ""
    return absolute_sqlite_uri(resolved), experiment_id, run_id


def absolute_sqlite_uri(uri: str) -> str:
    """`sqlite:///mlflow.db` -> `sqlite:////abs/dir/mlflow.db`; other URIs unchanged."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/"):
        return uri
    return prefix + os.path.abspath(uri[len(prefix):])


def resolve_uri(uri: Optional[str]) -> str:
    """The tracking URI to use: the given one, else MLflow's default (the local store)."""
    import mlflow

    return uri or mlflow.get_tracking_uri()


def client_for(uri: Optional[str], timeout_s: float = 10.0, writes: bool = False) -> tuple[Any, str]:
    """An MlflowClient for `uri` (checked to be usable, `writes` for runs that record into it,
    and to answer when it is a server) and the resolved URI; a store that fails is a ConfigError.

    HTTP calls give up after `timeout_s` and two retries (MLflow's defaults wait minutes), so a
    store that goes away never hangs a run."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(timeout_s, 1))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    from mlflow.tracking import MlflowClient

    resolved = resolve_uri(uri)
    check_store_uri(resolved, writes)
    check_server(resolved, timeout_s)
    with store_errors(resolved), sqlite_setup_lock(resolved):
        client = MlflowClient(tracking_uri=resolved)
        client.search_experiments(max_results=1)  # creates or migrates the store, one process at a time
    return client, resolved


@dataclass
class SweepRun:
    """A sweep's parent run: where it lives and its id."""

    uri: str
    run_id: str


def start_sweep_run(cfg: TrackingConfig, experiment: str, run_name: str, tags: Mapping[str, str],
                    params: Mapping[str, Any]) -> SweepRun:
    """Create the parent run of a sweep (left RUNNING until `end_sweep_run`)."""
    from mlflow.entities import Param

    client, uri = client_for(cfg.uri, cfg.timeout_s, writes=True)
    with store_errors(uri):
        run = client.create_run(experiment_id_for(client, experiment), run_name=run_name, tags=dict(tags))
        client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()], synchronous=True)
    return SweepRun(uri, run.info.run_id)


def end_sweep_run(run: SweepRun, status: str, metrics: Mapping[str, float], tags: Mapping[str, str],
                  files: Mapping[str, str]) -> None:
    """Log the sweep's summary metrics, tags and text files into its parent run and end it with `status`."""
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient
    from mlflow.utils.time import get_current_time_millis

    client = MlflowClient(tracking_uri=run.uri)
    now = get_current_time_millis()
    client.log_batch(run.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        client.log_artifacts(run.run_id, tmp)
    client.set_terminated(run.run_id, status=status)


def existing_store(uri: Optional[str]) -> str:
    """The resolved URI of a store that exists: readers (pinnrun-compare) must not create an empty
    store where a path was mistyped, as MLflow does on first use of a sqlite or file URI."""
    resolved = resolve_uri(uri)
    check_store_uri(resolved, writes=False)
    path = sqlite_path(resolved)
    if path is not None and not path.is_file():
        raise ConfigError(f"tracking URI {resolved!r}: no store at {path} (pinnrun-compare reads stores, never creates one)")
    return resolved


def log_artifacts_to(uri: str, run_id: str, directory: Path, artifact_path: str) -> None:
    """Add a directory's files to an existing run (e.g. a finished sweep's parent) under `artifact_path`."""
    client, _ = client_for(uri)
    client.log_artifacts(run_id, str(directory), artifact_path)


def experiment_ids(client: Any, names: Optional[Sequence[str]], uri: str) -> dict[str, str]:
    """Experiment id -> name for the named experiments (all active ones when `names` is empty)."""
    experiments = client.search_experiments()
    known = {e.name: e.experiment_id for e in experiments}
    if not names:
        return {eid: name for name, eid in known.items()}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"experiment {unknown[0]!r}: not in {uri} (known: {', '.join(sorted(known)) or 'none'})")
    return {known[name]: name for name in names}


def search_runs(uri: Optional[str], experiments: Optional[Sequence[str]] = None, filter_string: str = "",
                timeout_s: float = 10.0) -> "pd.DataFrame":
    """Runs matching an MLflow filter string as one row each: run_id, run_name, experiment, status,
    start_time/end_time (ms) and `metrics.<key>` (last value), `params.<key>`, `tags.<key>` columns."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    client, resolved = client_for(uri, timeout_s)
    ids = experiment_ids(client, experiments, resolved)
    rows: list[dict[str, Any]] = []
    token = None
    while ids:
        try:
            page = client.search_runs(list(ids), filter_string=filter_string, max_results=1000, page_token=token)
        except MlflowException as exc:
            raise ConfigError(f"filter {filter_string!r}: {exc.message.splitlines()[0]}") from None
        rows.extend(run_row(run, ids[run.info.experiment_id]) for run in page)
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows, columns=None if rows else list(RUN_COLUMNS))


def run_row(run: Any, experiment: str) -> dict[str, Any]:
    """One MLflow run flattened into a table row."""
    info, data = run.info, run.data
    return {"run_id": info.run_id, "run_name": info.run_name, "experiment": experiment, "status": info.status,
            "start_time": info.start_time, "end_time": info.end_time,
            **{f"metrics.{k}": v for k, v in data.metrics.items()},
            **{f"params.{k}": v for k, v in data.params.items()},
            **{f"tags.{k}": v for k, v in data.tags.items()}}


def metric_history(uri: Optional[str], start_times: Mapping[str, int], key: str) -> "pd.DataFrame":
    """Every logged value of `key` for the given runs (run id -> start time in ms):
    columns run_id, step, value, time_s (seconds since the run started)."""
    import pandas as pd

    client, _ = client_for(uri)
    rows = [{"run_id": run_id, "step": m.step, "value": m.value, "time_s": (m.timestamp - start) / 1e3}
            for run_id, start in start_times.items() for m in client.get_metric_history(run_id, key)]
    return pd.DataFrame(rows, columns=["run_id", "step", "value", "time_s"])


def log_comparison(uri: Optional[str], experiment: str, run_name: str, params: Mapping[str, Any],
                   directory: Path) -> str:
    """Record a comparison (its selection as params, its tables and figures as artifacts) as a run."""
    with open_run(TrackingConfig(uri=uri), experiment, run_name, {"pinnrun_role": "comparison"}, params,
                  out_dir=directory) as tracker:
        tracker.log_artifact(directory)
        return str(tracker.run_id)
