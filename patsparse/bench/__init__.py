"""``patsparse bench``: a pruned model through patsparse vs the dense alternatives, side by side.

One run measures, on the same machine, thread count and input (batch 1, fp32):

- **PyTorch dense** (oneDNN), the unpruned model;
- **patsparse**: the pruned model (3x3 convs with a pattern scheme at the model's rate, 1x1
  convs and linear layers block-pruned at the same rate unless ``others="dense"``) compiled
  by :func:`patsparse.compiler.compile.compile_torch` with the tuning logs found (or made, with
  ``trials``) under ``tuning_logs/<model>/<target key>``;
- **TVM dense, blocked kernel**: the unpruned model through the same pipeline (every conv on
  the register-blocked kernel; hand schedule, or tuned records when present);
- **TVM dense, stock**: the unpruned model through TVM's own lowering, tuned with the same
  trial budget (measured only when tuning records exist or ``trials > 0``: untuned it runs
  naive loops).

End to end it reports the median (min-max, interquartile range, max/min) of ``repeat``
runs per engine, timed in interleaved rounds (every round runs each engine once, the order
rotating), so a slow stretch of the machine hits every engine alike; a measurement whose
max/min exceeds ``max_spread`` is flagged unsteady in the table and the JSON (``unsteady``,
each engine's ``steady``) instead of its ratio being reported as a figure. Several models
run each in a fresh process (:mod:`~patsparse.bench.isolate`). Per 3x3 layer the
patsparse kernel time (the compiled model's own kernel), the blocked dense kernel time and
the PyTorch conv time, each timed inside its engine's whole-model runs (the engines take
turns, one run each), the FLOP reduction and efficiency = speed-up / FLOP reduction. The
PyTorch conv is also timed alone, called again and again on its input (warm caches:
``efficiency_vs_alone``). Also compile and tuning time, weight storage and peak memory (each
engine in a fresh process). See BENCHMARKS.md for the figures.

With ``tracker``/``key`` (and ``target="arm64"``) the engines run on a device behind a TVM
RPC tracker: each is uploaded and timed by the device's runtime (``threads`` sets its pool),
its output checked against PyTorch, and the speed-ups are against TVM dense on the blocked
kernel, since PyTorch does not run there. Tuning (``trials``) measures on the device too. The
per-layer table and peak memory are host measurements and are skipped.

Modules: :mod:`~patsparse.bench.config` (:class:`BenchConfig`, the papers' rates),
:mod:`~patsparse.bench.pruning`, :mod:`~patsparse.bench.torch_timing` (PyTorch timing,
interleaved rounds, hooks), :mod:`~patsparse.bench.spread` (spreads and the unsteady flag),
:mod:`~patsparse.bench.layers` (the per-layer table), :mod:`~patsparse.bench.memory` (peak
memory), :mod:`~patsparse.bench.run` (:func:`run_bench`), :mod:`~patsparse.bench.isolate` (a
model in a fresh process), :mod:`~patsparse.bench.format` (the text output). The TVM side is
:mod:`patsparse.compiler.engines`.
"""

from patsparse.bench.config import PAPER_RATES, BenchConfig, paper_rate
from patsparse.bench.format import format_bench
from patsparse.bench.pruning import prune_for_bench
from patsparse.bench.run import run_bench

__all__ = [
    "PAPER_RATES",
    "BenchConfig",
    "format_bench",
    "paper_rate",
    "prune_for_bench",
    "run_bench",
]
