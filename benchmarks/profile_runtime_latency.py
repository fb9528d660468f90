"""Where bar-to-order latency goes: perf_counter stamps along the runtime's path (wrappers patched in here, the product
code is untouched), the event-loop callbacks slower than 4 ms, and with --profile a cProfile of the event-loop thread.
Only the ats side (200 orders after 20 warm-up ones); see bench_runtime_latency.py for ats against raw ib_async.

    PYTHONPATH=. .venv/bin/python benchmarks/profile_runtime_latency.py [--profile]
"""
import sys, time, asyncio, os, shutil, subprocess, tempfile, cProfile, pstats, threading
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_runtime_latency as B
import numpy as np
import ats.runtime as R, ats.risk as RK, ats.sizing as SZ
S = {}          # received -> list of (label, t)
def stamp(rec, label):
    if rec is not None: S.setdefault(rec, []).append((label, time.perf_counter()))
cur = threading.local()
o_deliver = R.Runtime._deliver_bars
def deliver(self, slot, received=None):
    stamp(received, "deliver"); r = o_deliver(self, slot, received); stamp(received, "queued"); return r
R.Runtime._deliver_bars = deliver
o_dispatch = R.Runtime._dispatch
def dispatch(self, slot, strat, ev):
    rec = getattr(ev, "received", None); stamp(rec, "worker_got"); return o_dispatch(self, slot, strat, ev)
R.Runtime._dispatch = dispatch
o_submit = R.LiveContext.submit
def submit(self, intent):
    stamp(self._received, "ctx_submit"); return o_submit(self, intent)
R.LiveContext.submit = submit
o_op = R.Runtime._order_path
def order_path(self, slot, gen, intent, received=None):
    stamp(received, "loop_got"); cur.rec = received; r = o_op(self, slot, gen, intent, received); stamp(received, "after_route"); return r
R.Runtime._order_path = order_path
o_snap = R.Runtime.snapshot
def snapshot(self):
    rec = getattr(cur, "rec", None); stamp(rec, "sized"); r = o_snap(self); stamp(rec, "snapshot"); return r
R.Runtime.snapshot = snapshot
o_check = RK.RiskEngine.check
def check(self, o, snap):
    rec = getattr(cur, "rec", None); r = o_check(self, o, snap); stamp(rec, "risk"); return r
RK.RiskEngine.check = check
o_ibo = R.Runtime._ib_orders
def ib_orders(self, slot, intent, delta, price):
    r = o_ibo(self, slot, intent, delta, price); stamp(getattr(cur, "rec", None), "ib_orders"); return r
R.Runtime._ib_orders = ib_orders

prof = cProfile.Profile()
import asyncio.events as AE, collections
SLOW = collections.Counter(); SLOWT = collections.defaultdict(float)
o_run = AE.Handle._run
def h_run(self):
    t = time.perf_counter(); r = o_run(self); d = time.perf_counter() - t
    if d > 0.004:
        k = repr(getattr(self, "_callback", None))[:110]; SLOW[k] += 1; SLOWT[k] = max(SLOWT[k], d)
    return r
AE.Handle._run = h_run
import selectors, bisect
SEL = []
o_sel = selectors.EpollSelector.select
def sel(self, timeout=None):
    SEL.append(time.perf_counter()); return o_sel(self, timeout)
selectors.EpollSelector.select = sel
def ats_side(project, port, n):
    from ats.config import load_settings
    from ats.store import Store, StrategyConfig
    s = load_settings(project / "settings.ini"); st = Store.from_settings(s)
    for c in st.load_strategy_configs(validate=False):
        c.active = False; st.save_strategy_config(c)
    st.save_strategy_config(StrategyConfig("probe.py", "probe", True, {}, {}, 0.5))
    async def run():
        rt = await R.Runtime(s, st, port=port).start()
        while len(rt.latencies) < 20: await asyncio.sleep(0.05)
        if PROFILE: prof.enable()
        while len(rt.latencies) < n + 20: await asyncio.sleep(0.1)
        if PROFILE: prof.disable()
        lat = list(rt.latencies)[20:n + 20]
        await rt.stop(); return lat
    return asyncio.run(run())
PROFILE = "--profile" in sys.argv
n = 200
project = Path(tempfile.mkdtemp(prefix="ats-prof-"))
shutil.copytree(B.ROOT / "strategies", project / "strategies")
(project / "strategies" / "probe.py").write_text(B.PROBE)
env = {**os.environ, "ATS_RISK__MAX_POSITION_SIZE": "1", "ATS_RISK__MAX_PORTFOLIO_WEIGHT": "1", "ATS_MONITORING__CHECK_INTERVAL": "3600"}
subprocess.run([B.ATS, "init"], cwd=project, env=env, check=True, capture_output=True)
os.chdir(project); os.environ.update(env)
from ats.supervisor import free_port, port_open
port = free_port()
gw = subprocess.Popen([B.ATS, "gateway", "--port", str(port), "--speed", str(10 * 86400), "--fresh"], cwd=project, env=env,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while not port_open("127.0.0.1", port): time.sleep(0.1)
    lat = ats_side(project, port, n)
finally:
    gw.terminate(); gw.wait(10); shutil.rmtree(project, ignore_errors=True)
print("ats p50 %.3f p99 %.3f ms" % (B.pct(lat, 50), B.pct(lat, 99)))
# per-segment deltas
segs = {}
for rec, xs in S.items():
    labels = [l for l, _ in xs]
    if "ib_orders" not in labels: continue
    prev = rec; prevl = "received"
    for l, t in xs:
        segs.setdefault(f"{prevl}->{l}", []).append((t - prev) * 1000); prev, prevl = t, l
SEL.sort()
for rec, xs in S.items():
    i = bisect.bisect_left(SEL, rec)
    if i < len(SEL) and any(l == "worker_got" for l, _ in xs):
        wg = next(t for l, t in xs if l == "worker_got")
        segs.setdefault("received->loop_idle", []).append((SEL[i] - rec) * 1000)
        segs.setdefault("loop_idle->worker_got", []).append((wg - SEL[i]) * 1000)
for k, v in segs.items():
    v = np.array(v); print(f"{k:28} n={len(v):4} p50 {np.percentile(v,50):7.3f} p90 {np.percentile(v,90):7.3f} p99 {np.percentile(v,99):7.3f} ms")
if PROFILE:
    ps = pstats.Stats(prof, stream=sys.stdout); ps.sort_stats("cumulative")
    ps.print_callees("_on_bar_update|_on_completed|_new_day|_deliver_bars|_route|snapshot|sample_equity|intent_delta|_working|check")
    ps.sort_stats("tottime").print_stats(25)

for k, c in SLOW.most_common(25): print(f"slow cb x{c:4} max {SLOWT[k]*1000:7.1f} ms  {k}")
