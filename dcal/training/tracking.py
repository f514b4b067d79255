"""MLflow tracking that never stops training.

By default runs go to an embedded SQLite store inside the run folder
(``sqlite:///RUN/mlflow.db``) with artifacts under ``RUN/mlartifacts``. A
server is used when ``--mlflow-uri`` or ``MLFLOW_TRACKING_URI`` names one.
Every call is wrapped: the first failure logs one warning and switches
tracking off for the rest of the run. MLflow is imported lazily and only rank
0 creates a tracker.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

EXPERIMENT = "dcal"


def default_tracking_uri(run_dir: Path) -> str:
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class Tracker:
    """Log to one MLflow run; a no-op once any call has failed."""

    def __init__(self, run_dir: Path, uri: str | None = None, run_id: str | None = None,
                 run_name: str | None = None):
        self.run_dir = Path(run_dir)
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(self.run_dir)
        self.run_id: str | None = None
        self.enabled = True
        self._client = None
        self._call(self._start, run_id, run_name)

    def _start(self, run_id: str | None, run_name: str | None) -> None:
        # An unreachable server must fail within seconds, not after minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.uri)
        if run_id is None:
            experiment = self._client.get_experiment_by_name(EXPERIMENT)
            if experiment is None:
                artifacts = (self.run_dir / "mlartifacts").resolve().as_uri()
                experiment_id = self._client.create_experiment(EXPERIMENT, artifact_location=artifacts)
            else:
                experiment_id = experiment.experiment_id
            run_id = self._client.create_run(experiment_id, run_name=run_name).info.run_id
        self.run_id = run_id
        logger.info("MLflow run %s at %s", run_id, self.uri)

    def _call(self, fn, *args, **kwargs):
        if not self.enabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # any tracking failure is non-fatal by design
            self.enabled = False
            logger.warning("MLflow tracking at %s failed (%s: %s); training continues without tracking",
                           self.uri, type(exc).__name__, exc)
            return None

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        flat = {k: str(v)[:500] for k, v in flatten(params).items()}
        self._call(lambda: self._client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat.items()]))

    def log_metrics(self, metrics: dict, step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in flatten(metrics).items()
                 if isinstance(v, (int, float)) and v == v]  # NaN is skipped
        self._call(lambda: self._client.log_batch(self.run_id, metrics=items))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call(lambda: self._client.log_artifact(self.run_id, str(path), artifact_path))

    def finish(self, status: str = "FINISHED") -> None:
        self._call(lambda: self._client.set_terminated(self.run_id, status))
