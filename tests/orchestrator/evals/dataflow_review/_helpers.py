from orchestrator.engine.dataflow import StepFlow
from orchestrator.engine.defences import Defences

IBAN = "DE89370400440532013000"


def flow(request: str, document: str, **defences) -> StepFlow:
    f = StepFlow.for_step(Defences.parse({"dataflow": "refuse", **defences}), system_prompt="",
                          run_input={"prompt": request}, template="{{ input.prompt }}", prompt=request)
    f.observe("docs__read", document)
    return f


def timed(fn) -> float:
    import time

    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
