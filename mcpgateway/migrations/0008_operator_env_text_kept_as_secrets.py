"""Env values that hold an operator's text beside placeholders or references, stored in clear
before (every team member read them back), become the server's own encrypted secrets, as
literal values always were; the env keeps `${NAME}` (`actions/templates.py: composed_env`,
`actions/servers.py: _split_secrets`)."""

import re

from django.db import migrations

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _secret_name(key):
    name = re.sub(r"[^A-Za-z0-9_]", "_", key).upper()
    return name if name and not name[0].isdigit() else f"_{name}"


def forwards(apps, schema_editor):
    from mcpgateway import crypto

    ToolServer = apps.get_model("mcpgateway", "ToolServer")
    ServerSecret = apps.get_model("mcpgateway", "ServerSecret")
    for server in ToolServer.objects.exclude(env={}).select_related("template").iterator():
        template_env = (server.template.env or {}) if server.template_id else None
        env, changed = dict(server.env or {}), False
        for key, value in (server.env or {}).items():
            if not isinstance(value, str):
                continue
            name = _secret_name(key)
            if value == "${" + name + "}":
                continue
            if template_env is not None:
                source = template_env.get(key, "")
                composed = PLACEHOLDER.search(source) and REF.sub("", PLACEHOLDER.sub("", source)).strip()
            else:
                composed = REF.search(value) and REF.sub("", value).strip()
            if not composed or ServerSecret.objects.filter(server_id=server.pk, name=name).exists():
                continue  # (a secret of that name already: left as it is, rather than replaced)
            ServerSecret.objects.create(server_id=server.pk, name=name, value_encrypted=crypto.encrypt(value))
            env[key], changed = "${" + name + "}", True
        if changed:
            ToolServer.objects.filter(pk=server.pk).update(env=env)


class Migration(migrations.Migration):

    dependencies = [("mcpgateway", "0007_approval_decided_by_key")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
