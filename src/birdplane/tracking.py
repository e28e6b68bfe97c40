"""MLflow: where the store is, and the run of each variant. Imported only by stage scripts.

Core code never sees MLflow; stages pass plain callbacks into it. Every run this module opens
carries the host and process id that opened it, so that a later stage can close the runs of a
process that was killed (SIGKILL, a lost machine) instead of leaving them RUNNING forever.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from birdplane.dvc_hints import project_root
from birdplane.errors import BirdplaneError

DB_NAME = "mlflow.db"
ARTIFACTS = "mlartifacts"
PID_TAG, HOST_TAG, STAGE_TAG = "birdplane.pid", "birdplane.host", "birdplane.stage"
CLOSED_TAG = "birdplane.closed"
# MLflow 3 opens an experiment on its GenAI overview; this tag says it holds model training (MLflow
# 3.17 does not yet honour it, so the stages print the runs table's address: runs_address)
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
UI_ADDRESS = "http://127.0.0.1:5000"  # what `mlflow ui` serves by default

# MLflow's own HTTP settings, with shorter defaults than its 120 s timeout and 7 retries (about 4
# minutes of silence per call before an error): a tracking server that is down or hangs ends the
# stage in under 30 s (3 attempts of at most 5 s, 0 + 2 s of back-off, up to 1 s of jitter each).
# A value the user set in the environment wins.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


class TrackingError(BirdplaneError):
    """The MLflow tracking store cannot be reached or refused a write."""


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI if set, else sqlite:///<project root>/mlflow.db (absolute; forward
    slashes, which SQLAlchemy expects on Windows too)."""
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{((root or project_root()) / DB_NAME).as_posix()}"
    )


def _short(e: BaseException) -> str:
    """The exception as a short, terminal-safe line: a tracking server's error body is outside text
    (NUL, 0xFF, ANSI escapes that clear the screen or set the window title), and MLflow's messages
    name the tracking URI with its credentials; birdplane.text.printable escapes and redacts both."""
    from birdplane.text import printable

    return printable(f"{type(e).__name__}: {' '.join(str(e).split())}", limit=160)


def _is_tracking_failure(e: BaseException) -> bool:
    """An error of the store or of the connection to it (not of the stage's own work)."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    import sqlalchemy.exc

    return isinstance(e, (MlflowException, RequestException, sqlalchemy.exc.SQLAlchemyError))


@contextmanager
def _store_errors(also: type[BaseException] | tuple = ()) -> Iterator[None]:
    """Errors of the store, or of the connection to it, as one TrackingError line."""
    try:
        yield
    except Exception as e:
        if _is_tracking_failure(e) or isinstance(e, also):
            raise _store_failure(tracking_uri(), e) from None
        raise


def _own_store() -> str:
    return f"sqlite:///{(project_root() / DB_NAME).as_posix()}"


def _http_status(e: BaseException) -> int | None:
    """The HTTP status a tracking server answered with, if it answered: from MLflow's message for
    a body that is not MLflow's JSON ("error code 401 != 200") or for statuses retried in vain
    ("too many 503 error responses"), else from the error code of MLflow's own JSON error."""
    from mlflow.exceptions import RestException

    for pattern in (r"error code (\d{3}) != ", r"too many (\d{3}) error responses"):
        if match := re.search(pattern, str(e)):
            return int(match.group(1))
    return e.get_http_status_code() if isinstance(e, RestException) else None


