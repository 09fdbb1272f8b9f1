"""Alternate a benchmark between an older commit and this checkout, to tell a change from
this machine's noise (runs of the same code differ by 10-50 %; only alternating pairs
compare).

    python bench/ab.py --base HEAD~3 --pairs 3 --grep 'median|CPU server' -- \\
        python bench/ingest.py --duration 20

The older commit is checked out with ``git worktree`` into a temporary directory; each
pair runs the command there and here, in turns (which goes first alternates), and prints
the output lines that match ``--grep``. The benchmarks put their own checkout first on
``PYTHONPATH``, so each run serves the code beside the script it runs.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(command: list[str], cwd: Path, pattern: re.Pattern[str]) -> list[str]:
    """The matching output lines of one run of ``command`` in ``cwd``."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    lines = [line.rstrip() for line in (done.stdout + done.stderr).splitlines()]
    found = [line for line in lines if pattern.search(line)]
    if done.returncode not in (0, 1):  # 1: a target missed, the figures still stand
        found.append(f"(exit status {done.returncode})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the older commit (any git revision)")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs [3]")
    parser.add_argument("--grep", default=".", help="print the output lines matching this")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the benchmark command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the benchmark command after --")
    pattern = re.compile(args.grep)
    with tempfile.TemporaryDirectory(prefix="urbanstack-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), args.base],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        try:
            sides = [("base " + args.base, base), ("this checkout", REPO)]
            for pair in range(args.pairs):
                for name, cwd in sides if pair % 2 == 0 else sides[::-1]:
                    print(f"== pair {pair + 1}, {name}", flush=True)
                    for line in run(command, cwd, pattern):
                        print(f"   {line}", flush=True)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
