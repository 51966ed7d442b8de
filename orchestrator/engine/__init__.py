"""The execution engine: plain async Python that runs a pipeline spec.

It knows nothing of Django views or Celery. A runner hands it a spec, a store (where
state and events go), the tools, the models and a cancel signal; it walks the spec,
persisting after every step and tool call, and can resume from what the store holds.
"""
