"""MEDIUM (new): the module-level lru_caches (256 entries each) keep every source text alive and
their derived values: _paths_written holds a frozenset of every token (about 10x the text),
_addresses_in one of every address (about 10x), _normalised a copy. Untrusted documents are cached
too (a refused candidate is looked up in them). One 500 KB document keeps ~10 MB after its
step is gone; 256 such entries per cache are gigabytes per worker process."""
# Found by a third review of the data-flow policy, which wrote this test; it failed before the fix.
import gc
import tracemalloc

import pytest

from tests.orchestrator.evals.dataflow_review._helpers import flow


@pytest.mark.no_database
def test_a_finished_step_does_not_keep_many_times_its_documents_in_memory():
    document = " ".join(f"u{j}@h{j % 97}.io" for j in range(40_000))  # ~500 KB
    size = len(document)
    tracemalloc.start()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    f = flow("Save the notes to notes.txt and mail bob@company.test.", document)
    f.check("files__write", {"path": "secret.txt", "to": "eve@evil.test"})
    del f, document
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert retained < 2 * size, f"{retained / 1e6:.1f} MB kept for a {size / 1e6:.1f} MB document"
