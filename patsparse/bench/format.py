"""The text ``patsparse bench`` prints for one model (``--json`` prints the dict itself)."""

from __future__ import annotations

from typing import Any

from patsparse.bench.core_link import far_apart_line


def _ms(d: dict[str, float] | None) -> str:
    if not d:
        return "-"
    return f"{d['median']:.3f} ({d['min']:.3f}-{d['max']:.3f})"


def _spread(d: dict[str, Any]) -> str:
    """Interquartile range and max/min of an end-to-end measurement."""
    if "q1" not in d:
        return "-"
    return f"{d['q1']:.3f}-{d['q3']:.3f} {d['max_over_min']:.2f}"


def unsteady_lines(res: dict[str, Any]) -> list[str]:
    """The warnings for end-to-end measurements whose max/min exceeds the bound, and for a
    run during which the host had put the CPUs on distant cores."""
    far = far_apart_line(res.get("core_round_trip_ns") or [])
    flagged = res.get("unsteady") or {}
    if not flagged:
        return [far] if far else []
    names = ", ".join(f"{n} (max/min {v:.2f})" for n, v in flagged.items())
    return [
        f"UNSTEADY: {names} > {res['max_spread']}: a slow stretch of the machine hit some runs;"
        " the ratios marked '!' are not figures to report: rerun on a quiet machine (or with"
        " --clock cpu --threads 1)"
    ] + ([far] if far else [])


def format_bench(res: dict[str, Any]) -> str:
    cfg = res["config"]
    baseline = res.get("baseline", "pytorch_dense")
    where = ""
    if res.get("device"):
        dev = res["device"]
        where = f" on {dev['target']} device {dev['key']!r} via {dev['tracker']},"
    threads = res["threads"] if res["threads"] is not None else "the device's default"
    lines = [
        f"{res['model']}  {cfg['scheme']} {cfg['compression']}x (1x1/linear: {cfg['others']}),"
        f" FLOP reduction {res['flop_reduction']}x,{where} {threads} threads, batch 1 fp32,"
        f" {cfg['clock']} clock,"
        f" logs: {res['logs'] or 'none (default schedules)'}"
        + (
            f" (logs exist for {', '.join(res['logs_for_other_targets'])})"
            if res.get("logs_for_other_targets")
            else ""
        ),
        f"{'engine':<24}{'ms median (min-max)':<30}{'IQR  max/min':<22}{'vs ' + baseline:>24}",
    ]
    flagged = res.get("unsteady") or {}
    for name, d in res["end_to_end_ms"].items():
        # host runs key their speed-ups "speedup_vs_pytorch", device runs by the TVM engine
        speed = d.get(
            "speedup_vs_pytorch" if baseline == "pytorch_dense" else f"speedup_vs_{baseline}"
        )
        # a ratio is as unsteady as either of its two measurements
        mark = " !" if flagged and (name in flagged or baseline in flagged) else ""
        lines.append(
            f"{name:<24}{_ms(d):<30}{_spread(d):<22}"
            + (f"{speed:>23.2f}x" if speed else f"{'-':>24}")
            + mark
        )
    lines.append(
        "efficiency (speed-up / FLOP reduction): "
        f"{res['end_to_end_ms']['patsparse'].get('efficiency', '-')}"
        f"; max abs error vs PyTorch (pruned) {res['max_abs_error_vs_pytorch']:.1e}"
    )
    lines += unsteady_lines(res)
    if res.get("host_only_skipped"):
        lines.append(f"not measured on a device (host only): {', '.join(res['host_only_skipped'])}")
    if res.get("layers"):
        lines.append(
            f"{'3x3 layer':<22}{'FLOPx':>6} {'PyTorch dense':<26}{'patsparse':<26}"
            f"{'TVM dense blocked':<26}{'speed-up':>9}{'eff':>6}{'eff vs PyTorch alone':>22}"
        )
        for r in res["layers"]:
            lines.append(
                f"{r['shape']:<22}{r['flop_reduction']:>6.2f} {_ms(r['pytorch_dense_ms']):<26}"
                f"{_ms(r.get('patsparse_ms')):<26}{_ms(r.get('tvm_dense_blocked_ms')):<26}"
                f"{r.get('speedup_vs_pytorch', 0):>8.2f}x{r.get('efficiency', 0):>6.2f}"
                f"{r.get('efficiency_vs_alone', 0):>22.2f}"
                + (" !" if r.get("unsteady") else "")
                + (f" *{r['patsparse_filters']}" if "patsparse_filters" in r else "")
            )
        lines.append(
            "per layer: every engine timed inside its whole-model runs; 'eff vs PyTorch alone':"
            " against the PyTorch conv called on its own (warm caches)"
            + (
                "; '*N': patsparse computes only the N filters the next conv reads (FLOPx and"
                " eff count the pruned weight's)"
                if any("patsparse_filters" in r for r in res["layers"])
                else ""
            )
            + (
                f"; '!': a time of the row spread wider than max/min {res['max_spread']}"
                if any(r.get("unsteady") for r in res["layers"])
                else ""
            )
        )
    st = res["storage_bytes"]
    lines.append(
        f"weights: dense {st['dense_weights'] / 1e6:.2f} MB, patsparse "
        f"{st['patsparse_weights'] / 1e6:.2f} MB; compile s {res['compile_seconds']}; "
        f"tuning {res['tuning'] or 'none'}"
    )
    if res.get("peak_memory_mb"):
        mem = ", ".join(f"{k} {v['model_mb']:.0f} MB" for k, v in res["peak_memory_mb"].items())
        lines.append(f"peak memory above imports: {mem}")
    return "\n".join(lines)