def _advice(uri: str, e: BaseException) -> str:
    """What to do about this failure of the store at `uri`: a server that cannot be reached,
    credentials refused, a server error, a request refused; a read-only, locked or full SQLite
    store. Never repeats the credentials."""
    own = f"unset MLFLOW_TRACKING_URI to use the project's own store {_own_store()}"
    text = str(e).lower()
    if uri.startswith(("http://", "https://")):
        status = _http_status(e)
        if status in (401, 403):
            return (
                f"the tracking server refused the credentials (HTTP {status}): check the user and password in "
                f"MLFLOW_TRACKING_URI or MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (or "
                f"MLFLOW_TRACKING_TOKEN), and that they may write to this experiment"
            )
        if status is not None and status >= 500:
            return f"the tracking server failed (HTTP {status}): see the server's log and try again, or {own}"
        if status is None and "not in a valid json format" in text:
            return (
                f"MLFLOW_TRACKING_URI answers, but not as an MLflow tracking server does: fix the address "
                f"(scheme, host, port, path), or {own}"
            )
        if status is not None:
            return (
                f"the tracking server refused the request (HTTP {status}): check that MLFLOW_TRACKING_URI is an "
                f"MLflow tracking server, of a version that works with this mlflow {_mlflow_version()}, or {own}"
            )
        return (
            f"start the server (e.g. `mlflow server --host 127.0.0.1 --port 5000`), fix MLFLOW_TRACKING_URI, "
            f"or unset it to use the project's own store {_own_store()}"
        )
    if "readonly" in text or "read-only" in text or isinstance(e, PermissionError):
        return (
            "the store cannot be written: make the database, its folder and the artifact folder writable "
            "for this user (`chmod u+w`), or point MLFLOW_TRACKING_URI at another store"
        )
    if "database is locked" in text:
        return (
            "another process held the store's lock too long (another stage, an `mlflow ui`): let it finish "
            "and run the stage again"
        )
    if "disk is full" in text or "no space" in text:
        return "the disk is full: free some space and run the stage again"
    return "check that the path is writable and the disk not full, or point MLFLOW_TRACKING_URI at another store"


def _mlflow_version() -> str:
    import mlflow

    return mlflow.__version__


def _store_failure(uri: str, e: BaseException) -> TrackingError:
    """One line for a failure of the store: where (the URI without its credentials), why (the
    error, terminal-safe and redacted) and the advice that fits."""
    from birdplane.text import redact_url

    return TrackingError(
        f"cannot use the MLflow tracking store {redact_url(uri)} ({_short(e)}): {_advice(uri, e)}"
    )


_READY: dict[tuple[str, str], str] = {}  # (tracking URI, experiment) -> id, once per process


def _defer_signals_in_store_transactions() -> None:
    """Make every transaction of MLflow's SQL stores a birdplane.process.signals_deferred section.

    A SIGTERM or Ctrl-C raised inside SQLAlchemy or sqlite3 could leave a connection holding the
    database's write lock, and ending the run as KILLED then failed after 20 s with `database is
    locked` (the run stayed RUNNING). MLflow opens each transaction through the session factory
    that `mlflow.store.db.utils._get_managed_session_maker` builds (called when a store is created),
    so wrapping that one function covers every write, also those inside log_model and end_run.
    Must run before the store is created; idempotent."""
    from mlflow.store.db import utils

    from birdplane.process import signals_deferred

    original = getattr(utils, "_get_managed_session_maker", None)
    if original is None or getattr(original, "birdplane_defers_signals", False):
        return  # an MLflow without it: tests/test_tracking_faults.py says so

    def managed_session_maker(session_maker, db_type):
        make_session = original(session_maker, db_type)

        @contextmanager
        def session(*args, **kwargs):
            with signals_deferred(), make_session(*args, **kwargs) as s:
                yield s

        return session

    managed_session_maker.birdplane_defers_signals = True
    utils._get_managed_session_maker = managed_session_maker


def setup(experiment: str) -> str:
    """Point MLflow at the project's store, check that it answers, close the runs that killed
    processes left RUNNING, and return the experiment id (creating the experiment if needed).

    Stages call this first, before loading data or training, so that a store that is down costs
    seconds, not a training. Later calls in the same process (a stage's runs) reuse the answer."""
    for var, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(var, value)
    import logging

    import mlflow
    from filelock import FileLock

    # MLflow's INFO lines ("Creating initial MLflow database tables...", "Validating input example
    # against model signature") are its routine, not news: a stage's stderr is for its errors
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow logs every SQL error with its traceback before raising it; the stage turns the error
    # into one line (_store_errors), so the log is a duplicate that buries that line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    _defer_signals_in_store_transactions()
    root = project_root()
    # our default store keeps artifacts beside it (absolute, so experiment copies share them);
    # read the variable before set_tracking_uri, which sets it
    own_store = not os.environ.get("MLFLOW_TRACKING_URI")
    uri = tracking_uri(root)
    _keep_secrets_of(uri)
    mlflow.set_tracking_uri(uri)
    if (uri, experiment) in _READY:
        return _READY[uri, experiment]
    _check_database_writable(uri)
    # Parallel stages (`dvc queue start --jobs 2`) may meet a store that does not exist yet: one of
    # them creates the tables and the experiment while the others wait.
    lock = FileLock(root / f".{DB_NAME}.lock", timeout=300) if own_store else _no_lock()
    with _store_errors(also=OSError):
        with lock:
            exp = mlflow.get_experiment_by_name(experiment)
            if exp is None:
                artifact_location = (root / ARTIFACTS).as_uri() if own_store else None
                exp = mlflow.get_experiment(
                    mlflow.create_experiment(experiment, artifact_location=artifact_location)
                )
            elif exp.lifecycle_stage == "deleted":
                raise _deleted(experiment, exp.experiment_id, own_store)
            if exp.tags.get(KIND_TAG) != KIND:
                mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
        exp_id = exp.experiment_id
        _check_artifacts_writable(exp.artifact_location)
        close_orphaned_runs(exp_id)
    _READY[(uri, experiment)] = exp_id
    return exp_id


