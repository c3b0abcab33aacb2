"""time.png and rss.png: per workload one bar per allocator, relative to
the baseline, drawn by gnuplot."""
import os
import shutil
import subprocess

CHARTS = [("time.png", "time_ratio", "wall time"), ("rss.png", "rss_ratio", "peak RSS")]


def data_file(doc, key, path):
    """Whitespace table: workload, then one column per allocator; '-' where
    a cell failed (gnuplot leaves that bar out)."""
    with open(path, "w") as f:
        f.write("workload " + " ".join(doc["allocators"]) + "\n")
        for w in doc["workloads"]:
            vals = [doc["cells"][w][a][key] for a in doc["allocators"]]
            f.write('"' + w.replace('"', "'") + '" ' + " ".join("-" if v is None else f"{v:.4f}" for v in vals) + "\n")


def script(data, png, what, baseline, columns):
    return f"""
set terminal pngcairo noenhanced size 1200,520 font ",10"
set output '{png}'
set title "{what} relative to {baseline} (lower is better; missing bar = failed)"
set datafile missing '-'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside top center horizontal reverse Left samplen 2
set yrange [0:*]
set grid ytics
set xtics rotate by -30
set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2
plot for [i=2:{columns + 1}] '{data}' using i:xtic(1) title columnheader(i)
"""


def draw(doc, outdir, warn):
    """Writes the charts; returns the files made (none without gnuplot)."""
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        warn("gnuplot not found; no charts")
        return []
    made = []
    for png, key, what in CHARTS:
        data = png.replace(".png", ".dat")
        data_file(doc, key, os.path.join(outdir, data))
        path = os.path.join(outdir, png)
        proc = subprocess.run([gnuplot], cwd=outdir, input=script(data, png, what, doc["baseline"],
                                                      len(doc["allocators"])),
                              text=True, capture_output=True, check=False)
        if proc.returncode != 0 or not os.path.exists(path):
            warn(f"gnuplot failed for {png}: {proc.stderr.strip()[-300:]}")
        else:
            made.append(path)
    return made
