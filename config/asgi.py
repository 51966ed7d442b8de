"""ASGI entry point: HTTP through Django, `/mcp` to the gateway's MCP endpoint, websockets
through Channels (served by daphne, or uvicorn).

With `GATEWAY_ON_SERVER_LOOP=true` (opt-in) the gateway's background loop is the server's own
loop, so a `/mcp` tool call reaches its upstream session without a hand-off to another thread.
Daphne's loop is known when it imports this module; uvicorn's CLI imports it before its loop
exists, so there the loop is adopted, and the gateway started, at the lifespan startup (or at
the first request, if lifespan events are switched off)."""

import asyncio
import logging
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application

django_asgi = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from config import exit_watchdog  # noqa: E402
from config.logging import install_access_log_redaction  # noqa: E402
from dashboard.routing import websocket_urlpatterns  # noqa: E402
from mcpgateway.background import adopt as adopt_background_loop  # noqa: E402
from mcpgateway.dispatch import Gateway  # noqa: E402
from mcpgateway.downstream import build_mcp_app, route_mcp_path  # noqa: E402
from mcpgateway.redaction import warm_redactor  # noqa: E402
from mcpgateway.runtime import start_gateway  # noqa: E402
from orchestrator.api_auth import authenticate_mcp  # noqa: E402
from orchestrator.webhooks import start_sender as start_webhook_sender  # noqa: E402


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop the ASGI server will run this app on, when it can be known now:
    uvicorn imports the app inside its running loop; daphne's CLI imports it before
    starting the Twisted reactor's loop (`daphne.server.twisted_loop`)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    if "daphne.cli" in sys.modules:  # the daphne command, not a test that imports daphne's server
        return getattr(sys.modules.get("daphne.server"), "twisted_loop", None)
    return None


log = logging.getLogger("agentdeck.asgi")


def _adopt(loop: asyncio.AbstractEventLoop) -> None:
    if adopt_background_loop(loop):
        log.info("the gateway runs on the server's event loop (GATEWAY_ON_SERVER_LOOP)")
    else:
        log.warning("GATEWAY_ON_SERVER_LOOP: a background loop was already running; the gateway stays on it")


_known_loop = _server_loop() if settings.GATEWAY_ON_SERVER_LOOP else None
if _known_loop is not None:
    _adopt(_known_loop)  # before anything below starts a background loop
# Not known yet (uvicorn): the background work waits for the server's loop.
_waiting_for_loop = settings.GATEWAY_ON_SERVER_LOOP and _known_loop is None

mcp_endpoint = build_mcp_app(authenticate=authenticate_mcp, toolbox=Gateway(defer_audit=True), allowed_hosts=settings.ALLOWED_HOSTS,
                             sessions_per_team=settings.MCP_SESSIONS_PER_TEAM)

install_access_log_redaction()  # daphne's access log prints query strings (`?token=…`)
exit_watchdog.install(settings.AGENTDECK_WEB_EXIT_GRACE_S)  # a request cut off by a shutdown cannot hang the exit
# Logs written on the event loop use the last redactor built: build one now. (It hands the main
# thread's pooled connection back: held for the process's life, it was one pool slot lost.)
warm_redactor()


def _start_background_work() -> None:
    if settings.GATEWAY_AUTOSTART:
        start_gateway()
    start_webhook_sender()


def _on_server_loop() -> None:
    """Adopt the running loop and start the background work there, once (a no-op otherwise)."""
    global _waiting_for_loop
    if _waiting_for_loop:
        _waiting_for_loop = False
        _adopt(asyncio.get_running_loop())
        _start_background_work()


if not _waiting_for_loop:
    _start_background_work()

_router = ProtocolTypeRouter(
    {
        "http": route_mcp_path(mcp_endpoint, django_asgi),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)


async def application(scope, receive, send) -> None:
    """The router above, plus ASGI lifespan events (uvicorn sends them; daphne does not)."""
    _on_server_loop()
    if scope["type"] != "lifespan":
        await _router(scope, receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _commit_deferred_audit()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _commit_deferred_audit() -> None:
    """Commit the /mcp audit rows still queued before the server says it has shut down: a
    supervisor that kills the process soon after (a container's stop timeout) would otherwise
    find them only in the exit handler, or not at all."""
    from mcpgateway.audit_batch import flush_audit

    if not await asyncio.to_thread(flush_audit, 10.0):  # within a usual stop timeout
        log.error("audit rows not all committed at shutdown; the exit handler tries again")
