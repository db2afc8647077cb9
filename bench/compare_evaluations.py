"""Compare two policies evaluated on the same seeds (`efm eval policy ... --json FILE`): success rates
with 95% Wilson intervals and the exact McNemar test on the scenes where they disagree.

Same seeds means the same scenes, so the comparison is paired: only scenes that one policy solves and the
other does not carry evidence.

    python bench/compare_evaluations.py before.json after.json
"""
from __future__ import annotations

import argparse
import json
import math

from efm_trainer.selfimprove.evaluation import wilson_interval


def exact_mcnemar(only_first: int, only_second: int) -> float:
    """Two-sided p-value of the exact (binomial) McNemar test."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="JSON written by efm eval policy --json (e.g. Stage 1)")
    parser.add_argument("second", help="the same for the other policy (e.g. after Stage 2)")
    args = parser.parse_args()
    runs = []
    for path in (args.first, args.second):
        data = json.load(open(path))
        runs.append((path, {e["seed"]: bool(e["success"]) for e in data["episodes"]}))
    (name_a, a), (name_b, b) = runs
    if set(a) != set(b):
        raise SystemExit(f"the two evaluations used different seeds ({len(set(a) ^ set(b))} differ): "
                         "evaluate both with the same --first-seed and --episodes")
    for name, results in runs:
        successes = sum(results.values())
        low, high = wilson_interval(successes, len(results))
        print(f"{name}: {successes}/{len(results)} = {100 * successes / len(results):.1f}% "
              f"(95% CI {100 * low:.1f}-{100 * high:.1f}%)")
    only_a = sum(1 for seed in a if a[seed] and not b[seed])
    only_b = sum(1 for seed in a if b[seed] and not a[seed])
    print(f"scenes solved by only the first: {only_a}, by only the second: {only_b}; "
          f"exact McNemar p = {exact_mcnemar(only_a, only_b):.4f}")


if __name__ == "__main__":
    main()
