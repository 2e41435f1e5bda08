#!/usr/bin/env python3
"""The 500-seed every-plan campaign (issue 19) runs in slices of seeds across sessions; each
slice's outcome is one line of simulation/campaigns/every-plan-64-slots.jsonl, so progress is
kept with the code instead of on a machine that goes away.

  scripts/campaign-slices.py add A..B COMMIT BUILD JOBS < campaign.json
      records `cohort campaign --seeds A..B --plan all --slots 64 --json` output
  scripts/campaign-slices.py summary
      seeds covered, violations, and attestations accepted per plan over every slice
"""
import json
import pathlib
import sys

RECORD = pathlib.Path(__file__).resolve().parent.parent / "simulation/campaigns/every-plan-64-slots.jsonl"


def add(seeds: str, commit: str, build: str, jobs: str) -> None:
    report = json.load(sys.stdin)
    if report.get("slots") != 64:
        sys.exit(f"the record is for 64-slot runs; this report has {report.get('slots')}")
    plans = report["plans"]
    line = {
        "seeds": seeds,
        "commit": commit,
        "build": build,
        "jobs": int(jobs),
        "wall_s": round(report["wall_ms"] / 1000),
        "violations": sum(sum(p["violations_by_invariant"].values()) for p in plans.values()),
        "seeds_failed": sum(p["seeds_failed"] for p in plans.values()),
        "attestations": {n: [p["attestations_accepted"], p["attestations_expected"]] for n, p in plans.items()},
        "tasks": {n: [p["tasks_signed"], p["tasks_submitted"]] for n, p in plans.items() if p["tasks_submitted"]},
    }
    with RECORD.open("a") as out:
        out.write(json.dumps(line) + "\n")
    print(json.dumps(line))


def seed_range(text: str) -> range:
    first, _, last = text.partition("..")
    return range(int(first), int(last or first) + 1)


def per_plan(slices: list[dict], key: str) -> dict[str, list[int]]:
    """Each plan's `[done, of]` pairs under `key` summed over the slices that recorded them."""
    totals: dict[str, list[int]] = {}
    for line in slices:
        for plan, (done, of) in (line.get(key) or {}).items():
            t = totals.setdefault(plan, [0, 0])
            t[0] += done
            t[1] += of
    return totals


def summary() -> None:
    slices = [json.loads(l) for l in RECORD.read_text().splitlines() if l.strip()]
    seeds = sorted({s for line in slices for s in seed_range(line["seeds"])})
    print(f"{len(seeds)} of 500 seeds ({len(slices)} slices), "
          f"violations {sum(l['violations'] for l in slices)}, "
          f"failed seeds {sum(l['seeds_failed'] for l in slices)}")
    gaps = sorted(set(range(1, 501)) - set(seeds))
    if gaps:
        print(f"  seeds not yet run: {len(gaps)}, from {gaps[0]}")
    # Wall time per build and job count (a slice without a recorded wall time is left out);
    # what else shared the machine during a slice is in the notes, not here.
    groups: dict[tuple[str, int], list[int]] = {}
    for line in slices:
        if line.get("wall_s") is None:
            continue
        g = groups.setdefault((line["build"], line["jobs"]), [0, 0])
        g[0] += len(seed_range(line["seeds"]))
        g[1] += line["wall_s"]
    for (build, jobs), (count, wall) in sorted(groups.items()):
        print(f"  {build} build, --jobs {jobs}: {count} seeds in {wall} s "
              f"({wall / 3600:.1f} h, {wall / count:.0f} s a seed)")
    unknown = [l["seeds"] for l in slices if l.get("wall_s") is None]
    if unknown:
        print(f"  (slices without a recorded wall time: {', '.join(unknown)})")
    for plan, (accepted, expected) in per_plan(slices, "attestations").items():
        print(f"  {plan:10} attestations {accepted} / {expected} ({100 * accepted / expected:.1f}%)")
    for plan, (signed, submitted) in per_plan(slices, "tasks").items():
        print(f"  {plan:10} AVS tasks signed {signed} / {submitted} ({100 * signed / submitted:.1f}%)")
    missing = [l["seeds"] for l in slices if not l.get("attestations")]
    if missing:
        print(f"  (slices without per-plan figures: {', '.join(missing)})")


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["add", seeds, commit, build, jobs]:
            add(seeds, commit, build, jobs)
        case ["summary"]:
            summary()
        case _:
            sys.exit(__doc__)
