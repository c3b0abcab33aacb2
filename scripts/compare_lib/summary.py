"""Turns the raw runs into the result document: output checks across
allocators, medians per cell, ratios to the baseline, geometric means.
Pure data in, pure data out (the same dict is written as results.json)."""
from . import stats


def check_outputs(runs_by_alloc, baseline):
    """Marks runs whose output digest differs from the reference as FAIL."""
    digests = {a: [r.digest for r in runs if r.status == "OK" and r.digest]
               for a, runs in runs_by_alloc.items()}
    ref = stats.reference_digest(digests, baseline)
    for alloc, runs in runs_by_alloc.items():
        for r in runs:
            if r.status == "OK" and r.digest and r.digest != ref:
                r.status = "FAIL"
                r.detail = "output differs from " + (baseline if digests.get(baseline) else "the others")


def summarize_cell(runs):
    """Medians of one workload under one allocator. Any failed round makes
    the whole cell fail: a crash is never averaged away."""
    bad = [r for r in runs if r.status != "OK"]
    cell = {
        "status": stats.worst_status(r.status for r in runs) if runs else "SKIP",
        "detail": bad[0].detail if bad else "",
        "rounds": len(runs),
        "rounds_ok": len(runs) - len(bad),
        "wall_s": None, "cpu_s": None, "rss_kb": None,
        "result": None, "unit": "", "metrics": {},
        "runs": [{"status": r.status, "detail": r.detail, "wall_s": r.wall, "cpu_s": r.cpu,
                  "rss_kb": r.rss_kb, "result": r.result} for r in runs],
    }
    if runs and not bad:
        cell["wall_s"] = stats.median(r.wall for r in runs)
        cell["cpu_s"] = stats.median(r.cpu for r in runs)
        cell["rss_kb"] = stats.median(r.rss_kb for r in runs)
        cell["result"] = stats.median(r.result for r in runs)
        cell["unit"] = runs[0].unit
        names = sorted({k for r in runs for k in r.metrics})
        cell["metrics"] = {k: stats.median(r.metrics.get(k) for r in runs) for k in names}
    return cell


def build(raw, workloads, allocators, baseline, checked, meta):
    """raw: {workload: {allocator: [Run]}}; checked: workloads whose output
    must agree across allocators. Returns the result document."""
    cells = {}
    for w in workloads:
        if w in checked:
            check_outputs(raw[w], baseline)
        cells[w] = {a: summarize_cell(raw[w].get(a, [])) for a in allocators}
        base = cells[w].get(baseline, {})
        for a in allocators:
            c = cells[w][a]
            c["time_ratio"] = stats.ratio(c["wall_s"], base.get("wall_s"))
            c["rss_ratio"] = stats.ratio(c["rss_kb"], base.get("rss_kb"))
    geo = {}
    # Only workloads every allocator completed: an allocator must not gain
    # by failing (crashing on) the workloads it is slowest on.
    common = [w for w in workloads
              if all(cells[w][a]["time_ratio"] is not None for a in allocators)]
    for a in allocators:
        times = [cells[w][a]["time_ratio"] for w in common]
        rss = [cells[w][a]["rss_ratio"] for w in common]
        geo[a] = {"time_ratio": stats.geomean(times), "rss_ratio": stats.geomean(rss),
                  "workloads": len(common), "of": len(workloads)}
    return {"meta": meta, "baseline": baseline, "allocators": list(allocators),
            "workloads": list(workloads), "cells": cells, "geomean": geo}


def failures(doc):
    return [(w, a, c["status"], c["detail"]) for w, row in doc["cells"].items()
            for a, c in row.items() if c["status"] not in ("OK", "SKIP")]
