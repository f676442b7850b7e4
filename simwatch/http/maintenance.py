"""``/api/v1/maintenance``: list, create and delete maintenance windows.

``GET`` lists every window (the config file's, then the API's) with its current and next
occurrence; ``POST`` validates a window (``400`` naming the field) and keeps it in the
state directory; ``DELETE /api/v1/maintenance/{id}`` removes an API window (``409`` for a
config one). Authentication is the API's (bearer token), done by the app's middleware.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import orjson
from aiohttp import web

from simwatch.core.maintenance import MaintenanceError
from simwatch.http import views

if TYPE_CHECKING:
    from collections.abc import Callable

    from simwatch.shell.maintenance import MaintenanceStore

ROUTE: Final = "/api/v1/maintenance"
_BOOLEANS: Final = {"true": True, "false": False, "": False}


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


class MaintenanceApi:
    def __init__(self, store: MaintenanceStore, now: Callable[[], float]) -> None:
        self.store = store
        self.now = now

    async def list(self, request: web.Request) -> web.Response:
        unknown = sorted(k for k in request.query if k != "active")
        if unknown:
            raise views.bad_request(f"unknown parameter {unknown[0][:40]!r}")
        text = request.query.get("active", "")
        if text not in _BOOLEANS:
            raise views.bad_request(f"invalid active {text[:20]!r}: expected true or false")
        return _json(views.maintenance_view(self.store.windows(), self.now(), _BOOLEANS[text]))

    async def add(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise views.bad_request(f"(body): not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise views.bad_request("(body): expected a JSON object")
        try:
            window = await self.store.add_async(data)
        except MaintenanceError as exc:
            raise views.bad_request(str(exc)) from None
        except OSError as exc:
            message = f"cannot save the window in the state directory: {exc.strerror or exc}"
            raise views.ViewError(503, message) from None
        response = _json(window.to_json(self.now()), 201)
        response.headers["Location"] = f"{ROUTE}/{window.id}"
        return response

    async def delete(self, request: web.Request) -> web.Response:
        window_id = request.match_info["id"]
        try:
            await self.store.delete_async(window_id)
        except KeyError:
            raise views.not_found(f"unknown maintenance window {window_id[:64]!r}") from None
        except PermissionError:
            message = f"window {window_id} is read-only: it is defined in the config file"
            raise views.ViewError(409, message) from None
        except OSError as exc:
            message = f"cannot save the change in the state directory: {exc.strerror or exc}"
            raise views.ViewError(503, message) from None
        return web.Response(status=204)


def add_maintenance_routes(
    app: web.Application, store: MaintenanceStore, now: Callable[[], float]
) -> None:
    api = MaintenanceApi(store, now)
    app.router.add_get(ROUTE, api.list, name="maintenance")
    app.router.add_post(ROUTE, api.add)
    app.router.add_delete(ROUTE + "/{id}", api.delete)
