"""How far apart the cores a multi-threaded benchmark runs on are: a cache-line round trip.

On a virtual machine the host decides where the guest's CPUs run, and it moves them. Two
vCPUs on cores that share a cache pass a cache line back and forth in ~50-65 ns; on cores
in different core complexes (another CCD of an EPYC), ~320-370 ns (2-core KVM guest, AMD
EPYC, 2026-12-05: the figure switched between the two every few seconds to minutes). Every
engine that runs on both cores synchronises its threads and shares data through those
lines, so while the cores are far apart all two-thread timings slow down, the ones with the
most synchronisation most: a per-kernel pattern model 1.85x, a block-pattern one 1.25x,
PyTorch 1.23x; one-thread timings do not change. This was the "slow process" of
BENCHMARKS.md: a state of the host, not of the process.

:func:`round_trip_ns` measures it: two threads pinned to the first two CPUs the process may
use bounce a cache line 200,000 times (a small C program, built once per process with the
system C compiler, which TVM needs too for exporting libraries). The benchmarks record it
before and after timing and flag their figures when it exceeds :data:`FAR_NS`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: a round trip above this (ns) means the cores were far apart (see the module docstring)
FAR_NS = 150.0

_PING_PONG_C = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static _Atomic int flag __attribute__((aligned(64)));
static int cpus[2];
enum { ROUNDS = 200000 };
static void pin(int c) {
  cpu_set_t s; CPU_ZERO(&s); CPU_SET(c, &s);
  pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}
static void *other(void *arg) {
  (void)arg; pin(cpus[1]);
  for (int i = 0; i < 2 * ROUNDS; i++) {
    while (atomic_load_explicit(&flag, memory_order_acquire) != 1) {}
    atomic_store_explicit(&flag, 0, memory_order_release);
  }
  return 0;
}
static double bounce(void) {
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < ROUNDS; i++) {
    atomic_store_explicit(&flag, 1, memory_order_release);
    while (atomic_load_explicit(&flag, memory_order_acquire) != 0) {}
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / ROUNDS;
}
int main(int argc, char **argv) {
  if (argc != 3) return 2;
  cpus[0] = atoi(argv[1]); cpus[1] = atoi(argv[2]);
  pthread_t t; pin(cpus[0]);
  if (pthread_create(&t, 0, other, 0)) return 3;
  bounce();  /* warm-up */
  printf("%.1f\n", bounce());
  pthread_join(t, 0);
  return 0;
}
"""


@functools.cache
def _program() -> Path | None:
    """The ping-pong program, built once per process; None without a C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="patsparse-core-link-"))
    src, exe = folder / "ping_pong.c", folder / "ping_pong"
    src.write_text(_PING_PONG_C)
    built = subprocess.run(
        [cc, "-O2", "-pthread", "-o", str(exe), str(src)], capture_output=True, check=False
    )
    return exe if built.returncode == 0 else None


def round_trip_ns() -> float | None:
    """One cache-line round trip between the first two CPUs this process may run on (ns);
    None where it cannot be measured (one CPU, no C compiler, not Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    exe = _program() if len(cpus) >= 2 else None
    if exe is None:
        return None
    run = subprocess.run(
        [str(exe), str(cpus[0]), str(cpus[1])], capture_output=True, text=True, check=False
    )
    try:
        return float(run.stdout.strip()) if run.returncode == 0 else None
    except ValueError:
        return None


@contextlib.contextmanager
def round_trips() -> Iterator[list[float | None]]:
    """``with round_trips() as link: <timing>``: ``link`` holds the round trip before the
    block, then also the one after it (what the benchmarks record and flag)."""
    samples = [round_trip_ns()]
    yield samples
    samples.append(round_trip_ns())


def far_apart(samples: list[float | None]) -> bool:
    """Whether any of the measured round trips says the cores were far apart."""
    return any(s is not None and s > FAR_NS for s in samples)


def far_apart_line(samples: list[float | None]) -> str | None:
    """The warning for a run during which the cores were far apart, else None."""
    if not far_apart(samples):
        return None
    shown = ", ".join("-" if s is None else f"{s:.0f}" for s in samples)
    return (
        f"CORES FAR APART: a cache-line round trip between the two CPUs took {shown} ns "
        f"(> {FAR_NS:.0f}; ~50-65 when they share a cache): the host placed this machine's CPUs "
        "on distant cores, and every two-thread time is 1.2-1.9x slower than it is otherwise "
        "(one-thread times are not); rerun for figures to report"
    )
