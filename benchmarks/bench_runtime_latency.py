"""Bar-to-order latency: from the moment a completed bar arrives to the moment the order is handed to the socket.

Both sides run in this process against one paper gateway in a separate process (`ats gateway`, a simulated day every
1/`--days-per-second` s), in the same run, one after the other:

- **raw ib_async**: a bar-update handler that places a market order at once — the floor any Python IB program pays;
- **isolated floor**: the same handler, but the bar crosses to a thread and the order comes back to the event loop
  (`queue.SimpleQueue` there, `call_soon_threadsafe` back) before `placeOrder`: what any design pays that runs strategy
  code off the event loop, so that a strategy that hangs cannot stop the others (ats' rule). Nothing else is done;
- **ats**: the runner as `ats run` starts it (`run_session_async`), then the full runtime path — bar into the history,
  the strategy's own thread (`on_bar` → `buy`), back to the event loop, sizing, the pre-trade risk chain, `placeOrder` on the strategy's own connection.

The strategy does nothing but buy, so the difference is what the runtime adds. Target: ≤ 1 ms at p99 over raw ib_async.
Each side's share of CPU time the hypervisor gave to other machines (steal, from /proc/stat) is printed with it: on a
shared virtual machine a p99 measures that too.
On a loaded machine p99 measures the scheduler more than ats: compare ats and raw of the same run, over several runs, and
an unmodified checkout (`git archive HEAD | tar -x -C DIR`, run with PYTHONPATH=DIR) in the same minutes for a "before".
Results and where the time goes: benchmarks/results/runtime_latency.txt.

    .venv/bin/python benchmarks/bench_runtime_latency.py [--bars 300] [--days-per-second 10]
"""
import argparse, asyncio, os, queue, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ATS = str(Path(sys.executable).parent / "ats")
PROBE = """from ats.strategy import Strategy
class Probe(Strategy):
    params = dict(symbols=["MSFT"])
    def on_bar(self, bar):
        self.buy("MSFT", 1)
"""


def pct(xs, q): return float(np.percentile(np.asarray(xs) * 1000, q))


async def raw_ib_async(port: int, n: int, isolated: bool = False) -> list[float]:
    from ib_async import IB, Stock, MarketOrder
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=90, timeout=10)
    c = Stock("MSFT", "SMART", "USD"); await ib.qualifyContractsAsync(c)
    lat, done = [], asyncio.Event()
    bars = await ib.reqHistoricalDataAsync(c, "", "2 Y", "1 day", "TRADES", True, keepUpToDate=True)

    def place(t0):
        ib.placeOrder(c, MarketOrder("BUY", 1, orderRef="raw"))
        lat.append(time.perf_counter() - t0)
        if len(lat) >= n: done.set()
    loop, inbox = asyncio.get_running_loop(), queue.SimpleQueue()

    def strategy_thread():                  # the isolated floor: on_bar in its own thread, the order back on the loop
        while (t0 := inbox.get()) is not None: loop.call_soon_threadsafe(place, t0)
    th = threading.Thread(target=strategy_thread, daemon=True)
    if isolated: th.start()

    def on_update(b, has_new):
        t0 = time.perf_counter()
        if isolated: inbox.put(t0)
        else: place(t0)
    bars.updateEvent += on_update
    await asyncio.wait_for(done.wait(), n * 2 + 30)
    inbox.put(None)
    ib.disconnect()
    return lat


def cpu_steal() -> tuple[int, int]:
    "(steal, total) jiffies of all CPUs so far (/proc/stat); (0, 0) where there is no such file."
    try:
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return f[7] if len(f) > 7 else 0, sum(f[:8])
    except OSError: return 0, 0


def steal_share(before, after) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1])


def ats_runtime(project: Path, port: int, n: int) -> list[float]:
    from ats.config import load_settings
    from ats.store import Store, StrategyConfig
    from ats.runtime import run_session_async
    s = load_settings(project / "settings.ini")
    st = Store.from_settings(s)
    for c in st.load_strategy_configs(validate=False):
        c.active = False; st.save_strategy_config(c)
    st.save_strategy_config(StrategyConfig("probe.py", "probe", True, {}, {}, 0.5))

    lat = []

    async def collect(rt):
        while len(rt.latencies) < n: await asyncio.sleep(0.1)
        lat.extend(list(rt.latencies)[:n]); rt.request_stop("benchmark done")

    def on_start(rt): asyncio.ensure_future(collect(rt))
    # the runner's own entry point (what `ats run` and the live runner notebook call): its start-up, tuning included
    asyncio.run(run_session_async(s, st, port=port, on_start=on_start))
    return lat


def probe_project_and_gateway(prefix: str, days_per_second: float):
    """A temporary project (cwd from now on) with the probe strategy, and the paper gateway serving it in its own process
    (a simulated day every 1/`days_per_second` s), listening: (project, gateway process, port)."""
    project = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.copytree(ROOT / "strategies", project / "strategies")
    (project / "strategies" / "probe.py").write_text(PROBE)
    env = {**os.environ, "ATS_RISK__MAX_POSITION_SIZE": "1", "ATS_RISK__MAX_PORTFOLIO_WEIGHT": "1", "ATS_MONITORING__CHECK_INTERVAL": "3600"}
    subprocess.run([ATS, "init"], cwd=project, env=env, check=True, capture_output=True)
    os.chdir(project); os.environ.update(env)
    from ats.supervisor import free_port, port_open
    port = free_port()
    gw = subprocess.Popen([ATS, "gateway", "--port", str(port), "--speed", str(days_per_second * 86400), "--fresh"],
                          cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not port_open("127.0.0.1", port): time.sleep(0.1)
    return project, gw, port


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=300, help="orders measured on each side")
    ap.add_argument("--days-per-second", type=float, default=10.0, help="gateway clock speed")
    a = ap.parse_args()
    project, gw, port = probe_project_and_gateway("ats-bench-lat-", a.days_per_second)
    try:
        steal = [cpu_steal()]
        raw = asyncio.run(raw_ib_async(port, a.bars)); steal.append(cpu_steal())
        floor = asyncio.run(raw_ib_async(port, a.bars, isolated=True)); steal.append(cpu_steal())
        ats = ats_runtime(project, port, a.bars); steal.append(cpu_steal())
    finally:
        gw.terminate(); gw.wait(10)
        shutil.rmtree(project, ignore_errors=True)
    print(f"bar-to-order latency, {a.bars} orders each, gateway at {a.days_per_second:g} days/s (same run)")
    print(f"{'':18} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'steal':>6}")
    for i, (name, xs) in enumerate((("raw ib_async", raw), ("isolated floor", floor), ("ats runtime", ats))):
        print(f"{name:18} {pct(xs, 50):8.3f} {pct(xs, 90):8.3f} {pct(xs, 99):8.3f} {pct(xs, 100):8.3f} {steal_share(steal[i], steal[i + 1]):6.1%}")
    add50, add99 = pct(ats, 50) - pct(raw, 50), pct(ats, 99) - pct(raw, 99)
    print(f"ats adds: p50 {add50:.3f} ms, p99 {add99:.3f} ms (target ≤ 1 ms at p99: {'met' if add99 <= 1.0 else 'MISSED'})")
    print(f"isolation alone adds: p50 {pct(floor, 50) - pct(raw, 50):.3f} ms, p99 {pct(floor, 99) - pct(raw, 99):.3f} ms; "
          f"ats over the isolated floor: p50 {pct(ats, 50) - pct(floor, 50):.3f} ms, p99 {pct(ats, 99) - pct(floor, 99):.3f} ms")


if __name__ == "__main__":
    main()
