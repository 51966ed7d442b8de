"""Human decisions on tool calls whose grant requires approval."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from mcpgateway.errors import GatewayError
from mcpgateway.models import ToolApproval
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
