"""Verifiable execution traces: one signed, self-contained file per run, and its verification.

The file holds the pipeline version (spec and digest), the input and output, every run
event in order with its hash chain, each model and tool call of the ledger with digests of
its request and result, and the gateway's audit rows for the run — signed with the
instance's Ed25519 key over the canonical JSON of everything else. Secrets were redacted
before any of it was written (keyed markers: `mcpgateway.redaction`), so the exported file
holds none and still verifies. The export runs the redactor once more over everything (a
secret added after the run, or a run input that held one); should that change an event,
the event keeps the redacted data, is listed under `redacted_at_export`, and no longer
verifies: the file never carries a secret, even at the price of its chain.

Verification checks the format, the counts and the chain head, recomputes every event
hash in order (naming the first broken link: an edited, removed or reordered event), and
checks the signature against the keys this instance knows (or given public keys).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.db import IntegrityError, transaction

from mcpgateway import crypto
from mcpgateway.models import AuditEntry
from mcpgateway.redaction import get_redactor
from orchestrator.events import (
    canonical,
    event_payload,
    hash_matches,
    legacy_canonical,
    verify_chain,
)
from orchestrator.models import LedgerEntry, Run, RunEvent, SigningKey

FORMAT = "agentdeck-trace/1"


def digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical(value).encode()).hexdigest()


# -- the instance key -----------------------------------------------------------------------


def signing_key() -> tuple[str, Ed25519PrivateKey]:
    """The active key, generated (and stored encrypted) on first use."""
    row = SigningKey.objects.filter(active=True).order_by("created_at").first()
    if row is None:
        private = Ed25519PrivateKey.generate()
        raw_private = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                            serialization.NoEncryption())
        raw_public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        try:
            with transaction.atomic():
                row = SigningKey.objects.create(kid=f"adk-{secrets.token_hex(6)}", public_key=base64.b64encode(raw_public).decode(),
                                                private_key_encrypted=crypto.encrypt(base64.b64encode(raw_private).decode()))
        except IntegrityError:  # pragma: no cover - a 48-bit id collision
            return signing_key()
        row = SigningKey.objects.filter(active=True).order_by("created_at").first() or row
    raw = base64.b64decode(crypto.decrypt(row.private_key_encrypted))
    return row.kid, Ed25519PrivateKey.from_private_bytes(raw)


def public_keys() -> dict[str, str]:
    """kid → base64 raw public key, for every key this instance has signed with."""
    return dict(SigningKey.objects.values_list("kid", "public_key"))


# -- export ---------------------------------------------------------------------------------


def build_trace(run: Run) -> dict[str, Any]:
    version = run.pipeline_version
    # Cut at the chain head read with `run`: a run still writing commits events (and its new
    # head) after that read, and an event past the head made the untouched export fail its own
    # verification ("truncated or edited"). Events and head are committed together, so every
    # event up to the head is there.
    events = [{**event_payload(e), "prev_hash": e.prev_hash}
              for e in RunEvent.objects.filter(run=run, seq__lte=run.last_seq).order_by("seq")]
    calls = [{"step_key": c.step_key, "attempt": c.attempt, "index": c.index, "kind": c.kind, "name": c.name,
              "request_digest": digest(c.request), "result_digest": digest(c.result)}
             for c in LedgerEntry.objects.filter(run=run).order_by("step_key", "attempt", "index")]
    audit = [{"created_at": a.created_at.isoformat(), "call_id": a.call_id, "step_key": a.step_key, "agent": a.agent_name,
              "server": a.server_name, "tool": a.tool_name, "status": a.status, "error": a.error,
              "latency_ms": a.latency_ms, "arguments_digest": digest(a.arguments), "result_digest": digest(a.result)}
             for a in AuditEntry.objects.filter(run_id=run.pk).order_by("created_at", "id")]
    return {
        "format": FORMAT,
        "run": {"id": run.pk, "team": run.team_id, "status": run.status, "input": run.input, "output": run.output,
                "error": run.error, "created_at": run.created_at.isoformat(),
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "input_tokens": run.input_tokens, "output_tokens": run.output_tokens, "cost_usd": str(run.cost_usd)},
        "pipeline": {"id": version.pipeline_id, "name": version.pipeline.name, "version": version.number,
                     "spec": version.spec, "spec_digest": digest(version.spec)},
        "events": events,
        "calls": calls,
        "audit": audit,
        "counts": {"events": len(events), "calls": len(calls), "audit": len(audit)},
        "chain_head": {"seq": run.last_seq, "hash": run.last_hash},
    }


def export_trace(run: Run) -> dict[str, Any]:
    """The signed trace of `run`."""
    body = get_redactor(run.team_id).redact(build_trace(run))
    stored = RunEvent.objects.filter(run=run, seq__lte=run.last_seq).order_by("seq").values_list("seq", "hash")
    changed = [e["seq"] for e, (_, digest) in zip(body["events"], stored, strict=False)
               if not hash_matches(e["prev_hash"], e, digest)]
    if changed:
        body["redacted_at_export"] = changed
    kid, key = signing_key()
    body["signature"] = {"alg": "Ed25519", "kid": kid, "value": base64.b64encode(key.sign(canonical(body).encode())).decode()}
    return body


# -- verification ---------------------------------------------------------------------------


@dataclass
class TraceReport:
    ok: bool
    problems: list[str] = field(default_factory=list)
    first_broken: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    signed_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "first_broken": self.first_broken, "counts": self.counts,
                "signed_by": self.signed_by}


def verify_trace(document: Any, keys: dict[str, str] | None = None) -> TraceReport:
    """Check a trace file; `keys` (kid → base64 public key) default to this instance's."""
    report = TraceReport(ok=False)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        report.problems.append(f"not an {FORMAT} file")
        report.first_broken = "format"
        return report
    events = document.get("events")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        report.problems.append("`events` must be a list of events")
        report.first_broken = "events"
        return report
    report.counts = {"events": len(events), "calls": len(document.get("calls") or []), "audit": len(document.get("audit") or [])}

    def broken(where: str, problem: str) -> None:
        report.problems.append(problem)
        if report.first_broken is None:
            report.first_broken = where

    try:
        chain = verify_chain(events)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        broken("events", f"an event is malformed: missing {exc}")
    else:
        if not chain.ok:
            broken(f"event #{chain.first_broken_seq}", f"event #{chain.first_broken_seq}: {chain.reason}")
    head = document.get("chain_head")
    head = head if isinstance(head, dict) else {}
    last = events[-1] if events else {}
    if events and (head.get("seq") != last.get("seq") or head.get("hash") != last.get("hash")):
        broken("chain_head", f"the chain ends at event #{last.get('seq')} but the run's head is #{head.get('seq')} "
                             "(events removed from the end, or the head was edited)")
    declared = document.get("counts")
    declared = declared if isinstance(declared, dict) else {}
    for name, actual in report.counts.items():
        if declared.get(name) != actual:
            broken(f"counts.{name}", f"counts.{name} says {declared.get(name)} but the file holds {actual}")
    _check_signature(document, keys if keys is not None else public_keys(), report, broken)
    report.ok = not report.problems
    return report


def _check_signature(document: dict[str, Any], keys: dict[str, str], report: TraceReport, broken) -> None:
    signature = document.get("signature")
    if not isinstance(signature, dict) or signature.get("alg") != "Ed25519":
        broken("signature", "the trace is not signed (no Ed25519 signature)")
        return
    kid = signature.get("kid")
    if not isinstance(kid, str) or not isinstance(signature.get("value"), str):
        broken("signature", "the signature's kid and value must be text")
        return
    if kid not in keys:
        broken("signature", f"signed by a key this instance does not know ({kid!r}): a foreign signature")
        return
    body = {k: v for k, v in document.items() if k != "signature"}
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys[kid]))
        value = base64.b64decode(signature.get("value", ""))
    except (ValueError, TypeError):
        broken("signature", f"the signature does not match the content (key {kid})")
        return
    # (a trace signed before numbers and keys took their stored form was signed over the older text)
    for text in (canonical, legacy_canonical):
        try:
            public.verify(value, text(body).encode())
        except (InvalidSignature, ValueError, TypeError):
            continue
        report.signed_by = kid
        return
    broken("signature", f"the signature does not match the content (key {kid})")
