"""The steady allocator: large blocks stay mapped between calls (no page faults per call)."""

from __future__ import annotations

import json
import subprocess
import sys

_SCRIPT = """
import json, resource, torch
from patsparse.bench.allocator import steady_allocator

def faults_of_calls():
    # a 64 MiB activation allocated, written and freed per call, as PyTorch's are
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.empty(16 << 20).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults_of_calls()
what = steady_allocator()
faults_of_calls()  # the first call after maps the block once
steady = faults_of_calls()
print(json.dumps({"default": default, "steady": steady, "what": what}))
"""


def test_large_blocks_fault_on_every_call_until_the_allocator_is_steady():
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if not r["what"].startswith("glibc "):  # another C library: nothing set, and it says so
        assert r["what"].startswith("allocator unchanged")
        return
    pages = (64 << 20) // 4096
    assert r["default"] >= 4 * pages  # every call faults its 16,384 pages in again
    assert r["steady"] < pages // 10, r  # kept in the heap: (almost) none
    assert r["what"].startswith("glibc ") and "1024 MiB" in r["what"]
