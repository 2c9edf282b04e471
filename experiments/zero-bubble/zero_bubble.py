#!/usr/bin/python3
"""Zero-bubble schedules against 1F1B and interleaved 1F1B, simulated (driver for run.sh).

The setup of Qi et al., "Zero Bubble Pipeline Parallelism" (ICLR 2024), sec. 5.1, as far as it
is stated: GPT-style models of 1.5B, 6.2B, 14.6B and 28.3B parameters, sequence length 1024,
pure pipeline parallelism over 8, 8, 16 and 32 A100 80GB GPUs (8 per node), micro-batch sizes
6, 3, 1 and 1, and 3p, 4p and 8p micro-batches per step. Each (model, micro-batches) is
simulated under 1F1B, interleaved 1F1B (two chunks per rank), ZB-H1, ZB-H2 and ZB-V on the bundled
A100 cluster; results/results.csv, results/summary.txt and results/plot.png collect them. Run
it with Debian's /usr/bin/python3 (matplotlib); see README.md.
"""

import argparse
import concurrent.futures
import csv
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
CLUSTER = os.path.join(REPO, "configs", "clusters", "dgx-a100-128n.json")

# (name, layers, attention heads, hidden size, GPUs = pipeline stages, micro-batch size)
MODELS = [
    ("1.5b", 22, 24, 2304, 8, 6),
    ("6.2b", 30, 64, 4096, 8, 3),
    ("14.6b", 46, 64, 5120, 16, 1),
    ("28.3b", 62, 64, 6144, 32, 1),
]
SEQ_LENGTH = 1024
VOCAB = 51200  # Megatron-LM's GPT-2 vocabulary padded (the paper builds on Megatron-LM)
MICRO_BATCH_MULTIPLES = [3, 4, 8]  # micro-batches per step = multiple x pp
SCHEDULES = ["1f1b", "interleaved-1f1b", "zb-h1", "zb-h2", "zb-v"]
LABELS = {"1f1b": "1F1B", "interleaved-1f1b": "1F1B-I (v=2)", "zb-h1": "ZB-H1", "zb-h2": "ZB-H2",
          "zb-v": "ZB-V"}

COLUMNS = [
    "model", "gpus", "micro_batch_size", "micro_batches", "schedule", "fits",
    "step_time_s", "samples_per_gpu_per_s", "gain_over_1f1b", "bubble_fraction",
    "max_peak_memory_GiB", "stage_layers", "sim_wall_s", "error",
]


def dump(obj):
    return json.dumps(obj, indent=2) + "\n"


def stage_layers(layers, pp, v):
    """Layers per virtual stage: the embedding and the output layer each count as one layer, so
    every rank gets (layers + 2) / pp slots (the first and last ranks one layer fewer; the
    paper's layer counts are all pp k - 2), spread over its v chunks, larger first. None when a
    chunk would get no layer."""
    slots = layers + 2
    if slots % pp != 0:
        raise ValueError("%d layers + 2 is not a multiple of pp = %d" % (layers, pp))
    per_rank = slots // pp
    chunks = [[0] * pp for _ in range(v)]
    for s in range(pp):
        own = per_rank - (1 if s == 0 else 0) - (1 if s == pp - 1 else 0)
        for c in range(v):
            chunks[c][s] = own // v + (1 if c < own % v else 0)
    flat = [n for c in range(v) for n in chunks[c]]  # virtual stage c * pp + s
    return flat if min(flat) >= 1 else None


def stage_layers_v(layers, pp):
    """ZB-V's layers per virtual stage: rank s holds virtual stages s and 2 pp - 1 - s, rank 0
    both ends (the embedding and the output layer), so the layers are spread evenly over the
    2 pp chunks with the extra ones on ranks 1 to pp - 1 (chunk 0 first, then chunk 1). None
    when a chunk would get no layer."""
    base, extra = divmod(layers, 2 * pp)
    if base == 0:
        return None
    chunks = [[base] * pp for _ in range(2)]
    slots = [(c, s) for c in range(2) for s in range(1, pp)] + [(0, 0), (1, 0)]
    for c, s in slots[:extra]:
        chunks[c][s] += 1
    flat = [0] * (2 * pp)
    for s in range(pp):
        flat[s] = chunks[0][s]
        flat[2 * pp - 1 - s] = chunks[1][s]
    return flat


