"""Before the unique constraints on a limit's (team, scope, kind, target) (0022): an instance
where two concurrent creates both saved the same limit keeps one row of each such group.

Every row of a group was enforced, so the smallest value was the one that held: that row is
kept (the oldest of equal ones) and the others are deleted with their budget counters and
reservations (the kept row's counter counts the same usage). Its own transaction, apart from
0022: on PostgreSQL an index cannot be built on a table with deletions whose deferred
foreign-key checks are still pending in the same transaction.
"""

from django.db import migrations

TARGETS = {"team": None, "agent": "agent_id", "pipeline": "pipeline_id", "api_key": "api_key_id", "user": "user_id"}


def merge_duplicates(apps, schema_editor):
    Limit = apps.get_model("orchestrator", "Limit")
    seen: set[tuple] = set()
    extra: list[int] = []
    for row in Limit.objects.order_by("team_id", "scope", "kind", "value", "pk").values(
            "pk", "team_id", "scope", "kind", "agent_id", "pipeline_id", "api_key_id", "user_id"):
        if row["scope"] not in TARGETS:
            continue  # no constraint covers it
        column = TARGETS[row["scope"]]
        target = row[column] if column else None
        if column and target is None:
            continue  # no target, so no constraint applies (NULLs never collide)
        key = (row["team_id"], row["scope"], row["kind"], target)
        if key in seen:
            extra.append(row["pk"])
        else:
            seen.add(key)
    if extra:
        Limit.objects.filter(pk__in=extra).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("orchestrator", "0020_evalcase_archived"),
    ]

    operations = [
        migrations.RunPython(merge_duplicates, migrations.RunPython.noop),
    ]
