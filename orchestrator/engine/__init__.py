"""The execution engine: plain async Python that runs a pipeline spec.

It imports nothing from Django, Celery or `config/` (tests/orchestrator/test_engine_imports.py
keeps it so). A runner hands it a spec, a store (where state and events go), the tools, the
models, and optionally a tracer and a log context (`ports.py`; no-ops unless wired); it walks
the spec, persisting every step and tool call before the next one starts, and can resume from
what the store holds.
"""
