#!/usr/bin/env python3
"""Turn the samples bench/run.sh collected into one markdown table and JSON.

Usage: stats.py render DIR
  DIR/rows.tsv     key, what, unit, baseline key ('-' for none), baseline factor
                   (one row per line, in table order)
  DIR/samples.tsv  key, value            (one measurement per line)
  DIR/summary.tsv  key, runs, median     (figures measured elsewhere: criterion)
  DIR/meta.tsv     name, value           (machine and commit, for the JSON)
Writes DIR/results.md and DIR/results.json and prints the table.
Standard library only.
"""

import json
import statistics
import sys
from pathlib import Path


def read_tsv(path):
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        text = f.read()
    for line in text.split("\n"):
        if line.strip():
            rows.append(line.rstrip("\r").split("\t"))
    return rows


def summarize(values):
    if not values:
        return None
    return {
        "runs": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "samples": values,
    }


def fmt(value, unit):
    if value is None:
        return "–"
    if unit == "ms" and value >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(out_dir):
    out_dir = Path(out_dir)
    samples = {}
    for key, value in read_tsv(out_dir / "samples.tsv"):
        samples.setdefault(key, []).append(float(value))
    stats = {key: summarize(v) for key, v in samples.items()}
    for key, runs, median in read_tsv(out_dir / "summary.tsv"):
        stats[key] = {"runs": int(runs), "median": float(median), "min": None, "max": None}

    table = []
    json_rows = []
    for key, what, unit, base_key, factor in read_tsv(out_dir / "rows.tsv"):
        s = stats.get(key)
        row = {"key": key, "what": what, "unit": unit}
        if s:
            row.update({k: s[k] for k in ("runs", "median", "min", "max")})
            if "samples" in s:
                row["samples"] = s["samples"]
        else:
            row.update({"runs": 0, "median": None, "min": None, "max": None})
        base_median = ratio = None
        if base_key != "-":
            b = stats.get(base_key)
            if b and b["median"] is not None:
                base_median = b["median"] * float(factor)
                row["baseline"] = {"key": base_key, "factor": float(factor), "median": base_median}
                if row["median"] is not None and base_median:
                    ratio = row["median"] / base_median
                    row["ratio"] = ratio
        json_rows.append(row)
        table.append(
            [
                what,
                str(row["runs"]) if row["runs"] else "–",
                fmt(row["median"], unit),
                fmt(row["min"], unit),
                fmt(row["max"], unit),
                unit,
                fmt(base_median, unit) if base_median is not None else "",
                f"{ratio:.2f}×" if ratio is not None else "",
            ]
        )

    header = ["what", "runs", "median", "min", "max", "unit", "baseline median", "ratio Quarry/baseline"]
    align = ["---", "--:", "--:", "--:", "--:", "---", "--:", "--:"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for cells in table:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    md = "\n".join(lines) + "\n"

    meta = {name: value for name, value in read_tsv(out_dir / "meta.tsv")}
    (out_dir / "results.md").write_text(md)
    (out_dir / "results.json").write_text(json.dumps({"meta": meta, "rows": json_rows}, indent=2) + "\n")
    sys.stdout.write(md)


def main(argv):
    if len(argv) == 3 and argv[1] == "render":
        render(argv[2])
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
