"""The whole suite under load: run `make test` N times in a row while busy processes keep every core at 100 %.

    .venv/bin/python benchmarks/loaded_suite.py [--runs 3] [--busy 2]

Issue 11 asked for proof that the suite stays green on a busy machine (a race in the emergency-stop test showed only
there). Each run's result and duration are printed and appended to benchmarks/results/loaded_suite.txt."""
import argparse, multiprocessing as mp, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _burn(stop):
    x = 0
    while not stop.is_set():
        for i in range(200_000): x = (x * 31 + i) % 1_000_003      # pure CPU, no I/O


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy processes (default: one per core)")
    a = ap.parse_args()
    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(a.busy)]
    for p in burners: p.start()
    out = ROOT / "benchmarks" / "results" / "loaded_suite.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    ok = True
    try:
        for k in range(1, a.runs + 1):
            t0 = time.monotonic()
            r = subprocess.run(["make", "test"], cwd=ROOT, capture_output=True, text=True)
            tail = [l for l in r.stdout.splitlines() if " passed" in l or " failed" in l or "Success" in l or "Failed" in l]
            line = (f"{time.strftime('%Y-%m-%d %H:%M')} run {k}/{a.runs} with {a.busy} busy processes on {os.cpu_count()} cores: "
                    f"exit {r.returncode} in {time.monotonic() - t0:.0f} s; {' | '.join(tail[-2:])}")
            print(line, flush=True)
            with out.open("a") as f: f.write(line + "\n")
            if r.returncode != 0:
                ok = False
                (out.parent / f"loaded_suite_run{k}.log").write_text(r.stdout + r.stderr)
                break
    finally:
        stop.set()
        for p in burners: p.join(5)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
