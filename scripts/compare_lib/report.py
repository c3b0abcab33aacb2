"""Renders the result document: the terminal table, results.csv and
results.json."""
import csv
import json

TIME_W, RATIO_W, RSS_W = 8, 7, 9
GROUP_W = TIME_W + RATIO_W + RSS_W


def fmt_time(s):
    return f"{s:.3f}" if s < 10 else f"{s:.2f}" if s < 100 else f"{s:.1f}"


def fmt_num(v):
    """Compact figure for a workload's own result: 27.4M, 1.3k."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def cell_text(c):
    if c["status"] != "OK":
        text = c["status"] if c["status"] != "CRASH" else f"CRASH {c['detail']}"
        return text[:GROUP_W - 1].center(GROUP_W)
    ratio = f"{c['time_ratio']:.2f}" if c["time_ratio"] is not None else "-"
    return (f"{fmt_time(c['wall_s']):>{TIME_W}}{ratio:>{RATIO_W}}"
            f"{c['rss_kb'] / 1024:>{RSS_W}.1f}")


def table(doc):
    allocs, base = doc["allocators"], doc["baseline"]
    name_w = max([len(w) for w in doc["workloads"]] + [len("geomean"), 8])
    lines = [" " * name_w + "".join(f" | {a:^{GROUP_W}}" for a in allocs),
             f"{'workload':<{name_w}}" + "".join(
                 f" | {'time s':>{TIME_W}}{'x' + base[:RATIO_W - 2]:>{RATIO_W}}{'RSS MiB':>{RSS_W}}"
                 for _ in allocs)]
    lines.append("-" * len(lines[1]))
    for w in doc["workloads"]:
        lines.append(f"{w:<{name_w}}" + "".join(f" | {cell_text(doc['cells'][w][a])}" for a in allocs))
    lines.append("-" * len(lines[1]))
    geo = ""
    for a in allocs:
        g = doc["geomean"][a]
        t = f"{g['time_ratio']:.2f}" if g["time_ratio"] else "-"
        r = f"x{g['rss_ratio']:.2f}" if g["rss_ratio"] else "-"
        geo += f" | {'':>{TIME_W}}{t:>{RATIO_W}}{r:>{RSS_W}}"
    lines.append(f"{'geomean':<{name_w}}" + geo)
    g0 = next(iter(doc["geomean"].values()))
    if g0.get("of") and g0["workloads"] < g0["of"]:
        lines.append(f"geomean over the {g0['workloads']} of {g0['of']} workloads that every allocator completed")
    lines.append(f"median of {doc['meta']['rounds']} round(s); x{base} = time relative to {base} "
                 f"(lower is better); geomean RSS column: peak RSS relative to {base}")
    return "\n".join(lines)


def figures_table(doc):
    """The figures the workloads print themselves (result: and metrics)."""
    allocs = doc["allocators"]
    rows = []
    for w in doc["workloads"]:
        row = doc["cells"][w]
        unit = next((c["unit"] for c in row.values() if c["unit"]), "")
        if unit:
            rows.append((f"{w} ({unit})", [row[a]["result"] for a in allocs]))
        names = sorted({k for c in row.values() for k in c["metrics"]})
        rows += [(f"{w} {k}", [row[a]["metrics"].get(k) for a in allocs]) for k in names]
    if not rows:
        return ""
    name_w = max(len(r[0]) for r in rows)
    col_w = max(10, max(len(a) for a in allocs) + 1)
    lines = ["Figures printed by the workloads (median; result lines: higher is better)",
             f"{'':<{name_w}}" + "".join(f"{a:>{col_w}}" for a in allocs)]
    for label, values in rows:
        lines.append(f"{label:<{name_w}}" + "".join(
            f"{(fmt_num(v) if v is not None else '-'):>{col_w}}" for v in values))
    return "\n".join(lines)


CSV_FIELDS = ["workload", "allocator", "status", "detail", "rounds_ok", "rounds", "wall_s",
              "cpu_s", "peak_rss_kb", "time_ratio", "rss_ratio", "result", "unit", "metrics"]


def write_csv(doc, path):
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(CSV_FIELDS)
        for w in doc["workloads"]:
            for a in doc["allocators"]:
                c = doc["cells"][w][a]
                metrics = ";".join(f"{k}={v:g}" for k, v in c["metrics"].items() if v is not None)
                out.writerow([w, a, c["status"], c["detail"], c["rounds_ok"], c["rounds"],
                              c["wall_s"], c["cpu_s"], c["rss_kb"], c["time_ratio"],
                              c["rss_ratio"], c["result"], c["unit"], metrics])


def write_json(doc, path):
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
