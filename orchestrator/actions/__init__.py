"""Every write of the orchestrator: `check_*` validates, `do_*` writes and announces,
`access_*` fetches with a permission check. Split by domain noun."""

from orchestrator.actions.pipelines import do_create_pipeline, do_save_pipeline_version
from orchestrator.actions.reviews import do_decide_review
from orchestrator.actions.runs import (
    check_run_input,
    do_cancel_run,
    do_fail_run,
    do_resume_run,
    do_start_run,
)
from orchestrator.actions.teams import access_team, do_add_member, do_create_agent, do_create_team

__all__ = [
    "access_team",
    "check_run_input",
    "do_add_member",
    "do_cancel_run",
    "do_create_agent",
    "do_create_pipeline",
    "do_create_team",
    "do_decide_review",
    "do_fail_run",
    "do_resume_run",
    "do_save_pipeline_version",
    "do_start_run",
]
