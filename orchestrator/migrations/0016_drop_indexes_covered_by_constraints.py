"""Drop the single-column indexes Django made for four foreign keys whose column already leads
a unique constraint or a composite index (steps, ledger entries and events by run; usage
records by team): every write paid for an index no query needs.

Only the indexes go, by `DROP INDEX`: `AlterField` would rebuild each table on SQLite and, on
PostgreSQL, drop and re-add the foreign key, which re-checks every row while it blocks
writes. The reverse creates them again as Django would."""

import django.db.models.deletion
from django.db import migrations, models

COVERED = (("ledgerentry", "run"), ("runevent", "run"), ("steprun", "run"), ("usagerecord", "team"))


def _single_column_indexes(schema_editor, model, column):
    """Names of the plain (not unique, not primary key) indexes on exactly `column`."""
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, model._meta.db_table)
    return [name for name, info in constraints.items()
            if info["index"] and not info["unique"] and not info["primary_key"] and info["columns"] == [column]]


def drop_indexes(apps, schema_editor):
    for model_name, field_name in COVERED:
        model = apps.get_model("orchestrator", model_name)
        column = model._meta.get_field(field_name).column
        for name in _single_column_indexes(schema_editor, model, column):
            schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def create_indexes(apps, schema_editor):
    for model_name, field_name in COVERED:
        model = apps.get_model("orchestrator", model_name)
        field = model._meta.get_field(field_name)
        if not _single_column_indexes(schema_editor, model, field.column):
            schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


class Migration(migrations.Migration):

    dependencies = [
        ('orchestrator', '0015_evalresult_inconclusive_status'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
            state_operations=[
                migrations.AlterField(
                    model_name='ledgerentry',
                    name='run',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='ledger', to='orchestrator.run'),
                ),
                migrations.AlterField(
                    model_name='runevent',
                    name='run',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='orchestrator.run'),
                ),
                migrations.AlterField(
                    model_name='steprun',
                    name='run',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='steps', to='orchestrator.run'),
                ),
                migrations.AlterField(
                    model_name='usagerecord',
                    name='team',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='usage', to='orchestrator.team'),
                ),
            ],
        ),
    ]