def model_spec(name, layers, heads, hidden):
    return {
        "name": "zb-gpt-" + name,
        "family": "gpt",
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "vocab_size": VOCAB,
        "seq_length": SEQ_LENGTH,
        "source": "Qi et al., Zero Bubble Pipeline Parallelism (ICLR 2024), sec. 5.1: the %s "
                  "model's layers, attention heads, hidden size and sequence length" % name.upper(),
        "notes": "GPT defaults: intermediate_size 4h, gelu, layernorm, learned positions, tied "
                 "embeddings; vocabulary 51200 (Megatron-LM's padded GPT-2 vocabulary).",
    }


def strategy_spec(name, pp, mbs, m, schedule, layers_split):
    s = {
        "name": "zb-%s-pp%d-m%d-%s" % (name, pp, m, schedule),
        "pp": pp,
        "micro_batch_size": mbs,
        "global_batch_size": mbs * m,
        "schedule": schedule,
        "precision": "bf16",
        "stage_layers": layers_split,
        "source": "Qi et al. 2024 sec. 5.1: pure pipeline parallelism over %d GPUs, micro-batch "
                  "size %d, %d micro-batches" % (pp, mbs, m),
    }
    if schedule in ("interleaved-1f1b", "zb-v"):
        s["virtual_stages"] = 2
    return s


