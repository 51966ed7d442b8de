"""The review queue: what paused runs are waiting for, and the decisions that continue them.

Everyone in the team sees the queue; reviewers and above claim, assign and decide. Every
decision goes through `do_decide_review`, which resumes the run.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from dashboard import queries
from dashboard.access import can, team_view
from mcpgateway import queries as gateway_queries
from mcpgateway.actions.approvals import do_decide_call_approval
from mcpgateway.errors import GatewayError
from mcpgateway.models import ApiKey
from mcpgateway.whole_numbers import is_whole
from orchestrator.actions.errors import ActionError
from orchestrator.actions.reviews import do_assign_review, do_claim_review, do_decide_review
from orchestrator.engine.document_guard import DocumentError, load_typed_json
from orchestrator.models import ReviewItem

# The decide form's buttons and how a success is announced.
DECISIONS = {
    "approve": "Approved",
    "edit": "Approved with edits",
    "retry": "Retrying",
    "resume": "Resumed",
    "reject": "Rejected",
    "skip": "Skipped the interrupted call",
    "edit_result": "Continued with the reviewer's result",
}


NOT_A_MEMBER = "not a member of this team"


def _tab(request: HttpRequest) -> str:
    return "decided" if request.GET.get("tab") == "decided" else "pending"


def _list_context(request: HttpRequest) -> dict[str, Any]:
    tab = _tab(request)
    mine = request.GET.get("mine") == "1"
    return {
        "tab": tab,
        "mine": mine,
        "items": queries.review_items(request.team.pk, tab, assigned_to=request.user.pk if mine else None),
        # Calls API clients made over /mcp, waiting on a person (only the Django admin could
        # decide them before). They are nobody's to claim: the caller waits, so they come first.
        "approvals": gateway_queries.call_approvals(request.team.pk) if tab == "pending" and not mine else [],
        # The reader's own keys: their calls are approved by someone else (`OwnCall`), so those
        # rows offer Reject (withdraw) only.
        "own_keys": set(ApiKey.objects.filter(team_id=request.team.pk, user=request.user).values_list("pk", flat=True)),
        "pending_total": queries.pending_count(request.team.pk),
        "can_decide": can(request, "review.decide"),
    }


@team_view("review.view")
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/review/index.html", _list_context(request))


@team_view("review.view")
def item_list(request: HttpRequest) -> HttpResponse:
    """The list alone, for htmx to swap in when a team event arrives."""
    return render(request, "dashboard/review/list.html", {**_list_context(request), "partial": True})


def _item(request: HttpRequest, pk: int) -> ReviewItem:
    return get_object_or_404(ReviewItem.objects.select_related("run__pipeline_version__pipeline", "decided_by",
                                                               "assigned_to"), pk=pk, team=request.team)


def _detail(request: HttpRequest, item: ReviewItem, status: int = 200, error: str = "", field: str = "",
            posted: dict[str, Any] | None = None) -> HttpResponse:
    item.actions = queries.review_actions(item)
    info = queries.review_detail(item)
    if posted and "output" in posted:
        info["edit_text"] = posted["output"]
    return render(request, "dashboard/review/detail.html", {
        "item": item,
        "detail": info,
        "can_decide": can(request, "review.decide") and item.status == ReviewItem.Status.PENDING,
        "reviewers": queries.reviewers(request.team.pk),
        "error": error,
        "error_field": field,
        "posted": posted or {},
    }, status=status)


@team_view("review.view")
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _detail(request, _item(request, pk))


def _back(request: HttpRequest, item: ReviewItem) -> HttpResponse:
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("review-item", args=[item.pk])
    return redirect(target)


def _same_text(a: str, b: str) -> bool:
    """Browsers send textarea text with CRLF line ends and may trim the trailing newline."""
    return a.replace("\r\n", "\n").rstrip("\n") == b.replace("\r\n", "\n").rstrip("\n")


def _decision(post: Any, original_text: str | None = None) -> dict[str, Any]:
    """The form's decision as do_decide_review's arguments; ActionError names the bad field.

    There is one approve button: when the reviewer changed the output text, approving uses
    the edit (an edit is never dropped silently). A rejection needs its reason.
    """
    submit = post.get("submit", "")
    if submit not in DECISIONS:
        raise ActionError(f"unknown decision {submit!r}", "submit")
    if (submit == "approve" and "output" in post and original_text is not None
            and not _same_text(post.get("output", ""), original_text)):
        submit = "edit"
    if submit == "reject" and not post.get("note", "").strip():
        raise ActionError("say why you reject it: the reason is shown in the run's trace", "note")
    args: dict[str, Any] = {"action": "approve" if submit == "edit" else submit, "note": post.get("note", "").strip()}
    if submit == "edit":
        text = post.get("output", "").replace("\r\n", "\n")  # what the reviewer typed, not the browser's line ends
        if post.get("output_json") == "1":
            try:
                args["output"] = load_typed_json(text)
            except DocumentError as exc:  # a syntax error, NaN or 1e400, a repeated key, too deep
                raise ActionError(f"the output is not valid JSON: {exc.problem.message}", "output") from None
        else:
            args["output"] = text
    if submit == "edit_result":
        args["output"] = post.get("call_result", "")
    if submit == "resume":
        budget: dict[str, Any] = {}
        raw_tokens, raw_cost = post.get("max_tokens", "").strip(), post.get("max_cost_usd", "").strip()
        if raw_tokens:
            if not is_whole(raw_tokens) or int(raw_tokens) < 1:
                raise ActionError("the token budget is a whole number above zero", "max_tokens")
            budget["max_tokens"] = int(raw_tokens)
        if raw_cost:
            try:
                cost = Decimal(raw_cost)
            except InvalidOperation:
                cost = Decimal(0)
            if not cost.is_finite() or cost <= 0:
                raise ActionError("the dollar budget is a number above zero", "max_cost_usd")
            budget["max_cost_usd"] = float(cost)
        args["raise_budget"] = budget or None
    return args


@require_POST
@team_view("review.decide")
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    item = _item(request, pk)
    try:
        args = _decision(request.POST, queries.review_detail(item)["edit_text"])
        do_decide_review(item, request.user, **args)
    except ActionError as exc:  # Conflict included: someone decided it first
        item.refresh_from_db()
        return _detail(request, item, status=409 if exc.code == "conflict" else 400, error=exc.message,
                       field=exc.field, posted=request.POST.dict())
    announced = "edit" if args.get("output") is not None and request.POST["submit"] == "approve" else request.POST["submit"]
    messages.success(request, f"{DECISIONS[announced]}: {item} in run {item.run_id}.")
    return _back(request, item)


@require_POST
@team_view("review.claim")
def claim(request: HttpRequest, pk: int) -> HttpResponse:
    item = _item(request, pk)
    try:
        do_claim_review(item, request.user)
        messages.success(request, f"You took {item}.")
    except ActionError as exc:
        messages.error(request, exc.message)
    return _back(request, item)


@require_POST
@team_view("review.assign")
def assign(request: HttpRequest, pk: int) -> HttpResponse:
    item = _item(request, pk)
    raw = request.POST.get("assignee", "")
    # Looked up among this team's members only: an id from elsewhere gets the same answer as
    # one that does not exist, so the form cannot be used to discover other teams' users.
    assignee = (get_user_model().objects.filter(pk=int(raw), memberships__team=request.team).first()
                if is_whole(raw) else None)
    try:
        if raw and assignee is None:
            raise ActionError(NOT_A_MEMBER, "assignee")
        do_assign_review(item, assignee, request.user)
        messages.success(request, f"Assigned {item} to {assignee.get_username()}." if assignee else f"Unassigned {item}.")
    except ActionError as exc:
        messages.error(request, exc.message)
    return _back(request, item)


@require_POST
@team_view("review.decide")
def decide_approval(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or reject a call an API client is waiting on (`do_decide_call_approval`)."""
    verdict = request.POST.get("submit")
    if verdict not in ("approve", "reject"):
        messages.error(request, "choose approve or reject")
    else:
        try:
            row = do_decide_call_approval(request.team.pk, pk, verdict == "approve", request.user,
                                          request.POST.get("note", "")[:2000])
            messages.success(request, f"{'Approved' if verdict == 'approve' else 'Rejected'}: the call to {row.tool_name}.")
        except GatewayError as exc:  # another reviewer first, an expired call, another team's id (404)
            if exc.code == "not_found":
                raise Http404(exc.message) from None
            messages.error(request, exc.message)
    return redirect("review-queue")


urlpatterns = [
    path("", index, name="review-queue"),
    path("list/", item_list, name="review-list"),
    path("<int:pk>/", detail, name="review-item"),
    path("<int:pk>/decide/", decide, name="review-decide"),
    path("<int:pk>/claim/", claim, name="review-claim"),
    path("<int:pk>/assign/", assign, name="review-assign"),
    path("approvals/<int:pk>/decide/", decide_approval, name="review-approval-decide"),
]
