#!/usr/bin/python3
"""FedAvg against cross-site synchronous data parallelism (driver for run.sh).

Each configuration is one `strata simulate --json -` of gpt2-124m on four-sites-a100 with the
bundled strategy gpt2-fedavg-4sites and --set overrides for K, the aggregation and the WAN
bandwidth. The numbers are predictions of time per round and per sample, not of model quality:
FedAvg with a large K needs more samples (or rounds) than synchronous training to reach the same
loss, which Strata does not model. Run it with Debian's /usr/bin/python3 (matplotlib).
"""

import argparse
import csv
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
BANDWIDTHS_GBPS = [1, 10]
# (label, aggregation, K): sync_dp all-reduces the gradients over the WAN after every step.
CONFIGS = [("sync-dp", "sync_dp", 1)] + [
    (f"fedavg-{agg}-K{k}", agg, k) for agg in ("central", "ring") for k in (1, 10, 100)
]
COLUMNS = [
    "wan_gbps", "config", "aggregation", "local_steps", "local_step_s", "local_compute_s",
    "aggregation_s", "round_s", "update_mb", "update_dtype", "max_site_sent_mb_per_round",
    "samples_per_round", "samples_per_s", "s_per_1000_steps", "time_to_100_rounds_h",
]


def simulate(strata, gbps, aggregation, k):
    cmd = [strata, "simulate", "--model", "gpt2-124m", "--cluster", "four-sites-a100",
           "--strategy", "gpt2-fedavg-4sites", "--quiet", "--json", "-",
           "--set", f"cluster.wan.bandwidth_Gbps={gbps}",
           "--set", f"strategy.federated.aggregation={aggregation}",
           "--set", f"strategy.federated.local_steps={k}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["federated"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strata", required=True)
    args = parser.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    rows = []
    for gbps in BANDWIDTHS_GBPS:
        for label, aggregation, k in CONFIGS:
            f = simulate(args.strata, gbps, aggregation, k)
            steps_per_round = f["spec"]["local_steps"]
            rows.append({
                "wan_gbps": gbps, "config": label, "aggregation": aggregation,
                "local_steps": k, "local_step_s": f["local_step_s"],
                "local_compute_s": f["local_compute_s"], "aggregation_s": f["aggregation_s"],
                "round_s": f["round_s"], "update_mb": f["update_bytes"] / 1e6,
                "update_dtype": f["update_dtype"],
                "max_site_sent_mb_per_round":
                    max(s["sent_bytes_per_round"] for s in f["sites"]) / 1e6,
                "samples_per_round": f["samples_per_round"],
                "samples_per_s": f["samples_per_s"],
                "s_per_1000_steps": 1000 * f["round_s"] / steps_per_round,
                "time_to_100_rounds_h": f["time_to_rounds_s"] / 3600,
            })
            print(f"{gbps:>3} Gb/s {label:<18} round {f['round_s']:9.3f} s "
                  f"samples/s {f['samples_per_s']:9.1f}", file=sys.stderr)
    with open(os.path.join(RESULTS, "results.csv"), "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c])
                             for c in COLUMNS})
    write_summary(rows)
    plot(rows)


def write_summary(rows):
    lines = ["FedAvg vs cross-site synchronous data parallelism: gpt2-124m, 4 sites x 8 A100,",
             "predicted time per 1000 local steps (each site: 64 sequences of 1024 tokens a step)",
             "and samples/s over all sites. Predictions of time, not of model quality.", ""]
    lines.append(f"{'WAN':>8} {'config':<18} {'round s':>10} {'agg s':>10} "
                 f"{'s/1000 steps':>13} {'samples/s':>10} {'MB/site/round':>14}")
    for r in rows:
        lines.append(f"{r['wan_gbps']:>5} Gb {r['config']:<18} {r['round_s']:10.3f} "
                     f"{r['aggregation_s']:10.3f} {r['s_per_1000_steps']:13.1f} "
                     f"{r['samples_per_s']:10.1f} {r['max_site_sent_mb_per_round']:14.1f}")
    lines.append("")
    for gbps in BANDWIDTHS_GBPS:
        sync = next(r for r in rows if r["wan_gbps"] == gbps and r["aggregation"] == "sync_dp")
        best = max((r for r in rows if r["wan_gbps"] == gbps), key=lambda r: r["samples_per_s"])
        lines.append(f"{gbps} Gb/s: sync-dp {sync['samples_per_s']:.1f} samples/s; best "
                     f"{best['config']} {best['samples_per_s']:.1f} samples/s "
                     f"({best['samples_per_s'] / sync['samples_per_s']:.1f}x)")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS, "summary.txt"), "w") as out:
        out.write(text)
    print(text)


def plot(rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels = [c[0] for c in CONFIGS]
    width = 0.4
    for i, gbps in enumerate(BANDWIDTHS_GBPS):
        values = [next(r["samples_per_s"] for r in rows
                       if r["wan_gbps"] == gbps and r["config"] == label) for label in labels]
        ax.bar([x + (i - 0.5) * width for x in range(len(labels))], values, width,
               label=f"WAN {gbps} Gb/s per site")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("samples/s over 4 sites (predicted)")
    ax.set_title("gpt2-124m, 4 sites x 8 A100: time per sample, not model quality")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "plot.png"), dpi=120)


if __name__ == "__main__":
    main()
