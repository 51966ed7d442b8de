from tests.orchestrator.evals.dataflow_review._helpers import IBAN, flow  # noqa: F401

SPACED = "DE89 3704 0044 0532 0130 00"


def check(request: str, document: str, arguments: dict, *, tool: str = "bank__transfer", **defences):
    return flow(request, document, **defences).check(tool, arguments)
