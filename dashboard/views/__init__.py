"""Dashboard views, one module per area; each parses, calls one query or action, renders."""
