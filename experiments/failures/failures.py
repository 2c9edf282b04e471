#!/usr/bin/python3
"""Goodput against failure rate for GPT-3 175B on 1024 and 8192 A100s (driver for run.sh).

Each GPU count is one `strata simulate --failures` run: the step is simulated once (SimGrid),
then the failure simulation covers every failure rate and both checkpoint intervals (Daly's
"auto" and a fixed hour) over a 30-day span, 10 trials each. results/results.csv,
results/summary.txt and results/plot.png collect them; results/reports/ keeps each report.json
without its per-rank rows (8192 of them).
Run it with Debian's /usr/bin/python3 (matplotlib); see README.md.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
STRATEGY = os.path.join(REPO, "configs", "strategies", "gpt3-175b-tp8-pp8-dp16.json")

# (GPUs, nodes of 8, dp): tp 8 x pp 8 per replica; the global batch grows with dp (each replica
# keeps its 96 sequences, the micro-batches per step stay 96 >= pp).
SCALES = [(1024, 128, 16), (8192, 1024, 128)]
RATES = [0, 1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4]  # failures per GPU-hour
LLAMA3_RATE = 419 / (16384 * 54 * 24)  # unexpected interruptions per GPU-hour (docs/failures.md)
SPEC = {
    "span": {"hours": 720},
    "rate_per_gpu_hour": RATES,
    "reaction": "restart",
    "detection_s": 300,
    "restart_s": 600,
    "checkpoint": {"interval": ["auto", {"seconds": 3600}], "write_gb_per_s_per_node": 5},
    "trials": 10,
    "seed": 1,
    "source": "Strata's own assumptions (experiments/failures/README.md): 5 min to detect a "
              "failure (a collective timeout), 10 min to restart and reload, 5 GB/s of "
              "checkpoint writes per node",
}
COLUMNS = [
    "gpus", "dp", "rate_per_gpu_hour", "job_mtbf_h", "interval", "interval_steps", "interval_h",
    "failures", "lost_work_h", "downtime_h", "checkpoint_h", "goodput", "goodput_sd",
    "goodput_min", "goodput_max", "effective_tokens_per_s", "young_steps", "daly_steps",
    "best_steps", "best_goodput",
]


def dump(obj):
    return json.dumps(obj, indent=2) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strata", required=True)
    args = ap.parse_args()
    results = os.path.join(HERE, "results")
    os.makedirs(os.path.join(results, "reports"), exist_ok=True)
    os.makedirs(os.path.join(HERE, "specs"), exist_ok=True)
    spec_path = os.path.join(HERE, "specs", "failures.json")
    with open(spec_path, "w") as f:
        f.write(dump(SPEC))
    with open(STRATEGY) as f:
        batch_per_replica = json.load(f)["global_batch_size"] // 16

    rows, reports, walls = [], {}, {}
    tmp = tempfile.mkdtemp(prefix="strata-failures-")
    for gpus, nodes, dp in SCALES:
        out = os.path.join(tmp, "report.json")
        cmd = [args.strata, "simulate", "--quiet", "--model", "gpt3-175b",
               "--cluster", "dgx-a100-128n", "--nodes", str(nodes), "--strategy", STRATEGY,
               "--set", "strategy.dp=%d" % dp,
               "--set", "strategy.global_batch_size=%d" % (batch_per_replica * dp),
               "--failures", spec_path, "--json", out]
        start = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True)
        walls[gpus] = time.monotonic() - start
        if done.returncode != 0:
            sys.exit("strata failed (%d) for %d GPUs:\n%s" % (done.returncode, gpus, done.stderr))
        with open(out) as f:
            report = json.load(f)
        os.remove(out)
        del report["ranks"]  # per-rank step times: the step is not what this study is about
        with open(os.path.join(results, "reports", "gpus%d.json" % gpus), "w") as f:
            f.write(dump(report))
        reports[gpus] = report
        fr = report["failures"]
        step = fr["step_time_s"]
        for r in fr["rows"]:
            daly = r["daly_interval_s"]
            rows.append({
                "gpus": gpus, "dp": dp, "rate_per_gpu_hour": r["rate_per_gpu_hour"],
                "job_mtbf_h": "" if r["mtbf_s"] is None else "%.3f" % (r["mtbf_s"] / 3600),
                "interval": r["interval"], "interval_steps": r["interval_steps"],
                "interval_h": "%.3f" % (r["interval_s"] / 3600),
                "failures": "%.1f" % r["failures"]["mean"],
                "lost_work_h": "%.2f" % (r["lost_work_s"]["mean"] / 3600),
                "downtime_h": "%.2f" % (r["downtime_s"]["mean"] / 3600),
                "checkpoint_h": "%.2f" % (r["checkpoint_s"]["mean"] / 3600),
                "goodput": "%.4f" % r["goodput"]["mean"],
                "goodput_sd": "%.4f" % r["goodput"]["stddev"],
                "goodput_min": "%.4f" % r["goodput"]["min"],
                "goodput_max": "%.4f" % r["goodput"]["max"],
                "effective_tokens_per_s": "%.0f" % r["effective_tokens_per_s"]["mean"],
                "young_steps": r["young_interval_steps"],
                "daly_steps": "" if daly is None else round(daly / step),
                "best_steps": r["best_interval_steps"],
                "best_goodput": "%.4f" % r["best_goodput"],
            })
    os.rmdir(tmp)
    with open(os.path.join(results, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    write_summary(results, rows, reports, walls)
    plot(results, rows)


def write_summary(results, rows, reports, walls):
    lines = ["Goodput of GPT-3 175B (tp 8, pp 8, selective recompute, ZeRO-1) on A100s over a "
             "720-hour span, restart from the last checkpoint", ""]
    for gpus, report in reports.items():
        fr = report["failures"]
        lines.append("%d GPUs (dp %d): step %.3f s, %.0f tokens/s failure-free; checkpoint %.1f s "
                     "(%.1f GB per node at 5 GB/s); detection %.0f s, restart %.0f s; simulated "
                     "in %.1f s" % (gpus, fr["dp"], fr["step_time_s"], report["tokens_per_s"],
                                    fr["checkpoint_s"], fr["checkpoint_bytes_per_node"] / 1e9,
                                    fr["detection_s"], fr["restart_s"], walls[gpus]))
    lines += ["", "%6s %10s %9s %8s %7s %9s %8s %8s %8s %8s %7s" % (
        "gpus", "rate/GPU-h", "MTBF_h", "interval", "steps", "failures", "lost_h", "down_h",
        "goodput", "(sd)", "best")]
    for r in rows:
        lines.append("%6d %10.0e %9s %8s %7d %9s %8s %8s %8s %8s %7d (%s)" % (
            r["gpus"], r["rate_per_gpu_hour"], r["job_mtbf_h"] or "inf", r["interval"],
            r["interval_steps"], r["failures"], r["lost_work_h"], r["downtime_h"], r["goodput"],
            r["goodput_sd"], r["best_steps"], r["best_goodput"]))
    lines += ["", "Llama 3's rate (419 unexpected interruptions / (16,384 GPUs x 54 days)): "
              "%.2e per GPU-hour" % LLAMA3_RATE]
    with open(os.path.join(results, "summary.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(results, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (gpus, _, _) in zip(axes, SCALES):
        for label, style in (("auto", "o-"), ("3600 s", "s-")):
            pts = [r for r in rows if r["gpus"] == gpus and r["interval"] == label
                   and r["rate_per_gpu_hour"] > 0]
            xs = [r["rate_per_gpu_hour"] for r in pts]
            ax.errorbar(xs, [float(r["goodput"]) for r in pts],
                        yerr=[float(r["goodput_sd"]) for r in pts], fmt=style, capsize=3,
                        label="Daly interval" if label == "auto" else "fixed 1 h interval")
        best = [r for r in rows if r["gpus"] == gpus and r["interval"] == "auto"
                and r["rate_per_gpu_hour"] > 0]
        ax.plot([r["rate_per_gpu_hour"] for r in best], [float(r["best_goodput"]) for r in best],
                "k:", label="best interval of the sweep")
        ax.axvline(LLAMA3_RATE, color="grey", lw=0.8, ls="--")
        ax.text(LLAMA3_RATE, 0.42, " Llama 3 rate", color="grey", fontsize=8)
        ax.set_xscale("log")
        ax.set_title("GPT-3 175B on %d A100s" % gpus)
        ax.set_xlabel("failures per GPU-hour")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("goodput (useful / wall time)")
    axes[0].set_ylim(0.4, 1.0)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(results, "plot.png"), dpi=120)


if __name__ == "__main__":
    main()
