"""The whole pre-trade check chain per order, with 100 positions and 10 strategies (target: p99 <= 200 µs).

    .venv/bin/python benchmarks/bench_risk.py [n_orders]

Three cases, each timed per order with time.perf_counter_ns over many orders after a warm-up:
  1. one account picture checked against many orders (a rebalance: the snapshot's totals are computed once);
  2. a fresh picture for every order (totals recomputed every time), correlations precomputed once a day as the runtime does;
  3. a fresh picture for every order that also computes the strategies' correlations from 250 days of returns (worst case).
The floor in the same run is a bare Python call with the same arguments. The orders are a realistic mix: most pass, some
break one or more limits (refusals build messages and an event, so they are the slower path)."""
import random, statistics, sys, time
import numpy as np
import pandas as pd
from ats.risk import RiskEngine, RiskConfig, Order, PortfolioSnapshot, return_correlations


def setup(seed=0):
    rnd = random.Random(seed)
    syms = [f"S{i:03d}" for i in range(100)]
    strats = [f"strat{i}" for i in range(10)]
    prices = {s: round(rnd.uniform(10, 500), 2) for s in syms}
    pos = {(strats[i % 10], s): rnd.choice([-1, 1]) * rnd.randint(10, 300) for i, s in enumerate(syms)}   # 100 positions
    pnl = {s: rnd.uniform(-9000, 5000) for s in strats}
    days = pd.bdate_range("2023-01-02", periods=250)
    rng = np.random.default_rng(seed)
    rets = {s: pd.Series(rng.normal(0, 0.01, 250), days) for s in strats}
    limits = {s: {"max_position_size": 0.05, "max_position_value": 300_000} for s in strats[:5]}
    orders = [Order(rnd.choice(strats), rnd.choice(syms), rnd.choice([-1, 1]) * rnd.randint(1, 2000), 0.0) for _ in range(64)]
    for o in orders: o.price = prices[o.symbol]
    return syms, strats, prices, pos, pnl, rets, limits, orders


def timed(fn, items, n):
    lat = []
    for i in range(n):
        x = items[i % len(items)]
        t = time.perf_counter_ns(); fn(x); lat.append(time.perf_counter_ns() - t)
    lat.sort()
    return lat


def pct(lat, q): return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000


def main(n=20_000):
    syms, strats, prices, pos, pnl, rets, limits, orders = setup()
    E = RiskEngine(RiskConfig(), limits)
    corr = return_correlations(rets, 20)
    kw = dict(nav=10_000_000, excess_liquidity=7_000_000, positions=pos, prices=prices, strategy_pnl_today=pnl,
              day_start_equity=10_010_000, peak_equity=10_050_000)
    snap = PortfolioSnapshot(**kw, correlations=corr)
    decisions = [E.check(o, snap) for o in orders]
    share = sum(d.allowed for d in decisions) / len(decisions)
    E.events.clear()

    cases = {
        "1 shared picture": lambda o: E.check(o, snap),
        "2 fresh picture per order": lambda o: E.check(o, PortfolioSnapshot(**kw, correlations=corr)),
        "3 fresh picture + correlations": lambda o: E.check(o, PortfolioSnapshot(**kw, strategy_returns=rets)),
    }
    floor = timed(lambda o: (lambda a, b: None)(o, snap), orders, n)
    print(f"risk check chain: 100 positions, 10 strategies (5 with own limits), {len(orders)} distinct orders, "
          f"{share:.0%} accepted; {n:,} timed checks per case")
    print(f"{'case':34s} {'p50 µs':>8s} {'p99 µs':>8s} {'max µs':>9s}")
    for name, fn in cases.items():
        m = n if not name.startswith("3") else max(500, n // 20)
        timed(fn, orders, min(m, 1000))                            # warm-up
        lat = timed(fn, orders, m)
        print(f"{name:34s} {pct(lat, .5):8.1f} {pct(lat, .99):8.1f} {lat[-1] / 1000:9.1f}")
    print(f"{'bare function call (floor)':34s} {pct(floor, .5):8.2f} {pct(floor, .99):8.2f}")
    print("target: p99 <= 200 µs for the check chain (cases 1 and 2; case 3 is once a day in the runtime)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