def run_one(strata, job):
    t0 = time.time()
    cmd = [strata, "simulate", "--model", job["model_path"], "--strategy", job["strategy_path"],
           "--cluster", CLUSTER, "--gpus", str(job["gpus"]), "--json", job["report"], "--quiet",
           "--ignore-memory"]  # simulated anyway; "fits" says whether 80 GiB would hold it
    p = subprocess.run(cmd, capture_output=True, text=True)
    row = {k: job[k] for k in ("model", "gpus", "micro_batch_size", "micro_batches", "schedule",
                               "stage_layers")}
    row["sim_wall_s"] = round(time.time() - t0, 2)
    if p.returncode != 0:
        row["error"] = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
        return row
    with open(job["report"]) as f:
        r = json.load(f)
    step = r["step_time_s"]
    row.update({
        "fits": r["fits"],
        "step_time_s": round(step, 4),
        "samples_per_gpu_per_s": round(r["global_batch_size"] / step / r["world_size"], 4),
        "bubble_fraction": round(r["bubble_fraction"], 4),
        "max_peak_memory_GiB": round(max(x["peak_memory_bytes"] for x in r["ranks"]) / 2**30, 2),
        "error": "",
    })
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    specs = os.path.join(HERE, "specs")
    results = os.path.join(HERE, "results")
    reports = os.path.join(results, "reports")
    for d in (specs, reports):
        os.makedirs(d, exist_ok=True)

    jobs, skipped = [], []
    for name, layers, heads, hidden, pp, mbs in MODELS:
        model_path = os.path.join(specs, "gpt-%s.model.json" % name)
        with open(model_path, "w") as f:
            f.write(dump(model_spec(name, layers, heads, hidden)))
        for mult in MICRO_BATCH_MULTIPLES:
            m = mult * pp
            for schedule in SCHEDULES:
                if schedule == "zb-v":
                    split = stage_layers_v(layers, pp)
                else:
                    split = stage_layers(layers, pp, 2 if schedule == "interleaved-1f1b" else 1)
                row = {"model": name, "gpus": pp, "micro_batch_size": mbs, "micro_batches": m,
                       "schedule": schedule}
                if split is None:
                    row["error"] = ("not run: %d layers cannot give every one of %d chunks a "
                                    "layer" % (layers, 2 * pp))
                    skipped.append(row)
                    continue
                spec = strategy_spec(name, pp, mbs, m, schedule, split)
                path = os.path.join(specs, "%s.strategy.json" % spec["name"])
                with open(path, "w") as f:
                    f.write(dump(spec))
                row.update({"model_path": model_path, "strategy_path": path,
                            "stage_layers": " ".join(map(str, split)),
                            "report": os.path.join(reports, "%s.json" % spec["name"])})
                jobs.append(row)

    rows = list(skipped)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for i, row in enumerate(pool.map(lambda j: run_one(args.strata, j), jobs)):
            print("[%d/%d] %s m=%d %s: %s" % (i + 1, len(jobs), row["model"], row["micro_batches"],
                                              row["schedule"], row.get("error") or
                                              "%.4f s" % row["step_time_s"]), file=sys.stderr)
            rows.append(row)

    base = {(r["model"], r["micro_batches"]): r.get("samples_per_gpu_per_s")
            for r in rows if r["schedule"] == "1f1b"}
    for r in rows:
        b = base.get((r["model"], r["micro_batches"]))
        if r.get("samples_per_gpu_per_s") and b:
            r["gain_over_1f1b"] = round(r["samples_per_gpu_per_s"] / b - 1, 4)
    order = {n[0]: i for i, n in enumerate(MODELS)}
    rows.sort(key=lambda r: (order[r["model"]], r["micro_batches"], SCHEDULES.index(r["schedule"])))
    with open(os.path.join(results, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    write_summary(rows, os.path.join(results, "summary.txt"))
    plot(rows, os.path.join(results, "plot.png"))
    failed = [r for r in rows if r.get("error") and not r["error"].startswith("not run")]
    return 1 if failed else 0


def write_summary(rows, path):
    lines = ["Zero-bubble schedules, simulated (samples per GPU per second; gain over 1F1B; "
             "bubble = idle share of the step; OOM = needs more than 80 GiB, simulated anyway)",
             ""]
    lines.append("%-6s %4s %4s  " % ("model", "gpus", "m") +
                 "  ".join("%-22s" % LABELS[s] for s in SCHEDULES))
    keys = sorted({(r["model"], r["gpus"], r["micro_batches"]) for r in rows},
                  key=lambda k: ([m[0] for m in MODELS].index(k[0]), k[2]))
    for model, gpus, m in keys:
        cells = []
        for s in SCHEDULES:
            r = next((x for x in rows if (x["model"], x["micro_batches"], x["schedule"]) ==
                      (model, m, s)), None)
            if r is None or r.get("error"):
                cells.append("%-22s" % "-")
            else:
                cells.append("%-22s" % ("%.3f %+5.1f%% b%4.1f%%%s" % (
                    r["samples_per_gpu_per_s"], 100 * r.get("gain_over_1f1b", 0),
                    100 * r["bubble_fraction"], "" if r["fits"] else " OOM")))
        lines.append("%-6s %4d %4d  " % (model, gpus, m) + "  ".join(cells))
    for s in SCHEDULES[1:]:
        gains = [r["gain_over_1f1b"] for r in rows if r["schedule"] == s and "gain_over_1f1b" in r]
        if gains:
            lines.append("%s over 1F1B: mean %+.1f%%, range %+.1f%% to %+.1f%% (%d configurations)"
                         % (LABELS[s], 100 * sum(gains) / len(gains), 100 * min(gains),
                            100 * max(gains), len(gains)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = sorted({(r["model"], r["micro_batches"]) for r in rows},
                  key=lambda k: ([m[0] for m in MODELS].index(k[0]), k[1]))
    fig, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    width = 0.8 / len(SCHEDULES)
    for i, s in enumerate(SCHEDULES):
        tput, bubble = [], []
        for model, m in keys:
            r = next((x for x in rows if (x["model"], x["micro_batches"], x["schedule"]) ==
                      (model, m, s)), {})
            tput.append(1 + r["gain_over_1f1b"] if "gain_over_1f1b" in r else 0)
            bubble.append(100 * (r.get("bubble_fraction") or 0) if not r.get("error") else 0)
        xs = [k + (i - (len(SCHEDULES) - 1) / 2) * width for k in range(len(keys))]
        axes[0].bar(xs, tput, width, label=LABELS[s])
        axes[1].bar(xs, bubble, width, label=LABELS[s])
    axes[0].set_ylabel("throughput / 1F1B's")
    axes[0].set_ylim(0.8, None)
    axes[0].axhline(1.0, color="gray", linewidth=0.8)
    axes[1].set_ylabel("bubble (% of step idle)")
    axes[1].set_xticks(range(len(keys)))
    axes[1].set_xticklabels(["%s\nm=%d" % k for k in keys], fontsize=8)
    axes[0].legend(ncol=len(SCHEDULES), fontsize=8)
    axes[0].set_title("Pipeline schedules on A100s, simulated by Strata (Qi et al. 2024 setup)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
