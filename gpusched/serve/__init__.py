"""The placement service: HTTP/JSON over Starlette, a crash-safe journal, a k8s extender.

``gpusched serve`` runs it; :func:`create_app` builds the ASGI app around a
:class:`PlacementService` for embedding or tests.  Starlette and uvicorn are the
``gpusched[serve]`` extra, imported only when the app is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .journal import Journal
from .service import PlacementService

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["PlacementService", "Journal", "create_app"]


def create_app(service: PlacementService, **options: Any) -> "Starlette":
    """The Starlette app serving ``service`` (see :func:`gpusched.serve.app.create_app`)."""
    from .app import create_app as _create_app

    return _create_app(service, **options)
