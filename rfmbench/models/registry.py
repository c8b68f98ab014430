"""The model registry: name -> ModelSpec. Adding a model is one module and one line here."""

from __future__ import annotations

from rfmbench.errors import unknown
from rfmbench.models import gbdt, kernel_ridge, mlp, random_forest, realmlp, rfm, xrfm_reference
from rfmbench.models.spec import ModelSpec

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        rfm.SPEC,
        kernel_ridge.SPEC,
        random_forest.SPEC,
        mlp.SPEC,
        # Optional extras: listed always, usable once their packages are installed.
        gbdt.XGBOOST_SPEC,
        gbdt.LIGHTGBM_SPEC,
        gbdt.CATBOOST_SPEC,
        realmlp.SPEC,
        xrfm_reference.SPEC,
    )
}


def get_model(name: str) -> ModelSpec:
    """The spec registered under ``name``; raise UnknownName otherwise."""
    if name not in MODELS:
        raise unknown("model", name, list(MODELS))
    return MODELS[name]
