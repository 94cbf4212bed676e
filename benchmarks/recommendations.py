"""What a deployer should pick: for lowest latency, highest throughput and smallest size, which format at
which batch size, at what accuracy cost, load time and memory.

Each choice is made from the measurements alone, per device. When the
fastest or smallest format loses more accuracy than the budget (default
1 point against the reference, on the bench's accuracy images), the best one
within the budget is listed beside it, so a trade is never hidden.
"""

from __future__ import annotations

from collections.abc import Callable

ACCURACY_BUDGET_POINTS = 1.0


def measured_entries(results: dict, device: str) -> list[dict]:
    """Formats that ran and were timed on ``device``."""
    return [e for e in results["formats"] if "error" not in e and e.get("timed", True) and e["device"] == device
            and e.get("measurements")]


def _within(entry: dict, budget: float) -> bool:
    drop = entry.get("accuracy_drop_points")
    return drop is not None and drop <= budget


def _cost(entry: dict) -> str:
    drop = entry.get("accuracy_drop_points")
    if drop is None:
        return "not measured"
    images = (entry.get("accuracy") or {}).get("images")
    return f"{0.0 - drop:+.2f} pt" + (f" ({images} images)" if images else "")


def _row(need: str, device: str, entry: dict, measurement: dict | None, measured: str) -> dict:
    return {"need": need, "device": device, "format": entry["format"], "runtime": entry.get("runtime", ""),
            "precision": entry.get("precision", ""), "threads": entry.get("threads"),
            "batch_size": measurement["batch_size"] if measurement else None, "measured": measured,
            "accuracy_cost": _cost(entry), "accuracy_drop_points": entry.get("accuracy_drop_points"),
            "load_seconds": entry.get("load_seconds"), "peak_memory_mb": entry.get("peak_memory_mb"),
            "size_bytes": entry.get("size_bytes")}


def recommendations(results: dict, budget: float = ACCURACY_BUDGET_POINTS) -> list[dict]:
    rows: list[dict] = []
    for device in ("cpu", "cuda"):
        entries = measured_entries(results, device)
        pairs = [(e, m) for e in entries for m in e["measurements"]]
        needs: list[tuple[str, list, Callable, Callable, Callable]] = [
            ("lowest latency", [p for p in pairs if p[1]["batch_size"] == 1], lambda p: p[1]["p50_ms"], min,
             lambda p: f"p50 {p[1]['p50_ms']:.2f} ms, p99 {p[1]['p99_ms']:.2f} ms"),
            ("highest throughput", pairs, lambda p: p[1]["throughput"], max,
             lambda p: f"{p[1]['throughput']:.1f} img/s"),
            ("smallest file", [(e, None) for e in entries if e.get("size_bytes")], lambda p: p[0]["size_bytes"],
             min, lambda p: f"{p[0]['size_bytes'] / 1e6:.2f} MB"),
        ]
        for need, candidates, key, choose, describe in needs:
            if not candidates:
                continue
            best = choose(candidates, key=key)
            rows.append(_row(need, device, best[0], best[1], describe(best)))
            if not _within(best[0], budget):
                kept = [p for p in candidates if _within(p[0], budget)]
                if kept:
                    alternative = choose(kept, key=key)
                    rows.append(_row(f"{need}, within {budget:g} point", device, alternative[0], alternative[1],
                                     describe(alternative)))
    return rows


def markdown_table(rows: list[dict]) -> list[str]:
    lines = ["| for | device | format | batch | measured | accuracy vs reference | load s | peak mem MB |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        threads = f", {row['threads']} threads" if row["threads"] else ""
        lines.append(f"| {row['need']} | {row['device']} | {row['format']} ({row['runtime']}{threads}) | "
                     f"{row['batch_size'] if row['batch_size'] else 'any'} | {row['measured']} | "
                     f"{row['accuracy_cost']} | "
                     f"{'–' if row['load_seconds'] is None else format(row['load_seconds'], '.2f')} | "
                     f"{'–' if row['peak_memory_mb'] is None else format(row['peak_memory_mb'], '.0f')} |")
    return lines
