"""How the project's runs show in MLflow's UI: the experiment marked for model training, and
the link to its runs page.

Part of the `mtdiff.tracking` package (MLflow is called only from there).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

# The experiment tag MLflow's UI reads to choose the experiment's page (where its per-browser
# GenAI / Model training switch does not decide), and its value for "Machine learning": the
# runs table instead of the GenAI overview.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# Kinds the UI infers or leaves unset; any other value was chosen by a person and is kept.
_UNCHOSEN_KINDS = ("", "no_inferred_type", "genai_development_inferred",
                   "custom_model_development_inferred")


def mark_model_training(experiment: Any) -> None:
    """Tag `experiment` (an `mlflow.entities.Experiment`) as model training so the UI
    opens on its runs; a kind someone chose in the UI is left alone. Idempotent: no
    write when the tag is already there."""
    import mlflow

    if experiment.tags.get(EXPERIMENT_KIND_TAG, "") in _UNCHOSEN_KINDS:
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id,
                                                 EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


def runs_page_url(uri: str, experiment_id: str) -> str | None:
    """The MLflow UI's page of an experiment's runs, for an http(s) tracking server `uri`;
    None for a store the UI is not served from (sqlite, files: `mlflow ui` then serves it
    on its own port).

    MLflow 3.17's UI decides between its GenAI and model-training pages from a switch it
    remembers per browser (GenAI until someone flips it); its build reads the experiment's
    `mlflow.experimentKind` tag only with that switch off. ``workflowType=machine_learning``
    in the link opens the runs whatever the switch says.
    """
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return None
    base = uri.rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