def runs_address(experiment_id: str, uri: str | None = None) -> str:
    """Where a student sees the experiment's runs: the runs table's address on the tracking server,
    or for the project's own store the one `mlflow ui` serves (MLflow 3 would otherwise open on its
    GenAI overview, where the runs hide behind a toggle). Credentials never appear in it."""
    from birdplane.text import redact_url

    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"{redact_url(uri).rstrip('/')}/#/experiments/{experiment_id}/runs"
    ui = f"mlflow ui --backend-store-uri {redact_url(uri)}"
    return f"{UI_ADDRESS}/#/experiments/{experiment_id}/runs (after `{ui}`)"


def _keep_secrets_of(uri: str) -> None:
    """Keep the tracking URI's credentials (and query) out of everything the stage prints.

    MLflow prints "View run ... at: <tracking URI>/#/..." when a run of an HTTP store ends, with
    the URI's `user:password@` in it; with secrets in the URI those lines are switched off
    (MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT, MLflow's own switch). Our messages redact it
    (birdplane.text.redact, which also knows the secrets from now on)."""
    from birdplane.text import remember_secrets_of, secrets_of

    if secrets_of(uri):
        remember_secrets_of(uri)
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def _probe(folder: Path) -> None:
    """Create and remove a file in `folder` (created if missing): raises OSError where it cannot."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".birdplane-probe.{os.getpid()}.birdplane-tmp"
    try:
        probe.write_bytes(b"")
    finally:
        probe.unlink(missing_ok=True)


def _check_database_writable(uri: str) -> None:
    """A SQLite store must be writable, its file and its folder (SQLite writes a journal beside it):
    found before MLflow opens it (which logged 91 lines of errors) and before any training."""
    if not uri.startswith("sqlite:"):
        return
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:":
        return
    path = Path(database)
    try:
        _probe(path.parent)
        if path.exists():
            with path.open("r+b"):
                pass
    except OSError as e:
        raise TrackingError(
            f"cannot write the MLflow tracking store {path} ({_short(e)}): make it and its folder "
            f"writable for this user (`chmod u+w`), or point MLFLOW_TRACKING_URI at another "
            f"store"
        ) from None


def _check_artifacts_writable(location: str | None) -> None:
    """The experiment's artifact folder, where it is local, must be writable: found before training
    (a read-only one failed only when the model was logged, after the whole training)."""
    if not location or not location.startswith(("file:", "/")):
        return  # a server's artifact store (mlflow-artifacts:, s3:, ...): the server checks it
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    folder = (
        Path(url2pathname(urlparse(location).path))
        if location.startswith("file:")
        else Path(location)
    )
    try:
        _probe(folder)
    except OSError as e:
        raise TrackingError(
            f"cannot write the MLflow artifact store {folder} ({_short(e)}): make it writable for "
            f"this user (`chmod u+w`), free some space, or point MLFLOW_TRACKING_URI at another "
            f"store"
        ) from None


def _deleted(experiment: str, experiment_id: str, own_store: bool) -> TrackingError:
    """A deleted experiment keeps its name (MLflow refuses a new one of that name until it is purged)."""
    from birdplane.text import printable

    where = f"MLFLOW_TRACKING_URI={_own_store()} " if own_store else ""
    return TrackingError(
        f"the MLflow experiment '{printable(experiment, 80)}' is deleted: restore it with "
        f"`{where}mlflow experiments restore --experiment-id {experiment_id}`, or choose another "
        f"mlflow.experiment in params.yaml"
    )


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


def close_orphaned_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs that a process on this host opened and that process is gone
    (killed with SIGKILL, or the machine went down); returns their ids. Runs of other hosts, and
    runs without our tags, are left alone: we cannot know whether their process still works."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from birdplane.io import process_alive

    host = socket.gethostname()
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        output_format="list",
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
    )
    client, closed = MlflowClient(), []
    for run in runs:
        pid = run.data.tags.get(PID_TAG, "")
        if not pid.isdigit() or process_alive(int(pid), since=run.info.start_time / 1000):
            continue
        client.set_tag(
            run.info.run_id,
            CLOSED_TAG,
            f"process {pid} on {host} ended without closing this run (killed); closed by a later stage",
        )
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
    return closed


def _run_tags(tags: dict[str, Any] | None, stage: str | None) -> dict[str, str]:
    """The caller's tags as strings (None left out), plus which process has the run open."""
    out = {k: str(v) for k, v in (tags or {}).items() if v is not None}
    out |= {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    if stage:
        out[STAGE_TAG] = stage
    return out


def _end_quietly(end: Callable[[str], None], status: str) -> None:
    """end(status) on the way out of an error: a store that went away meanwhile must not hide the
    original error."""
    try:
        end(status)
    except Exception:  # noqa: BLE001 - the next stage's close_orphaned_runs closes the run
        pass


@contextmanager
def _ending(end: Callable[[str], None]) -> Iterator[None]:
    """Call end(status) when the block is left: FINISHED, KILLED (Ctrl-C, SIGTERM) or FAILED;
    errors of the store become one TrackingError line."""
    try:
        yield
    except KeyboardInterrupt:
        _end_quietly(end, "KILLED")
        raise
    except BaseException as e:
        _end_quietly(end, "FAILED")
        if isinstance(e, Exception) and _is_tracking_failure(e):
            raise _store_failure(tracking_uri(), e) from None
        raise
    with _store_errors(also=Exception):
        end("FINISHED")


@contextmanager
def _managed(run: Any) -> Iterator[Any]:
    """Close the active run `run` as FINISHED, KILLED (Ctrl-C, SIGTERM) or FAILED."""
    import mlflow

    with _ending(lambda status: mlflow.end_run(status=status)):
        yield run


@contextmanager
def variant_run(
    experiment: str, variant: str, *, stage: str | None = None, tags: dict[str, Any] | None = None
) -> Iterator[Any]:
    """Start the variant's run; it ends FINISHED, KILLED (interrupted) or FAILED (any other error)."""
    import mlflow

    exp_id = setup(experiment)
    with _store_errors():
        run = mlflow.start_run(experiment_id=exp_id, run_name=variant, tags=_run_tags(tags, stage))
    with _managed(run):
        yield run


@contextmanager
def nested_run(
    name: str, *, stage: str | None = None, tags: dict[str, Any] | None = None
) -> Iterator[Any]:
    """A child run of the active run (a further seed, a sweep configuration), ended like it."""
    import mlflow

    parent = mlflow.active_run()
    run = mlflow.start_run(
        run_name=name,
        nested=True,
        experiment_id=parent.info.experiment_id,
        tags=_run_tags(tags, stage),
    )
    with _managed(run):
        yield run


@contextmanager
def child_runs(
    names: dict[Any, str],
    *,
    stage: str | None = None,
    tags: dict[Any, dict[str, Any]] | None = None,
) -> Iterator[dict[Any, str]]:
    """Child runs of the active run that are open at the same time (seeds trained side by side),
    one per key of `names` (key -> run name, with `tags[key]`); yields key -> run id. Log into them
    with MlflowClient and the run id: MLflow's fluent API logs into one run at a time. They all end
    like a nested_run: FINISHED, KILLED (interrupted) or FAILED (any other error)."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from mlflow.tracking.context import registry
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    parent, client, ids = mlflow.active_run(), MlflowClient(), {}

    def end(status: str) -> None:
        # every run gets its status even if one call fails; the first failure is raised after
        first = None
        for run_id in ids.values():
            try:
                client.set_terminated(run_id, status=status)
            except Exception as e:  # noqa: BLE001 - re-raised below, after the other runs
                first = first or e
        if first is not None:
            raise first

    with _ending(end):
        for key, name in names.items():  # as mlflow.start_run(nested=True) tags a run
            run_tags = registry.resolve_tags(
                {
                    **_run_tags((tags or {}).get(key), stage),
                    MLFLOW_PARENT_RUN_ID: parent.info.run_id,
                }
            )
            ids[key] = client.create_run(
                parent.info.experiment_id, tags=run_tags, run_name=name
            ).info.run_id
        yield ids


class SeedLogger:
    """MLflow for the seeds of one variant (birdplane.train.variant's hooks): the first seed logs
    into the variant's run, every further seed into a child run `<variant>-seed<n>`, all of a
    scope's runs open at once (seeds that train side by side); params when a seed starts, the
    per-epoch metrics with step = epoch, a child run's final metrics at its end. `echo` also gets
    every epoch (the stage prints a progress line)."""

    def __init__(
        self,
        variant: str,
        stage: str,
        seeds: list[int],
        params: dict[str, Any],
        tags: dict[str, Any],
        echo=None,
    ):
        self.variant, self.stage, self.first = variant, stage, seeds[0]
        self.params, self.tags, self.echo = params, tags, echo
        self.run_ids: dict[int, str] = {}

    @contextmanager
    def scope(self, seeds: list[int]) -> Iterator[None]:
        import mlflow

        extra = [s for s in seeds if s != self.first]
        with child_runs(
            {s: f"{self.variant}-seed{s}" for s in extra},
            stage=self.stage,
            tags={s: {**self.tags, "seed": s} for s in extra},
        ) as ids:
            self.run_ids = {
                **({self.first: mlflow.active_run().info.run_id} if self.first in seeds else {}),
                **ids,
            }
            yield

    def start(self, seed: int, model) -> None:
        from mlflow.entities import Param

        from birdplane.models import n_parameters

        params = {**self.params, "seed": seed, "n_parameters": n_parameters(model)}
        self._log(seed, params=[Param(k, str(v)) for k, v in params.items()])

    def epoch(self, seed: int, stats) -> None:
        self._log(
            seed, {k: v for k, v in stats.to_dict().items() if k != "epoch"}, step=stats.epoch
        )
        if self.echo is not None:
            self.echo(seed, stats)

    def end(self, seed: int, final: dict[str, Any]) -> None:
        if seed != self.first:
            self._log(seed, _final(final))

    def _log(
        self, seed: int, metrics: dict[str, float] | None = None, step: int = 0, params=()
    ) -> None:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        now = int(time.time() * 1000)
        MlflowClient().log_batch(
            self.run_ids[seed],
            params=params,
            metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
        )


class SweepLogger:
    """MLflow for the sweep (birdplane.sweep's hooks): a nested run per configuration with its
    params, the mean accuracies per epoch and the final mean and std (none for a configuration
    whose training diverged: its run has ended FAILED); `echo` gets each configuration's result
    (the stage prints a line)."""

    def __init__(self, tags: dict[str, Any], echo=None):
        self.tags, self.echo = tags, echo

    @contextmanager
    def scope(self, config, params: dict[str, Any]) -> Iterator[None]:
        import mlflow

        with nested_run(
            f"sweep-{config.name}", stage="sweep", tags={**self.tags, "sweep_config": config.name}
        ):
            mlflow.log_params(params)
            yield

    def epoch(self, config, stats: list) -> None:
        import mlflow

        mlflow.log_metrics(
            {
                "val_accuracy_mean": sum(s.val_accuracy for s in stats) / len(stats),
                "train_accuracy_mean": sum(s.train_accuracy for s in stats) / len(stats),
            },
            step=stats[0].epoch,
        )

    def end(self, config, result: dict[str, Any], seconds: float) -> None:
        import mlflow

        if "diverged" not in result:
            summary = {k: v for k, v in result.items() if isinstance(v, dict) and "mean" in v}
            summary |= {
                f"logit_grad_{k}": v for k, v in result["logit_grad"].items() if v is not None
            }
            mlflow.log_metrics(
                {
                    f"{k}_{stat}": float(v[stat])
                    for k, v in summary.items()
                    for stat in ("mean", "std")
                }
            )
        if self.echo is not None:
            self.echo(config, result, seconds)


def log_final(train_seconds: float, final: dict[str, Any]) -> None:
    """The training time and the final metrics (final_*) of the active run."""
    import mlflow

    mlflow.log_metrics({"train_seconds": train_seconds, **_final(final)})


def _final(final: dict[str, Any]) -> dict[str, float]:
    return {f"final_{k}": float(x) for k, x in final.items()}


MODEL_TAG = "birdplane.model_md5"  # which model file a training run produced (md5 of its bytes)


def tag_model(model_file_bytes: bytes) -> None:
    """Tag the active run with the md5 of the model file it produced (MODEL_TAG)."""
    import hashlib

    import mlflow

    mlflow.set_tag(MODEL_TAG, hashlib.md5(model_file_bytes).hexdigest())


def add_to_variant_run(
    experiment: str,
    variant: str,
    model_file: Path,
    *,
    metrics: dict[str, float],
    tags: dict[str, str],
    stage: str,
    documents: dict[str, Any] | None = None,
) -> None:
    """Add a later stage's metrics (and JSON documents) to the training run that produced this model
    file (found by the md5 tag the training stage set), without reopening it: its status and
    owner tags stay the training's. Where the store has no such run (a fresh store, a `dvc pull` on
    another machine), a new run of the variant's name gets them instead."""
    import hashlib

    import mlflow
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    model_md5 = hashlib.md5(Path(model_file).read_bytes()).hexdigest()
    exp_id = setup(experiment)
    with _store_errors():
        found = mlflow.search_runs(
            experiment_ids=[exp_id],
            output_format="list",
            max_results=1,
            order_by=["attributes.start_time DESC"],
            filter_string=f"tags.`{MODEL_TAG}` = '{model_md5}' and tags.variant = '{variant}'",
        )
        if found:
            client, run_id, now = MlflowClient(), found[0].info.run_id, int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                tags=[RunTag(k, str(v)) for k, v in tags.items()],
            )
            for name, doc in (documents or {}).items():
                client.log_dict(run_id, doc, name)
            return
    with variant_run(
        experiment, variant, stage=stage, tags={"variant": variant, MODEL_TAG: model_md5, **tags}
    ):
        mlflow.log_metrics(metrics)
        for name, doc in (documents or {}).items():
            mlflow.log_dict(doc, name)


def log_torch_model(model, cfg, example_input, name: str = "model") -> float:
    """Log the model as an MLflow pyfunc model (the state_dict plus its config, as the stage saves
    it), with a signature, an input example and pinned pip requirements; returns the seconds it took.

    No pickle and no code in the artifact: it holds a birdplane model file, which
    birdplane.serving.load_logged_model reads with `torch.load(weights_only=True)` and build_model,
    so loading a model from a shared tracking server runs nothing that someone uploaded. Should
    logging fail half way (a full disk, a lost server, SIGTERM), the logged model and its partial
    artifacts are deleted.
    """
    t0 = time.perf_counter()
    import tempfile

    import mlflow
    import mlflow.pyfunc
    import numpy as np
    import torch
    from mlflow.models import infer_signature
    from mlflow.utils import requirements_utils

    from birdplane import serving
    from birdplane.models import save_model

    # MLflow checks the pinned requirements against the environment through a map of every
    # installed distribution's files to its modules, built on first use: seconds per training
    # stage (docs/performance.md, "Model logging to MLflow"). The pins are this environment's own
    # versions of packages whose module and distribution names agree, so the map needs only them.
    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", ()) is None:
        requirements_utils._MODULES_TO_PACKAGES = {m: [m] for m in ("torch", "mlflow", "numpy")}
    example = example_input.cpu().numpy().astype(np.float32)
    signature = infer_signature(example, serving.predict_numpy(model.cpu().eval(), example))
    before = mlflow.last_logged_model()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model_file = Path(tmp) / serving.MODEL_FILE
            save_model(model_file, model, cfg)
            mlflow.pyfunc.log_model(
                name=name,
                loader_module="birdplane.serving",
                data_path=str(model_file),
                signature=signature,
                input_example=example,
                pip_requirements=[
                    f"torch=={torch.__version__.split('+')[0]}",
                    f"mlflow=={mlflow.__version__}",
                    f"numpy=={np.__version__}",
                ],
            )
    except BaseException:
        _delete_partial_model(before.model_id if before else None)
        raise
    return time.perf_counter() - t0


def _delete_partial_model(previous: str | None) -> None:
    """Remove the logged model that a failed log_model left (its artifacts first), if it got as far
    as creating one (`previous`: the last model logged before it)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    try:
        model = mlflow.last_logged_model()
        if model is None or model.model_id == previous:
            return
        location = model.artifact_location
        if location.startswith("file:"):
            from urllib.parse import urlparse
            from urllib.request import url2pathname

            shutil.rmtree(url2pathname(urlparse(location).path), ignore_errors=True)
        MlflowClient().delete_logged_model(model.model_id)
    except Exception:  # noqa: BLE001 - best effort, the original error is what the user must see
        pass
