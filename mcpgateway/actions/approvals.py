"""Human decisions on tool calls whose grant requires approval."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from mcpgateway.errors import ApprovalNotFound, Conflict, GatewayError, OwnCall
from mcpgateway.models import ApiKey, AuditEntry, CallStatus, ToolApproval
from mcpgateway.queries import approval_cutoff
from mcpgateway.redaction import get_redactor


@transaction.atomic
def do_decide_approval(approval_id: int, approve: bool, user: AbstractBaseUser | None, note: str = "") -> ToolApproval:
    approval = ToolApproval.objects.select_for_update().get(pk=approval_id)
    if approval.status != ToolApproval.Status.PENDING:
        raise GatewayError(f"approval #{approval_id} was already decided ({approval.status})", "status")
    approval.status = ToolApproval.Status.APPROVED if approve else ToolApproval.Status.REJECTED
    approval.note = get_redactor(approval.team_id).text(note)  # (a reviewer's note may repeat a secret, as a decision may)
    approval.decided_by = user
    approval.decided_at = timezone.now()
    approval.save(update_fields=["status", "note", "decided_by", "decided_at"])
    return approval


def do_decide_call_approval(team_id: int, approval_id: int, approve: bool, user: AbstractBaseUser | None,
                            note: str = "", api_key_id: int | None = None) -> ToolApproval:
    """A team reviewer's verdict on a call an API client made over /mcp and is waiting on.

    Only the Django admin could decide these before (an operator's console: no team reviewer
    could, by page or API). A run's approval is decided on its review item instead, which
    resumes the run. The waiting caller reads the verdict: an approved call is made once; a
    rejected one is refused with `note` and audited `approval_rejected`."""
    with transaction.atomic():
        approval = ToolApproval.objects.select_for_update().filter(pk=approval_id, team_id=team_id).first()
        if approval is None:
            raise ApprovalNotFound(f"no approval #{approval_id} in this team", "approval")
        if approval.run_id is not None:
            raise GatewayError(f"approval #{approval_id} belongs to run #{approval.run_id}: decide its item in the review "
                               "queue (GET /api/v1/reviews), which resumes the run", "approval")
        expired = approval.status == ToolApproval.Status.PENDING and approval.created_at < approval_cutoff()
        if expired:
            # Its caller is gone (it gives up after GATEWAY_APPROVAL_WAIT_S; a web process that
            # died while it waited never closed it): closed as the caller would have closed it.
            approval.status, approval.note, approval.decided_at = ToolApproval.Status.REJECTED, "no decision in time", timezone.now()
            approval.save(update_fields=["status", "note", "decided_at"])
        elif approval.status == ToolApproval.Status.PENDING:
            if approve:
                _check_not_own_call(approval, user, api_key_id)
            approval.status = ToolApproval.Status.APPROVED if approve else ToolApproval.Status.REJECTED
            approval.note = get_redactor(team_id).text((note or "").strip())
            approval.decided_by = user
            approval.decided_by_api_key_id = api_key_id if user is None else None
            approval.decided_at = timezone.now()
            approval.save(update_fields=["status", "note", "decided_by", "decided_by_api_key_id", "decided_at"])
            return approval
    if expired:
        raise Conflict(f"approval #{approval_id} expired: its caller stopped waiting for a decision", "status")
    closed = f": {approval.note}" if approval.note and approval.status == ToolApproval.Status.REJECTED else ""
    raise Conflict(f"approval #{approval_id} was already decided ({approval.status}{closed})", "status")


def _check_not_own_call(approval: ToolApproval, user: AbstractBaseUser | None, api_key_id: int | None) -> None:
    """A person other than the caller approves: not the key that made the call, nor the user it
    belongs to (by another of their keys, or on the page). A builder's key holds `run`, and a
    builder ranks above a reviewer, so the waiting caller approved its own call (a review of the
    fixes). Rejecting one's own call is allowed: it only stops it."""
    if approval.api_key_id is None:
        return
    if api_key_id is not None and api_key_id == approval.api_key_id:
        raise OwnCall("a call is approved by someone other than its caller: this key made it")
    holder = ApiKey.objects.filter(pk=approval.api_key_id).values_list("user_id", flat=True).first()
    if holder is not None and user is not None and user.pk == holder:
        raise OwnCall("a call is approved by someone other than its caller: it was made with your API key")


def reject_run_approvals(run_id: int, note: str) -> int:
    """A cancelled run's pending approvals, rejected with `note` (in the caller's transaction).
    Each call they held is refused for good, and audited `approval_rejected` as the gateway
    audits a rejection: a cancel left the rows pending (decidable, never used) and the refused
    calls with no audit row (a review). Returns how many."""
    now = timezone.now()
    rows = list(ToolApproval.objects.select_for_update().filter(run_id=run_id, status=ToolApproval.Status.PENDING))
    if not rows:
        return 0
    ToolApproval.objects.filter(pk__in=[r.pk for r in rows]).update(status=ToolApproval.Status.REJECTED, note=note,
                                                                    decided_at=now)
    AuditEntry.objects.bulk_create([AuditEntry(
        team_id=r.team_id, principal_kind=r.principal_kind, agent_name=r.agent_name, api_key_id=r.api_key_id,
        run_id=r.run_id, step_key=r.step_key, call_id=r.call_id, idempotency_key=r.idempotency_key,
        server_name=r.tool_name.partition("__")[0][:32], tool_name=r.tool_name, arguments=r.arguments,
        status=CallStatus.APPROVAL_REJECTED, error=note, created_at=now) for r in rows])
    return len(rows)


def reject_unanswered_approval(approval_id: int, note: str) -> bool:
    """An approval whose caller stopped waiting (no decision in time, or it went away): rejected
    with `note` if still pending, so that it is not left decidable with no call behind it."""
    return bool(ToolApproval.objects.filter(pk=approval_id, status=ToolApproval.Status.PENDING).update(
        status=ToolApproval.Status.REJECTED, note=note, decided_at=timezone.now()))
