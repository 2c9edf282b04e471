#!/usr/bin/python3
"""Strategy search on A100 clusters (driver for run.sh; README.md).

1. Searches GPT-3 1.3B, 6.7B and 13B on 8, 16, 32, 64 and 128 GPUs of the bundled DGX A100
   cluster with `strata search` (default space, top 8 verified), and writes
   results/search.csv (search time, candidates, best strategy, simulated throughput) and
   results/plot.png.
2. For the rows of Megatron-LM's SC'21 Table 1 that fit 128 GPUs (1.7B on 32, 3.6B on 64, 7.5B
   on 128; global batch 512), searches with the authors' row as the base strategy (their
   precision, gradient accumulation and pipeline transfers), once in the space Megatron-LM had
   in 2021 and once in today's, simulates the authors' own configuration, and writes
   results/sc21_comparison.csv.
results/summary.txt holds both tables in text. Run it with Debian's /usr/bin/python3.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
CLUSTER = os.path.join(REPO, "configs", "clusters", "dgx-a100-128n.json")
SC21 = os.path.join(REPO, "experiments", "megatron-sc21", "specs")

# GPT-3's global batches (Brown et al., Table 2.1): 1M tokens for 1.3B, 2M for 6.7B and 13B,
# in sequences of 2048.
MODELS = [
    ("gpt3-1.3b", os.path.join(HERE, "specs", "gpt3-1.3b.json"), 512),
    ("gpt3-6.7b", os.path.join(REPO, "configs", "models", "gpt3-6.7b.json"), 1024),
    ("gpt3-13b", os.path.join(HERE, "specs", "gpt3-13b.json"), 1024),
]
GPUS = [8, 16, 32, 64, 128]

# The space Megatron-LM offered in 2021: no ZeRO, no sequence parallelism, recompute all or
# nothing, no per-layer choices; micro-batches up to the authors' 16.
SPACE_2021 = {
    "micro_batch_size": [1, 2, 4, 8, 16],
    "schedule": ["1f1b", "interleaved-1f1b"],
    "zero_stage": [0],
    "sequence_parallel": [False],
    "recompute": ["none", "full"],
    "layer_hybrids": False,
}
# Today's: the default space, with the authors' micro-batch of 16 in it.
SPACE_TODAY = {"micro_batch_size": [1, 2, 4, 8, 16]}

SC21_ROWS = [
    (1, "row01-gpt-1.7b", 32),
    (2, "row02-gpt-3.6b", 64),
    (3, "row03-gpt-7.5b", 128),
]


def run(cmd, log):
    start = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - start
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + p.stdout)
    if p.returncode != 0:
        sys.stderr.write(p.stdout)
        raise SystemExit("failed (exit %d): %s" % (p.returncode, " ".join(cmd)))
    return wall, p.stdout


def read_search(out):
    with open(os.path.join(out, "search.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out, "ranking.csv")) as f:
        ranking = list(csv.DictReader(f))
    return summary, ranking


def search(strata, args, out, log):
    wall, _ = run([strata, "search", "--out", out, "--quiet"] + args, log)
    return (wall,) + read_search(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strata", required=True)
    ap.add_argument("--jobs", default="")
    a = ap.parse_args()
    results = os.path.join(HERE, "results")
    runs = os.path.join(results, "runs")
    os.makedirs(runs, exist_ok=True)
    jobs = ["--jobs", a.jobs] if a.jobs else []

    rows = []
    for name, model, batch in MODELS:
        for gpus in GPUS:
            out = os.path.join(runs, "%s-%dgpu" % (name, gpus))
            wall, summary, ranking = search(
                a.strata,
                ["--model", model, "--cluster", CLUSTER, "--gpus", str(gpus),
                 "--global-batch", str(batch)] + jobs,
                out, out + ".log")
            best = ranking[0]
            rows.append({
                "model": name, "gpus": gpus, "global_batch": batch,
                "search_wall_s": "%.2f" % wall,
                "explore_s": "%.3f" % summary["explore_seconds"],
                "points": summary["points"], "estimated": summary["estimated"],
                "fit": summary["fit"], "verified": summary["verified"],
                "best_strategy": best["strategy"],
                "simulated_step_s": "%.4f" % float(best["simulated_step_s"]),
                "tokens_per_s": "%.0f" % float(best["tokens_per_s"]),
                "tokens_per_s_per_gpu": "%.1f" % (float(best["tokens_per_s"]) / gpus),
                "mfu": "%.3f" % float(best["mfu"]),
                "peak_GiB": "%.2f" % (float(best["simulated_peak_bytes"]) / 2**30),
                "spearman": "%.3f" % summary["spearman"],
                "estimator_mean_abs_error": "%.3f" % summary["mean_abs_error"],
            })
            print("%-10s %4d GPUs: %5.2f s, best %s: %.4f s/step" %
                  (name, gpus, wall, best["strategy"], float(best["simulated_step_s"])),
                  flush=True)
    with open(os.path.join(results, "search.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)

    # SC'21 Table 1: the authors' configuration against the search's best, simulated alike.
    comparison = []
    for space_name, space in (("2021", SPACE_2021), ("today", SPACE_TODAY)):
        space_file = os.path.join(results, "space-%s.json" % space_name)
        with open(space_file, "w") as f:
            json.dump(space, f, indent=2)
            f.write("\n")
        for row, stem, gpus in SC21_ROWS:
            model = os.path.join(SC21, stem + ".model.json")
            strategy = os.path.join(SC21, stem + ".strategy.json")
            out = os.path.join(runs, "sc21-row%02d-%s" % (row, space_name))
            wall, summary, ranking = search(
                a.strata,
                ["--model", model, "--cluster", CLUSTER, "--gpus", str(gpus), "--strategy",
                 strategy, "--space", space_file] + jobs,
                out, out + ".log")
            report = os.path.join(runs, "sc21-row%02d-authors.json" % row)
            run([a.strata, "simulate", "--model", model, "--cluster", CLUSTER, "--gpus",
                 str(gpus), "--strategy", strategy, "--quiet", "--json", report],
                report + ".log")
            with open(report) as f:
                authors = json.load(f)
            with open(strategy) as f:
                spec = json.load(f)
            authors_line = "tp%d pp%d dp%d mbs%d %s rc=%s" % (
                spec["tp"], spec["pp"], spec["dp"], spec["micro_batch_size"], spec["schedule"],
                spec["recompute"])
            best = ranking[0]
            speedup = authors["step_time_s"] / float(best["simulated_step_s"])
            comparison.append({
                "row": row, "space": space_name, "gpus": gpus,
                "authors_strategy": authors_line,
                "authors_simulated_step_s": "%.4f" % authors["step_time_s"],
                "search_best_strategy": best["strategy"],
                "search_simulated_step_s": "%.4f" % float(best["simulated_step_s"]),
                "speedup_over_authors": "%.3f" % speedup,
                "search_at_least_as_fast": "yes" if speedup >= 1 - 1e-9 else "no",
                "search_wall_s": "%.2f" % wall,
                "estimated": summary["estimated"],
            })
            print("SC'21 row %d (%s space): authors %s %.4f s, search %s %.4f s (x%.3f)" %
                  (row, space_name, authors_line, authors["step_time_s"], best["strategy"],
                   float(best["simulated_step_s"]), speedup), flush=True)
    with open(os.path.join(results, "sc21_comparison.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(comparison[0].keys()))
        w.writeheader()
        w.writerows(comparison)

    with open(os.path.join(results, "summary.txt"), "w") as f:
        f.write("Strategy search, DGX A100 cluster (results/search.csv)\n")
        f.write("%-10s %5s %8s %9s %6s  %-58s %9s %8s %6s\n" % (
            "model", "GPUs", "wall_s", "estimated", "fit", "best strategy", "step_s", "tok/s/GPU",
            "MFU"))
        for r in rows:
            f.write("%-10s %5d %8s %9s %6s  %-58s %9s %8s %6s\n" % (
                r["model"], r["gpus"], r["search_wall_s"], r["estimated"], r["fit"],
                r["best_strategy"], r["simulated_step_s"], r["tokens_per_s_per_gpu"], r["mfu"]))
        f.write("\nSC'21 Table 1 rows: the authors' configuration and the search's best, both "
                "simulated (results/sc21_comparison.csv)\n")
        for c in comparison:
            f.write("row %d, %s space: authors %s %s s; search %s %s s; speedup %s\n" % (
                c["row"], c["space"], c["authors_strategy"], c["authors_simulated_step_s"],
                c["search_best_strategy"], c["search_simulated_step_s"],
                c["speedup_over_authors"]))

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("matplotlib is missing: apt-get install python3-matplotlib")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, _, _ in MODELS:
        mine = [r for r in rows if r["model"] == name]
        ax1.plot([r["gpus"] for r in mine], [float(r["tokens_per_s_per_gpu"]) for r in mine],
                 marker="o", label=name)
        ax2.plot([r["gpus"] for r in mine], [float(r["search_wall_s"]) for r in mine],
                 marker="o", label=name)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(GPUS)
        ax.set_xticklabels([str(g) for g in GPUS])
        ax.set_xlabel("A100 GPUs")
        ax.grid(alpha=0.3)
        ax.legend()
    ax1.set_ylabel("simulated tokens/s per GPU (best strategy)")
    ax1.set_title("Best strategy found, simulated")
    ax2.set_ylabel("search wall time (s), 2-core machine")
    ax2.set_title("strata search: explore + verify top 8")
    fig.tight_layout()
    fig.savefig(os.path.join(results, "plot.png"), dpi=110)
    print("wrote results/search.csv, results/sc21_comparison.csv, results/summary.txt, "
          "results/plot.png")


if __name__ == "__main__":
    main()
