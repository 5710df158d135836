"""What ``patsparse bench`` measures: :class:`BenchConfig` (the one source of its defaults,
which the CLI's ``bench`` flags take) and the papers' compression rates."""

from __future__ import annotations

from dataclasses import dataclass, field

from patsparse.bench.torch_timing import CLOCKS
from patsparse.core.errors import PatsparseError
from patsparse.models import MODEL_NAMES

#: the papers' compression rates per model family (3x3 layers)
PAPER_RATES = {"vgg16": 12.0, "resnet18": 8.0, "resnet50": 5.8}

#: how 1x1 convs and linear layers are pruned: block-pruned at the same rate, or left dense
OTHERS = ("block", "dense")


def paper_rate(model: str) -> float:
    family = model.split("-")[0]
    return PAPER_RATES.get(family, 8.0)


def _default_logs_root() -> str:
    # the compiler layer's log root; looked up on first use (it loads TVM)
    from patsparse.compiler.tune import DEFAULT_LOG_ROOT

    return str(DEFAULT_LOG_ROOT)


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. ``compression`` defaults to the papers' rate for the model.

    ``logs_root`` defaults to the compiler's tuning-log root (``tuning_logs``); ``None``
    runs the default schedules.
    """

    model: str
    scheme: str = "block-pattern"
    compression: float | None = None
    block_size: int | None = None
    #: how 1x1 convs and linear layers are pruned: "block" (at the same rate) or "dense"
    others: str = "block"
    trials: int = 0
    logs_root: str | None = field(default_factory=_default_logs_root)
    repeat: int = 15
    threads: int | None = None
    layers: bool = True
    tvm_dense: bool = True
    memory: bool = True
    seed: int = 0
    #: "wall" (default) or "cpu" (process CPU time; for a busy machine, with threads=1)
    clock: str = "wall"
    #: a measurement whose slowest run takes more than this times its fastest is flagged
    #: unsteady (table and JSON): a slow stretch of the machine hit some of its runs, and its
    #: ratios are not figures to report (e.g. a VGG-16 run with PyTorch at 492-878 ms)
    max_spread: float = 1.5
    #: check every compiled engine against PyTorch (per layer and end to end) when compiling
    verify: bool = True
    #: after tuning, drop the logs' workloads that are no task of this benchmark any more
    prune_logs: bool = False
    #: where the compiled engines run: "host", or "arm64" on a device behind an RPC tracker
    target: str = "host"
    #: ``HOST:PORT`` of the RPC tracker and the device's key (both, or neither)
    tracker: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise PatsparseError(
                f"unknown model {self.model!r}; bench models: {', '.join(MODEL_NAMES)}",
                fix=f"name a zoo model: {', '.join(MODEL_NAMES)}",
            )
        if self.others not in OTHERS:
            raise PatsparseError(f"others must be 'block' or 'dense', got {self.others!r}")
        if self.compression is not None and self.compression < 1:
            raise PatsparseError(f"compression must be >= 1 (e.g. 8), got {self.compression}")
        if self.repeat < 3:
            raise PatsparseError(
                f"repeat must be >= 3 for a median and a spread, got {self.repeat}"
            )
        if not self.max_spread > 1:
            raise PatsparseError(
                f"max_spread bounds max/min of the runs and must be > 1 (e.g. 1.5), got "
                f"{self.max_spread}"
            )
        if self.clock not in CLOCKS:
            raise PatsparseError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        if self.trials < 0:
            raise PatsparseError(f"trials must be >= 0, got {self.trials}")
        if self.prune_logs and self.logs_root is None:
            raise PatsparseError("prune_logs needs tuning logs: give logs_root (not --no-logs)")
        self._check_device()

    def _check_device(self) -> None:
        from patsparse.compiler.targets import PRESET_NAMES as TARGETS

        if self.target not in TARGETS:
            raise PatsparseError(f"unknown target {self.target!r}; use one of {', '.join(TARGETS)}")
        if self.target == "adreno":
            raise PatsparseError(
                "bench runs whole models, and whole GPU models need TVM's OpenCL runtime on "
                "the device (a phone's RPC app), which remote benchmarking does not drive yet: "
                "bench on --target arm64 or host; tune adreno kernels with 'patsparse tune'"
            )
        if (self.tracker is None) != (self.key is None):
            raise PatsparseError(
                "a remote benchmark needs both --tracker HOST:PORT and --key KEY (list the "
                "keys with 'patsparse rpc query --tracker HOST:PORT')"
            )
        if self.target != "host" and self.tracker is None:
            raise PatsparseError(
                f"{self.target} code cannot run on this machine: pass --tracker HOST:PORT and "
                f"--key KEY of a device ('patsparse devices up {self.target}' starts an "
                "emulated one)"
            )
        if self.remote and self.clock != "wall":
            raise PatsparseError(
                "--clock cpu times this machine's process: a remote device is timed by its "
                "own runtime (wall clock); leave --clock out"
            )

    @property
    def remote(self) -> bool:
        """The engines run on a device behind an RPC tracker (PyTorch is not run there)."""
        return self.tracker is not None

    @property
    def block(self) -> int:
        """Filters per block: ``block_size``, or the target's fp32 vector width."""
        from patsparse.schemes.hardware import default_block_size

        return self.block_size or default_block_size(self.target)

    @property
    def rate(self) -> float:
        return self.compression if self.compression is not None else paper_rate(self.model)
