"""Every write of the gateway, split by noun: servers (and their secrets and config
files), the catalogue, grants, API keys, approvals."""
