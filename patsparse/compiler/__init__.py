"""The one layer of patsparse that talks to TVM (through ``tvm_ext``).

Compile a PyTorch module (:mod:`~patsparse.compiler.compile`), tune it
(:mod:`~patsparse.compiler.tune`), measure candidates for the search
(:mod:`~patsparse.compiler.latency`), time it per layer (:mod:`~patsparse.compiler.engines`),
run it on a device behind an RPC tracker (:mod:`~patsparse.compiler.remote`). The CLI, bench
and the search reach TVM only through here; importing this package loads TVM.
"""

from patsparse.compiler.compile import compile_torch, import_torch

__all__ = ["compile_torch", "import_torch"]
