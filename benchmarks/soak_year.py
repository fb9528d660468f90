"""Soak: a simulated trading year at full speed, 10 strategies on the paper gateway — does the runner's memory stay
bounded, and does clean-up keep the database from growing?

The paper gateway runs in this process on its manual clock (as in tests/runtime_helpers.py); each trading day is played
as soon as the runner has acted on the previous close. The strategies are probes that buy now and then and sell later.
The runner's housekeeping runs as configured below (clean-up every 30 s, garbage collection every 10 s) while it
trades. Reported: resident memory (RSS) at the start, the middle and the end; the database before and after
`ats.retention.cleanup` — once as of today, once as of a year later (when every detailed row has expired and only
fills, daily bars and state remain). Results go to benchmarks/results/soak_year.txt.

    nice .venv/bin/python benchmarks/soak_year.py [--days 252]
"""
import argparse, asyncio, os, shutil, sys, tempfile, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
PROBE = """from ats.strategy import Strategy
class Probe(Strategy):
    params = dict(symbols=["MSFT"], every=7, hold=3, qty=1)
    def on_bar(self, bar):
        self.n = getattr(self, "n", 0) + 1
        sym = self.symbols[0]
        if self.n % self.p["every"] == 0: self.order_target_quantity(sym, self.p["qty"])
        elif self.n % self.p["every"] == self.p["hold"]: self.order_target_quantity(sym, 0)
"""
ENV = ("ATS_RISK__MAX_POSITION_SIZE=1\nATS_RISK__MAX_PORTFOLIO_WEIGHT=1\nATS_MONITORING__CHECK_INTERVAL=3600\n"
       "ATS_MEMORY__CLEANUP_INTERVAL=30\nATS_MEMORY__GARBAGE_COLLECTION_INTERVAL=10\nATS_RECOVERY__RECOVERY_DELAY=0\n")


def mb(n): return f"{n / 2**20:8.2f} MB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=252, help="trading days to play")
    ap.add_argument("--max-bars", type=int, help="[memory] max_bars_in_memory (small: the caches fill up early, so a flat "
                                                  "memory after that shows nothing else grows)")
    ap.add_argument("--max-trades", type=int, help="[memory] max_trades_in_memory")
    ap.add_argument("--out", default="soak_year.txt", help="file in benchmarks/results/")
    a = ap.parse_args()
    env = ENV + (f"ATS_MEMORY__MAX_BARS_IN_MEMORY={a.max_bars}\n" if a.max_bars else "") + \
          (f"ATS_MEMORY__MAX_TRADES_IN_MEMORY={a.max_trades}\n" if a.max_trades else "")
    project = Path(tempfile.mkdtemp(prefix="ats-soak-"))
    os.chdir(project)
    for k in [k for k in os.environ if k.startswith(("ATS_", "IB_"))]: del os.environ[k]
    (project / "strategies").mkdir()
    from runtime_helpers import make_project, Session
    from ats.store import StrategyConfig
    from ats.gateway.service import GatewayThread
    from ats.retention import cleanup, rss_mb, disk_bytes, stored_bytes
    syms = ["AAPL", "GOOG", "IBM", "MSFT"]
    cfgs = [StrategyConfig("probe.py", f"probe{i}", True, dict(symbols=[syms[i % 4]], every=5 + i, hold=2 + i % 3, qty=1 + i), {}, 0.09)
            for i in range(10)]
    s, st = make_project(project, env=env, strategies=dict(probe=PROBE), configs=cfgs)
    gw = GatewayThread(data="sample", speed=0, start="2011-01-03", state_path=project / "gw.json").start()
    lines, t0 = [], time.monotonic()
    def say(x): print(x, flush=True); lines.append(x)
    sess = Session(s, st, gw).start()
    try:
        rss = {"start": rss_mb()}
        say(f"soak: {len(cfgs)} strategies on {', '.join(syms)}, {a.days} trading days from 2011-01-03 (sample data), paper gateway")
        say(f"  day    0  RSS {rss['start']:7.1f} MB  bars cached {sum(len(h) for h in sess.rt.history.values())}")
        for d in range(1, a.days + 1):
            sess.step(1, pause=0.0)
            if d == a.days // 2: rss["middle"] = rss_mb()
            if d % 21 == 0 or d == a.days:
                say(f"  day {d:4d}  RSS {rss_mb():7.1f} MB  bars cached {sum(len(h) for h in sess.rt.history.values())}  "
                    f"fills {len(sess.rt.ledger.fills)}  activity {len(sess.rt.activity)}  {time.monotonic() - t0:6.0f} s")
        rss["end"] = rss_mb()
        fills = len(sess.rt.ledger.fills)
        alerts = [x["message"] for x in sess.rt.alerts if x["level"] in ("WARNING", "ERROR")]
    finally:
        sess.stop(); gw.stop()
    secs = time.monotonic() - t0
    say(f"played {a.days} days in {secs:.0f} s ({a.days / secs:.1f} days/s); {fills} fills")
    say(f"RSS: start {rss['start']:.1f} MB, middle {rss['middle']:.1f} MB, end {rss['end']:.1f} MB")
    if alerts: say(f"warnings during the run: {len(alerts)}, e.g. {alerts[-1][:160]}")
    now = __import__("pandas").Timestamp.now(tz="UTC")
    for label, when in (("as of today", now), ("as of a year later", now + __import__("pandas").Timedelta(days=366))):
        rep = cleanup(st, s, now=when)
        say(f"clean-up {label}: {rep.rows_deleted} rows deleted, {rep.versions_pruned} versions pruned, in {rep.seconds:.1f} s")
        say(f"  stored by ArcticDB {mb(rep.stored_bytes_before)} -> {mb(rep.stored_bytes_after)}; LMDB folder on disk "
            f"{mb(rep.disk_bytes_before)} -> {mb(rep.disk_bytes_after)} (LMDB keeps freed pages for reuse)")
        for r in rep.symbols:
            if r.rows_deleted or r.versions_pruned: say(f"    {r.library}/{r.symbol}: {r.rows_deleted} rows, {r.versions_pruned} versions")
    from ats.ledger import load_ledger
    say(f"fills still stored after both clean-ups: {len(load_ledger(st).fills)} (of {fills})")
    out = ROOT / "benchmarks" / "results" / a.out
    args = " ".join(sys.argv[1:]) or f"--days {a.days}"
    out.write_text(f"# benchmarks/soak_year.py {args}  ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, shared)\n" + "\n".join(lines) + "\n")
    print(f"written to {out}")
    shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
