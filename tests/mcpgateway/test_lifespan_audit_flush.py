"""The ASGI lifespan shutdown commits the /mcp audit rows still queued before it answers
`lifespan.shutdown.complete`: a supervisor may kill the process soon after that answer, and
then the exit handler never runs. (It used to answer at once and leave them to the exit handler.)"""

from __future__ import annotations

import asyncio

import pytest
from django.utils import timezone

from mcpgateway import audit_batch
from mcpgateway.models import AuditEntry, CallStatus, PrincipalKind

pytestmark = pytest.mark.django_db(transaction=True)


def _row(i: int) -> dict:
    return {
        "team_id": 1, "principal_kind": PrincipalKind.API_KEY, "agent_name": "", "api_key_id": 7,
        "user_id": None, "run_id": None, "step_key": "", "call_id": f"life-{i}", "server_name": "echo",
        "tool_name": "echo", "arguments": {"text": f"hello {i}"}, "result": {"content": str(i)},
        "status": CallStatus.OK, "error": "", "latency_ms": 1.0, "grant_id": None, "created_at": timezone.now(),
        "idempotency_key": "", "dispatch_id": "",
    }


def test_lifespan_shutdown_commits_the_queued_audit_rows(monkeypatch):
    import mcpgateway.runtime
    import orchestrator.webhooks

    # Importing the app starts its background work: not in this shared test process.
    monkeypatch.setattr(mcpgateway.runtime, "start_gateway", lambda *a, **k: None)
    monkeypatch.setattr(orchestrator.webhooks, "start_sender", lambda *a, **k: None)
    from config.asgi import application

    writer = audit_batch.audit_writer()
    monkeypatch.setattr(writer, "flush_ms", 600_000)  # nothing would be written for ten minutes
    for i in range(5):
        writer.enqueue("audit", _row(i))
    assert writer.pending() == 5 and not AuditEntry.objects.filter(call_id__startswith="life-").exists()

    async def lifespan() -> list[str]:
        inbox: asyncio.Queue = asyncio.Queue()
        for kind in ("lifespan.startup", "lifespan.shutdown"):
            inbox.put_nowait({"type": kind})
        sent: list[str] = []

        async def send(message):
            if message["type"] == "lifespan.shutdown.complete":  # what the rows must precede
                rows = await asyncio.to_thread(AuditEntry.objects.filter(call_id__startswith="life-").count)
                sent.append(f"complete after {rows} rows")
            else:
                sent.append(message["type"])

        await application({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
        return sent

    sent = asyncio.run(lifespan())
    assert sent == ["lifespan.startup.complete", "complete after 5 rows"], sent
    assert writer.pending() == 0
