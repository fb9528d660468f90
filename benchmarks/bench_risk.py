"""The whole pre-trade check chain per order, with 100 positions and 10 strategies (target p99 <= 200 µs).

    .venv/bin/python benchmarks/bench_risk.py
The baseline in the same run is a bare Python function call with the same arguments (the floor of any check)."""
import random, time
from ats.risk import RiskEngine, RiskConfig, OrderRequest, Snapshot

def main(n=20000):
    rnd = random.Random(0)
    syms = [f"S{i}" for i in range(100)]
    strats = [f"strat{i}" for i in range(10)]
    pos = {(strats[i % 10], s): rnd.randint(-500, 500) for i, s in enumerate(syms)}
    snap = Snapshot(nav=10_000_000, excess_liquidity=8_000_000, positions=pos, prices={s: (rnd.uniform(10, 500), 1.0, 1.0) for s in syms},
                    strategy_pnl_today={s: rnd.uniform(-1000, 1000) for s in strats})
    E = RiskEngine(RiskConfig(), {s: {"max_position_size": 0.05} for s in strats})
    orders = [OrderRequest(rnd.choice(strats), rnd.choice(syms), rnd.randint(1, 300), 100.0) for _ in range(n)]
    lat = []
    for o in orders:
        t = time.perf_counter_ns(); E.check(o, snap); lat.append(time.perf_counter_ns() - t)
    base = []
    f = lambda o, s: None
    for o in orders:
        t = time.perf_counter_ns(); f(o, snap); base.append(time.perf_counter_ns() - t)
    lat.sort(); base.sort()
    p = lambda xs, q: xs[int(q * (len(xs) - 1))] / 1000
    print(f"risk check chain (100 positions, 10 strategies): p50 {p(lat, .5):.1f} µs  p99 {p(lat, .99):.1f} µs   target p99 <= 200 µs")
    print(f"bare function call (floor):                        p50 {p(base, .5):.2f} µs  p99 {p(base, .99):.2f} µs   ratio p99 {p(lat, .99) / max(p(base, .99), 1e-3):.0f}x")

if __name__ == "__main__":
    main()
