"""The classifier's quality and training on staff decisions."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from intake.corrections import training_corrections
from intake.domain import Priority
from intake.web import queries
from intake.web.common import FormStaff, Pages, SignedIn, Web

log = logging.getLogger("intake.web")
router = APIRouter()


def quality_view(request: Request, w: Web, trained: Any = None) -> HTMLResponse:
    with w.sessions() as session:
        versions, weeks = queries.quality(session)
    from classifier.registry import ModelRegistry

    registry = ModelRegistry(w.cfg.classifier.models_dir)
    return w.page(
        request,
        "quality",
        versions=versions,
        weeks=weeks,
        labels=[p.value for p in Priority],
        trained=trained,
        models=registry.versions(),
        active=registry.active_version(),
    )


@router.get("/quality", response_class=HTMLResponse, response_model=None)
def quality_page(staff: SignedIn, w: Pages, request: Request) -> Response:
    return quality_view(request, w)


@router.post("/quality/train", response_model=None)
def train_and_compare(staff: FormStaff, w: Pages, request: Request) -> Response:
    """Train on the corpus plus staff decisions; the gate of `intake train` decides."""
    with w.sessions() as session:
        corrections = training_corrections(session)
    from classifier.train import train_version  # scikit-learn is loaded only to train

    result = train_version(w.cfg.classifier.corpus_dir, w.cfg.classifier.models_dir, corrections)
    log.info("staff %s trained %s: %s", staff, result.version, result.reason)
    return quality_view(request, w, trained=result)
