"""Soak, at length: see ogsync.testing.soak.

.venv/bin/python bench/soak.py --kills 30 --records 20000
.venv/bin/python bench/soak.py --kills 30 --records 20000 --command backfill
"""

from __future__ import annotations

import argparse

from ogsync.testing.soak import run_soak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--command", choices=["sync", "backfill"], default="sync")
    args = parser.parse_args()
    report = run_soak(kills=args.kills, records=args.records, seed=args.seed, command=args.command)
    hooks = report.webhooks
    print(f"soak ({report.command}): {report.runs} runs, {report.killed} killed mid-run, "
          f"{report.finished} ended by themselves, receiver killed {report.receiver_kills} "
          f"times, {report.seconds:.0f} s")  # fmt: skip
    print(f"faults seen: {report.faults}; statuses: {report.statuses}")
    print(f"webhooks: {hooks['queued']} queued, {hooks['delivered']} delivered, "
          f"{hooks['failed_attempts']} failed attempts, {hooks['gave_up']} given up")  # fmt: skip
    print("checked: " + ", ".join(f"{k} {v}" for k, v in report.checked.items()))
    print("differences: 0")


if __name__ == "__main__":
    main()
