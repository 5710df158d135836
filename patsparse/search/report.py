"""Text tables and the Pareto plot (accuracy vs measured latency) of a search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from patsparse.search.results import SearchResult, TrialSummary
from patsparse.search.space import Choice


def layer_table(config: dict[str, str]) -> list[dict[str, Any]]:
    """Per searched layer: scheme and compression rate of a configuration."""
    rows = []
    for layer, label in config.items():
        c = Choice.parse(label)
        rate = 1.0 if c.scheme == "dense" else (c.compression or 2.25)
        rows.append({"layer": layer, "scheme": c.scheme, "compression": rate})
    return rows


def format_layers(config: dict[str, str]) -> str:
    lines = [f"{'layer':<16}{'scheme':<24}{'compression':>12}"]
    for r in layer_table(config):
        lines.append(f"{r['layer']:<16}{r['scheme']:<24}{r['compression']:>11.2f}x")
    return "\n".join(lines)


def format_trials(
    trials: list[TrialSummary], *, title: str, metric: str = "accuracy", unit: str = "%"
) -> str:
    head = f"{metric} ({unit.strip()})"
    lines = [title, f"{'trial':>5} {'by':<7} {head:>14} {'latency ms':>11} {'ok':>3}  config"]
    for t in trials:
        cfg = ", ".join(f"{k}={v}" for k, v in t.config.items())
        lines.append(
            f"{t.number:>5} {t.proposer:<7} {t.accuracy:>14.2f} {t.latency_ms:>11.4f} "
            f"{'y' if t.feasible else 'n':>3}  {cfg}"
        )
    return "\n".join(lines)


def format_search(result: SearchResult) -> str:
    """Status, the chosen configuration per layer, and the Pareto front."""
    dense = f"{result.dense_ms:.4f} ms" if result.dense_ms is not None else "n/a"
    parts = [
        f"search {result.status}: {result.message}",
        f"constraint {result.constraint_ms:.4f} ms, dense {dense}, fastest corner "
        f"{result.fastest_ms:.4f} ms, {len(result.trials)} trials, latency cache "
        f"{result.cache_hits} hits / {result.cache_misses} measurements",
    ]
    if result.best is not None:
        parts.append(format_layers(result.best.config))
    parts.append(
        format_trials(
            result.pareto,
            title=f"Pareto front ({result.metric} vs latency):",
            metric=result.metric,
            unit=result.unit,
        )
    )
    return "\n".join(parts)


def plot_pareto(result: SearchResult, path: str | Path) -> Path | None:
    """Scatter of every trial, the front and the constraint as a PNG (``None`` without
    matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ok = [t for t in result.trials if t.feasible]
    bad = [t for t in result.trials if not t.feasible]
    ax.scatter([t.latency_ms for t in ok], [t.accuracy for t in ok], s=18, label="feasible")
    ax.scatter(
        [t.latency_ms for t in bad], [t.accuracy for t in bad], s=18, marker="x", label="over"
    )
    front = sorted(result.pareto, key=lambda t: t.latency_ms)
    ax.step(
        [t.latency_ms for t in front],
        [t.accuracy for t in front],
        where="post",
        color="k",
        lw=1,
        label="Pareto front",
    )
    ax.axvline(result.constraint_ms, color="r", ls="--", lw=1, label="constraint")
    if result.best is not None:
        ax.scatter([result.best.latency_ms], [result.best.accuracy], s=80, marker="*", c="gold")
    ax.set_xlabel("measured latency of the compiled model (ms)")
    ax.set_ylabel(f"fast-evaluation {result.metric} ({result.unit.strip()})")
    ax.set_xscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
