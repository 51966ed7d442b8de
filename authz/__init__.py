"""Authorization: one policy table (`authz.policy`) and the routes that use it (`authz.routes`).

Imports no models, so the gateway, the orchestrator, the dashboard and config may all use it.
"""
