"""How fast a finished ``efm self-improve`` run got new policy versions onto its robots, and what the
wait cost.

Robots never stop for a new version: they keep practising with the one they have, and the policy node
switches at the next episode boundary. The cost of the delay is practice the learner cannot train on:
episodes collected by a version after its successor was published (off-policy, stored but never
trained). This reads a run directory and prints, per version, the delay from publication to each
robot's download and first action with it, and the share of stale episodes.

    python bench/self_improve_fleet.py runs/self_improve_language_table_quick
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from datetime import datetime
from pathlib import Path

LOG_LINE = re.compile(r"^\[(?P<level>\w+)\] \[(?P<stamp>[\d.]+)\] \[(?P<node>[^\]]+)\]: (?P<text>.*)$")


def _epoch(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S%z").timestamp()


def robot_events(log_path: Path) -> dict[str, dict[str, float]]:
    """version -> {"downloaded": wall time, "acting": wall time} from one robot's log."""
    events: dict[str, dict[str, float]] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        text, stamp = match["text"], float(match["stamp"])
        downloaded = re.match(r"policy sync: (\S+) downloaded", text)
        acting = re.match(r"acting with (\S+)", text)
        if downloaded:
            events.setdefault(downloaded[1], {}).setdefault("downloaded", stamp)
        elif acting:
            events.setdefault(acting[1], {}).setdefault("acting", stamp)
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="an efm self-improve run directory (OUT)")
    args = parser.parse_args()
    run = Path(args.run)
    versions = json.loads((run / "learner" / "versions.json").read_text())
    created = {v["version"]: _epoch(v["created"]) for v in versions}
    order = [v["version"] for v in versions]
    robots = {p.parent.name: robot_events(p) for p in sorted((run / "robots").glob("*/log.txt"))}

    print(f"{run}: {len(order)} versions, {len(robots)} robots (publication times have 1 s resolution)")
    print(f"{'version':10} {'download delay s (median, max)':>32} {'first action with it s (median, max)':>38}")
    switch_delays = []
    for version in order[1:]:
        downloads = [e[version]["downloaded"] - created[version] for e in robots.values()
                     if "downloaded" in e.get(version, {})]
        actions = [e[version]["acting"] - created[version] for e in robots.values() if "acting" in e.get(version, {})]
        switch_delays += actions

        def fmt(xs):
            return f"{statistics.median(xs):6.1f}, {max(xs):6.1f} ({len(xs)}/{len(robots)})" if xs else "      -"
        print(f"{version:10} {fmt(downloads):>32} {fmt(actions):>38}")

    records = [json.loads(p.read_text()) for p in (run / "learner" / "episodes").glob("*.json")]
    stale = 0
    for record in records:
        version, received = record["policy_version"], _epoch(record["received"])
        successors = order[order.index(version) + 1:] if version in order else []
        stale += any(created[s] < received for s in successors)
    trained = sum(1 for r in records if r.get("trainable"))
    print(f"episodes: {len(records)} uploaded, {trained} trainable when they arrived, {stale} "
          f"({100 * stale / max(len(records), 1):.0f}%) collected by a version after its successor was published")
    if switch_delays:
        print(f"publication -> a robot acting with it: median {statistics.median(switch_delays):.1f} s, "
              f"max {max(switch_delays):.1f} s over {len(switch_delays)} switches")


if __name__ == "__main__":
    main()
