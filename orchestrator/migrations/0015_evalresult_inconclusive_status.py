"""EvalResult.status gains `inconclusive` (an attack case whose run failed before it could be judged)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("orchestrator", "0014_budget_reservations")]

    operations = [
        migrations.AlterField(
            model_name="evalresult",
            name="status",
            field=models.CharField(choices=[("passed", "Passed"), ("failed", "Failed"), ("error", "Error"),
                                            ("inconclusive", "Inconclusive")], max_length=12),
        ),
    ]
