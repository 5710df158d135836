"""Every TVM import patsparse uses, in one place.

TVM renames modules between releases (``tir`` → ``tirx``, ``tvm.tir.Schedule`` →
``tvm.s_tir.Schedule``, ``tvm.meta_schedule`` → ``tvm.s_tir.meta_schedule``, ``tvm.nd.array``
→ ``tvm.runtime.tensor``, ``tvm.contrib.{utils,cc}`` → ``tvm.support.{utils,cc}``). The rest
of ``tvm_ext`` imports these names from here, so supporting another release means editing
this file only. Built and tested against apache-tvm 0.27.0.post1.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import tvm_ext._tvm_without_torch  # noqa: F401  (first: TVM loads without torch)

# isort: split
import tvm
import tvm.s_tir.meta_schedule as meta_schedule
from tvm import relax, rpc, te, tirx, topi
from tvm.ir import Constant as IRConstant
from tvm.ir.utils import derived_object  # MetaSchedule's Py* subclasses need it
from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline
from tvm.relax.ir.instrument import WellFormedInstrument
from tvm.rpc import base as rpc_base
from tvm.rpc.server import Server as RPCServer
from tvm.rpc.tracker import Tracker as RPCTracker
from tvm.s_tir import Schedule
from tvm.s_tir.stmt import SBlockRealize  # ``tvm.tir.BlockRealize`` before 0.27
from tvm.support import cc, utils
from tvm.support.popen_pool import PopenPoolExecutor
from tvm.sym import Analyzer  # ``tvm.arith.Analyzer`` before 0.27
from tvm.target import Target
from tvm.tirx.analysis import undefined_vars  # ``tvm.tir.analysis`` before 0.27
from tvm_ffi import structural_equal  # ``tvm.ir.structural_equal`` in TVM < 0.25

TVM_VERSION: str = tvm.__version__
SUPPORTED_VERSIONS = ("0.27",)

#: array constructor (``tvm.nd.array`` in TVM < 0.25)
tensor = tvm.runtime.tensor


def from_exported_program(exported: Any, **options: Any) -> Any:
    """TVM's torch.export importer (``tvm.relax.frontend.torch``), imported on first use:
    that module imports torch, which ``tvm_ext`` itself never loads."""
    from tvm.relax.frontend.torch import from_exported_program as importer

    return importer(exported, **options)


def from_onnx(model: Any, **options: Any) -> Any:
    """TVM's ONNX importer (``tvm.relax.frontend.onnx``), imported on first use: it needs the
    optional ``onnx`` package (``pip install 'patsparse[onnx]'``).

    ``model``: an ``onnx.ModelProto`` or the path of an ``.onnx`` file. The weights become
    constants (TVM's default, ``keep_params_in_input=False``): the passes read a conv's
    sparsity off its constant weight and leave convs whose weight is an input untouched.
    """
    try:
        import onnx
        from tvm.relax.frontend.onnx import from_onnx as importer
    except ImportError as exc:
        from patsparse.core.errors import PatsparseError

        fix = "pip install 'patsparse[onnx]' (or: pip install onnx)"
        raise PatsparseError(
            f"importing an ONNX model needs the onnx package ({exc}): {fix}", fix=fix
        ) from exc
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    return importer(model, **options)


@contextlib.contextmanager
def metaschedule_logging() -> Iterator[None]:
    """Around MetaSchedule's tune-context creation and ``tune_tasks``.

    Its loggers write to stdout: redirected to stderr (stdout stays for results such as
    ``--json``). Its logger setup lists the names of the handlers already on the
    ``tvm.s_tir.meta_schedule`` logger and crashes on an unnamed one, which other code may
    add (pytest >= 9.2 attaches its capture handler to every non-propagating logger): those
    are detached for the duration and put back afterwards.
    """
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    unnamed = [h for h in ms_logger.handlers if h.get_name() is None]
    for h in unnamed:
        ms_logger.removeHandler(h)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for h in unnamed:
            ms_logger.addHandler(h)


def cpu_threads() -> int:
    """Threads the TVM runtime will use: ``TVM_NUM_THREADS`` or all cores.

    The 0.27 runtime defaulted to one thread on these machines, so anything that measures
    sets ``TVM_NUM_THREADS`` explicitly (see :func:`set_threads`).
    """
    value = os.environ.get("TVM_NUM_THREADS")
    return int(value) if value else (os.cpu_count() or 1)


def set_threads(n: int | None = None) -> int:
    """Set ``TVM_NUM_THREADS`` (before the runtime's thread pool starts) and return it."""
    n = n or os.cpu_count() or 1
    os.environ["TVM_NUM_THREADS"] = str(n)
    return n


def schedulable_copy(node: Any) -> Any:
    """A deep copy of a PrimFunc or IRModule to build a ``Schedule`` from.

    In 0.27 a ``Schedule`` built over a function mutates that function's loops in place (the
    body is shared, not copied on write), so scheduling a function the caller still holds
    (a tuning task, a function inside a module) would schedule theirs too.
    """
    return tvm.ir.load_json(tvm.ir.save_json(node))


def host_target(*, num_cores: int | None = None) -> Target:
    """An llvm target for this CPU (``mcpu`` from LLVM's host detection)."""
    cpu = tvm.target.codegen.llvm_get_system_cpu()
    return Target({"kind": "llvm", "mcpu": cpu, "num-cores": num_cores or cpu_threads()})


def host_triple() -> str:
    """LLVM's triple of this machine, e.g. ``x86_64-pc-linux-gnu``."""
    return str(tvm.target.codegen.llvm_get_system_triple())


def close_rpc_session(session: object) -> None:
    """Drop an RPC session's connection now, so the device is free for the next client.

    TVM's ``RPCSession`` has no ``close()``: the connection ends when the last reference to
    its session module goes, and remote devices point back at the session (a cycle that only
    the garbage collector breaks, minutes later or never). Remote tensors still alive keep
    the connection until they go too.
    """
    if getattr(session, "_sess", None) is not None:
        session._sess = None  # type: ignore[attr-defined]
        session._remote_funcs.clear()  # type: ignore[attr-defined]
    gc.collect()


__all__ = [
    "SUPPORTED_VERSIONS",
    "TVM_VERSION",
    "Analyzer",
    "IRConstant",
    "PopenPoolExecutor",
    "RPCServer",
    "RPCTracker",
    "SBlockRealize",
    "Schedule",
    "Target",
    "WellFormedInstrument",
    "cc",
    "close_rpc_session",
    "cpu_pipeline",
    "cpu_threads",
    "derived_object",
    "from_exported_program",
    "from_onnx",
    "host_target",
    "host_triple",
    "meta_schedule",
    "metaschedule_logging",
    "relax",
    "rpc",
    "rpc_base",
    "schedulable_copy",
    "set_threads",
    "structural_equal",
    "te",
    "tensor",
    "tirx",
    "topi",
    "tvm",
    "undefined_vars",
    "utils",
]
