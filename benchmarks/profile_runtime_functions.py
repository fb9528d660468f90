"""Where the runtime's own per-order work goes, function by function: each function on the bar -> order path is wrapped
with a wall-clock timer (here only: the product code is untouched) while `bench_runtime_latency.py`'s ats side runs
(the probe strategy buys on every bar; the paper gateway in its own process). Times are inclusive (a function's time
includes the functions it calls) and each call is timed on its own, so they show what one bar costs when its code has not
run for 1/`--days-per-second` s: that is how a runner meets its bars (a daily bar a day apart, here 0.1 s).

    .venv/bin/python benchmarks/profile_runtime_functions.py [--n 300] [--days-per-second 10]
"""
import argparse, collections, shutil, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_runtime_latency as B
import ats.runtime as R, ats.risk as RK, ats.sizing as SZ, ats.ledger as L, ats.strategy as ST, ats.worker as W

T = collections.defaultdict(list)


def wrap(owner, name):
    f, label = getattr(owner, name), f"{getattr(owner, '__name__', owner)}.{name}"
    def timed(*a, **k):
        t = time.perf_counter()
        try: return f(*a, **k)
        finally: T[label].append(time.perf_counter() - t)
    setattr(owner, name, timed)


PATH = [   # in the order a bar meets them: the event loop, the strategy's thread, the event loop again
    (R.Runtime, ["_on_bar_update", "_on_completed", "_new_day", "sample_equity", "_net_pnl", "_deliver_bars"]),
    (R, ["_bar_time"]), (R.BarHistory, ["append", "bar"]), (L.Ledger, ["mark", "equity_rows", "position"]),
    (R.stop_orders, ["on_price"]), (R.instruments, ["on_close"]), (W.StrategyWorker, ["submit"]),
    (R.Runtime, ["_dispatch"]), (ST.Strategy, ["_submit"]), (ST, ["order_key"]), (R.LiveContext, ["submit"]),
    (R.Runtime, ["_route", "_working", "capital", "nav", "snapshot", "_check_and_send", "_ib_orders", "_note"]),
    (R.option_legs, ["is_option"]), (R, ["intent_delta"]), (R.Instrument, ["of"]), (R.Connection, ["open_trades"]),
    (RK.RiskEngine, ["check"]),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300); ap.add_argument("--days-per-second", type=float, default=10.0)
    a = ap.parse_args()
    for owner, names in PATH:
        for n in names: wrap(owner, n)
    import ib_async
    wrap(ib_async.IB, "placeOrder")
    project, gw, port = B.probe_project_and_gateway("ats-prof-fn-", a.days_per_second)
    try:
        lat = np.array(B.ats_runtime(project, port, a.n)) * 1000
    finally:
        gw.terminate(); gw.wait(10)
        shutil.rmtree(project, ignore_errors=True)
    print(f"ats bar -> order: p50 {np.percentile(lat, 50):.3f} ms, p99 {np.percentile(lat, 99):.3f} ms ({a.n} orders; timers add ~1 us per call)")
    print(f"{'function (inclusive)':34} {'calls':>6} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8}")
    order = [f"{getattr(o, '__name__', o)}.{n}" for o, ns in PATH for n in ns] + ["IB.placeOrder"]
    for k in order:
        v = np.array(T.get(k, [])) * 1e6
        if len(v): print(f"{k.replace('ats.', ''):34} {len(v):6} {np.percentile(v, 50):8.1f} {np.percentile(v, 90):8.1f} {np.percentile(v, 99):8.1f}")


if __name__ == "__main__":
    main()
