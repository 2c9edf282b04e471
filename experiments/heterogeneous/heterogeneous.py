#!/usr/bin/python3
"""Per-group strategies on a mixed A100 + H100 cluster (driver for run.sh).

Each case is one `strata simulate` of a model on hetero-a100-h100 (4 nodes of 8 A100s listed
first, then 4 nodes of 8 H100s; docs/heterogeneous.md). The strategies are written to specs/;
results/results.csv, results/summary.txt and results/plot.png collect the step times,
throughputs and each stage's split and compute time.
Run it with Debian's /usr/bin/python3 (matplotlib); see README.md.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ["llama2-7b", "gpt3-6.7b"]
CLUSTER = "hetero-a100-h100"
BATCH = 64  # sequences per step in every case


def stages(groups, layers, tp=None):
    out = []
    for g, n in zip(groups, layers):
        st = {"node_group": g, "layers": n}
        if tp and g in tp:
            st["tp"] = tp[g]
        out.append(st)
    return out


def cases():
    """(name, GPUs, strategy, what) for one model of 32 layers."""
    base = {"tp": 8, "pp": 4, "micro_batch_size": 1, "global_batch_size": BATCH,
            "recompute": "selective"}
    h, a = "h100", "a100"
    return [
        ("a100-only", 32, dict(base, dp=1), "the 32 A100s alone: tp 8 x pp 4, 8 layers per stage"),
        ("h100-only", 32, dict(base, dp=1, stages=stages([h] * 4, [8] * 4)),
         "the 32 H100s alone: tp 8 x pp 4 placed on the H100 group"),
        ("uniform", 64, dict(base, dp=2),
         "all 64, one uniform grid (tp 8 x dp 2 x pp 4, 8 layers per stage; stages 0-1 on the "
         "A100s as the cluster lists them)"),
        ("placed-even", 64, dict(base, dp=2, stages=stages([h, h, a, a], [8] * 4)),
         "all 64, stages 0-1 placed on the H100s, 8 layers each"),
        ("placed-proposed", 64, dict(base, dp=2, stages=stages([h, h, a, a], ["auto"] * 4)),
         "all 64, stages 0-1 on the H100s, layers proposed from the groups' speeds"),
        ("proposed-tp4-h100", 64,
         dict(base, dp=2, micro_batch_size=2,
              stages=stages([h, h, a, a], ["auto"] * 4, tp={h: 4})),
         "as placed-proposed with tp 4 x dp 4 on the H100 stages (micro-batches of 2)"),
        ("a100-first-proposed", 64, dict(base, dp=2, stages=stages([a, a, h, h], ["auto"] * 4)),
         "all 64, the A100s first (embedding side), layers proposed"),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strata", required=True)
    args = ap.parse_args()
    results = os.path.join(HERE, "results")
    specs = os.path.join(HERE, "specs")
    os.makedirs(results, exist_ok=True)
    os.makedirs(specs, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="strata-hetero-")
    rows = []
    for model in MODELS:
        for name, gpus, strategy, what in cases():
            strategy = dict(strategy, name=name)
            spec = os.path.join(specs, name + ".json")
            with open(spec, "w") as f:
                f.write(json.dumps(strategy, indent=2) + "\n")
            out = os.path.join(tmp, "report.json")
            cmd = [args.strata, "simulate", "--quiet", "--model", model, "--cluster", CLUSTER,
                   "--gpus", str(gpus), "--strategy", spec, "--json", out]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit("strata failed (%d) for %s %s:\n%s" % (done.returncode, model, name,
                                                                done.stderr))
            plan = subprocess.run([args.strata, "plan", "--model", model, "--cluster", CLUSTER,
                                   "--gpus", str(gpus), "--strategy", spec],
                                  capture_output=True, text=True, check=True).stdout
            split = [line.split("stage ", 1)[1].split(",")[0].split(": ")[1].split()[0]
                     for line in plan.splitlines() if " layers, tp " in line]
            with open(out) as f:
                report = json.load(f)
            os.remove(out)
            first = {}  # each stage's first rank, as the printed table shows
            for r in report["ranks"]:
                first.setdefault(r["stage"], r)
            compute = [first[k]["compute_s"] for k in sorted(first)]
            rows.append({
                "model": model, "case": name, "gpus": gpus,
                "step_time_s": "%.4f" % report["step_time_s"],
                "tokens_per_s": "%.0f" % report["tokens_per_s"],
                "tokens_per_s_per_gpu": "%.1f" % (report["tokens_per_s"] / gpus),
                "mfu": "%.4f" % report["mfu"],
                "layers_per_stage": "+".join(split) if split else "8+8+8+8",
                "stage_compute_s": " ".join("%.3f" % c for c in compute),
                "what": what,
            })
    os.rmdir(tmp)
    with open(os.path.join(results, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    write_summary(results, rows)
    plot(results, rows)


def write_summary(results, rows):
    lines = ["Per-group strategies on %s (32 A100 + 32 H100), global batch %d, selective "
             "recompute, bf16" % (CLUSTER, BATCH), ""]
    for model in MODELS:
        lines.append(model)
        lines.append("  %-20s %4s %9s %9s %11s %6s  %-11s %s" % (
            "case", "gpus", "step_s", "tokens/s", "tok/s/GPU", "MFU", "layers", "compute_s"))
        for r in (r for r in rows if r["model"] == model):
            lines.append("  %-20s %4d %9s %9s %11s %6.1f  %-11s %s" % (
                r["case"], r["gpus"], r["step_time_s"], r["tokens_per_s"],
                r["tokens_per_s_per_gpu"], 100 * float(r["mfu"]), r["layers_per_stage"],
                r["stage_compute_s"]))
        lines.append("")
    lines += ["Cases:"] + ["  %-20s %s" % (n, w) for n, _, _, w in cases()]
    with open(os.path.join(results, "summary.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(results, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [c[0] for c in cases()]
    fig, axes = plt.subplots(1, len(MODELS), figsize=(12, 4.4), sharey=True)
    for ax, model in zip(axes, MODELS):
        mine = {r["case"]: r for r in rows if r["model"] == model}
        ys = [float(mine[n]["tokens_per_s"]) / 1e3 for n in names]
        colours = ["#999999" if mine[n]["gpus"] == 32 else "#4477aa" for n in names]
        ax.bar(range(len(names)), ys, color=colours)
        for i, n in enumerate(names):
            ax.text(i, ys[i], mine[n]["layers_per_stage"], ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.set_title("%s on 32 A100 + 32 H100 (simulated)" % model, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("thousand tokens/s (labels: layers per stage)")
    fig.tight_layout()
    fig.savefig(os.path.join(results, "plot.png"), dpi=120)


if __name__ == "__main__":
    main()
