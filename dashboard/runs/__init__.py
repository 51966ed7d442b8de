"""The runs area's read side: the keyset-paginated list, the start form, the live run tree.

Views in `dashboard/views/runs.py` parse a request, call one of these (or an action), and
render; nothing here writes.
"""
