#!/usr/bin/env python3
"""How reproducible op profiles are: compares two or more profile.json files of the same Plan.

    python3 bench/profile_repro.py A.json B.json [C.json ...]

For every ordered pair (A, B) it counts the ops whose median in A lies outside B's reported
spread (min_s..max_s), the issue's criterion "two profiles agree within the spread they report",
and prints the worst such ops. Then per op over all profiles: the spread of the medians against
the spread each profile reports. Exit 0 always (a measuring tool, not a test); see
docs/profiles.md "How reproducible a profile is".
"""
import itertools
import json
import sys


def key(op):
    return (op["op"], op["dtype"], op["flags"], tuple(op["dims"]), op["n_in"], op["n_out"])


def label(op):
    dims = list(op["dims"])
    while len(dims) > 1 and dims[-1] == 0:
        dims.pop()
    return f"{op['op']} {op['dtype']} {'x'.join(map(str, dims))}" + (
        f" flags {op['flags']}" if op["flags"] else "")


def main(paths):
    if len(paths) < 2:
        sys.exit("usage: profile_repro.py A.json B.json [more profiles of the same Plan]")
    profiles = []
    for p in paths:
        with open(p) as f:
            doc = json.load(f)
        profiles.append({key(o): o for o in doc["ops"]})
    keys = list(profiles[0])
    for i, prof in enumerate(profiles[1:], 1):
        if set(prof) != set(keys):
            sys.exit(f"{paths[i]} has other ops than {paths[0]}: not profiles of one Plan")
    sums = [sum(p[k]["median_s"] for k in keys) for p in profiles]
    print(f"{len(profiles)} profiles, {len(keys)} ops; sums of medians "
          f"{min(sums) * 1e3:.2f} to {max(sums) * 1e3:.2f} ms "
          f"({(max(sums) / min(sums) - 1) * 100:.2f}% apart)")
    counts = []
    worst = {}
    for a, b in itertools.permutations(range(len(profiles)), 2):
        outside = 0
        for k in keys:
            m = profiles[a][k]["median_s"]
            lo, hi = profiles[b][k]["min_s"], profiles[b][k]["max_s"]
            if m < lo or m > hi:
                outside += 1
                gap = (lo - m) / lo if m < lo else (m - hi) / hi
                worst[k] = max(worst.get(k, 0.0), gap)
        counts.append(outside)
    print(f"medians outside the other profile's min..max, over {len(counts)} ordered pairs: "
          f"{min(counts)} to {max(counts)} of {len(keys)}, {sum(counts) / len(counts):.1f} on "
          f"average; pairs with none: {sum(1 for c in counts if c == 0)}")
    if worst:
        print("ops that fell outside (largest gap beyond the range, relative):")
        for k, gap in sorted(worst.items(), key=lambda kv: -kv[1])[:10]:
            meds = [p[k]["median_s"] for p in profiles]
            spread = max((p[k]["max_s"] / p[k]["min_s"] - 1) for p in profiles)
            print(f"  {label(profiles[0][k]):40s} gap {gap * 100:5.2f}%  medians "
                  f"{(max(meds) / min(meds) - 1) * 100:5.2f}% apart, widest reported spread "
                  f"{spread * 100:5.1f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
