"""Where bar-to-order latency goes: perf_counter stamps along the runtime's path (wrappers patched in here, the product
code is untouched), the event-loop callbacks slower than 4 ms, every garbage collection (gc.callbacks: when, which
generation, how long, in which thread), and for the slowest orders what each thread of the process did meanwhile (a
sampler process reads /proc/<pid>/task/*/schedstat every ~0.3 ms: on-CPU and run-queue time per thread; a thread
with work that was neither running nor queued for a CPU waited for the GIL or for I/O).
With --profile a cProfile of the event-loop thread. Only the ats side (--n orders after 20 warm-up ones); see
bench_runtime_latency.py for ats against raw ib_async.

    PYTHONPATH=. .venv/bin/python benchmarks/profile_runtime_latency.py [--n 300] [--profile] [--no-sampler]
        [--switch-interval MS] [--no-tuning]     # force an interval after start-up; skip tune_runner_process
    PYTHONPATH=. .venv/bin/python benchmarks/profile_runtime_latency.py --gil-demo   # the GIL hand-off alone, ~30 s
"""
import sys, time, asyncio, os, shutil, subprocess, tempfile, cProfile, pstats, threading, gc, json, argparse
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_runtime_latency as B
import numpy as np
import ats.runtime as R, ats.risk as RK

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--n", type=int, default=300); ap.add_argument("--profile", action="store_true")
ap.add_argument("--no-sampler", action="store_true"); ap.add_argument("--switch-interval", type=float, default=None)
ap.add_argument("--no-tuning", action="store_true", help="undo ats' runner latency tuning if this tree has it")
ap.add_argument("--gil-demo", action="store_true", help="only: the loop -> thread -> loop hand-off while a background thread "
                "round-trips JSON and builds DataFrames (as the state and ledger writers do), GIL switch interval 5 ms vs 0.5 ms")
A = ap.parse_args()


def gil_demo(n: int = 300, every: float = 0.02) -> None:
    "The isolation floor of bench_thread_handoff.py, with a busy Python thread beside it, at two switch intervals."
    import queue, pandas as pd
    lowered = 0.0005
    stop = threading.Event()
    state = {f"k{i}": dict(qty=i, price=i * 1.5, tags=[str(i)] * 3) for i in range(3000)}
    def writer():                   # what a background writer does around its ArcticDB calls: JSON and frames, GIL held
        while not stop.is_set():
            json.loads(json.dumps(state))
            pd.DataFrame({"a": range(200), "b": [str(i) for i in range(200)]}).to_json()
    async def handoffs() -> list[float]:
        loop = asyncio.get_running_loop(); inbox: queue.Queue = queue.Queue(); lat = []
        def worker():
            while (item := inbox.get()) is not None: loop.call_soon_threadsafe(item[1].set_result, item[0])
        threading.Thread(target=worker, daemon=True).start()
        for _ in range(n):
            fut = loop.create_future(); inbox.put((time.perf_counter(), fut))
            lat.append(time.perf_counter() - await fut); await asyncio.sleep(every)
        inbox.put(None); return lat
    for interval in (0.005, lowered, 0.005, lowered):
        sys.setswitchinterval(interval); stop.clear()
        w = threading.Thread(target=writer, daemon=True); w.start()
        lat = np.array(asyncio.run(handoffs())) * 1000
        stop.set(); w.join()
        print(f"switch interval {interval * 1000:3g} ms, a JSON/DataFrame thread beside: loop -> thread -> loop p50 "
              f"{np.percentile(lat, 50):6.3f}  p90 {np.percentile(lat, 90):6.3f}  p99 {np.percentile(lat, 99):6.3f}  max {lat.max():6.3f} ms"
              f"  (load {os.getloadavg()[0]:.2f})")


if A.gil_demo:
    gil_demo(); sys.exit(0)

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

GC = []         # (start, end, generation, collected, thread id)
_gc_t0 = {}
def gc_cb(phase, info):
    if phase == "start": _gc_t0[threading.get_native_id()] = time.perf_counter()
    else:
        tid = threading.get_native_id(); GC.append((_gc_t0.pop(tid, time.perf_counter()), time.perf_counter(), info["generation"], info["collected"], tid))
gc.callbacks.append(gc_cb)

if A.no_tuning:                # this tree as if the runner were not tuned: no freeze, CPython collects on its own
    R.tune_runner_process = lambda *a, **k: None
    if hasattr(R, "Pacer"): R.Pacer.take_over_gc = lambda self: None

prof = cProfile.Profile()
import asyncio.events as AE, collections
SLOW = collections.Counter(); SLOWT = collections.defaultdict(float)
o_run = AE.Handle._run
RUNS = []       # (start, end) of every event-loop callback that read a socket: what else the loop did in the bar's read
def h_run(self):
    t = time.perf_counter(); r = o_run(self); e = time.perf_counter(); d = e - t
    if getattr(getattr(self, "_callback", None), "__name__", "") == "_read_ready": RUNS.append((t, e))
    if d > 0.004:
        k = repr(getattr(self, "_callback", None))[:110]; SLOW[k] += 1; SLOWT[k] = max(SLOWT[k], d)
    return r
AE.Handle._run = h_run

SAMPLER = r"""
import os, sys, time, json, signal
pid, out = sys.argv[1], sys.argv[2]
rows = []; last = {}
stop = False
def h(*a):
    global stop; stop = True
signal.signal(signal.SIGTERM, h)
while not stop:
    t = time.perf_counter()
    try: tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError: break
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f: run, wait, _ = f.read().split()
        except (FileNotFoundError, ValueError): continue
        v = (int(run), int(wait))
        if last.get(tid) != v: last[tid] = v; rows.append((t, int(tid), v[0], v[1]))
    time.sleep(0.0003)
json.dump(rows, open(out, "w"))
"""
THREADS = {}    # native id -> thread name
def note_threads():
    for t in threading.enumerate(): THREADS[t.native_id] = t.name

def ats_side(project, port, n):
    from ats.config import load_settings
    from ats.store import Store, StrategyConfig
    s = load_settings(project / "settings.ini"); st = Store.from_settings(s)
    for c in st.load_strategy_configs(validate=False):
        c.active = False; st.save_strategy_config(c)
    st.save_strategy_config(StrategyConfig("probe.py", "probe", True, {}, {}, 0.5))
    lat = []
    async def run(rt):
        if A.switch_interval is not None: sys.setswitchinterval(A.switch_interval / 1000)
        print(f"switch interval {sys.getswitchinterval()*1000:g} ms, gc thresholds {gc.get_threshold()}, frozen {gc.get_freeze_count()}")
        while len(rt.latencies) < 20: await asyncio.sleep(0.05)
        if A.profile: prof.enable()
        WIN.append(time.perf_counter())
        while len(rt.latencies) < n + 20:
            note_threads(); await asyncio.sleep(0.1)
        if A.profile: prof.disable()
        WIN.append(time.perf_counter()); lat.extend(list(rt.latencies)[20:n + 20])
        t, c = time.perf_counter(), time.thread_time(); gc.collect()            # what housekeeping's periodic collect costs now
        FULL.append((time.perf_counter() - t, time.thread_time() - c, len(gc.get_objects())))
        rt.request_stop("profile done")
    asyncio.run(R.run_session_async(s, st, port=port, on_start=lambda rt: asyncio.ensure_future(run(rt))))
    return lat
FULL, WIN = [], []      # the full collection's time; start and end of the measured orders

n = A.n
project, gw, port = B.probe_project_and_gateway("ats-prof-", 10)
samples_file = project / "schedstat.json"
sampler = None if A.no_sampler else subprocess.Popen([sys.executable, "-c", SAMPLER, str(os.getpid()), str(samples_file)])
try:
    lat = ats_side(project, port, n)
finally:
    if sampler: sampler.terminate(); sampler.wait(10)
    gw.terminate(); gw.wait(10)
rows = json.loads(samples_file.read_text()) if sampler and samples_file.exists() else []
shutil.rmtree(project, ignore_errors=True)
print("ats p50 %.3f p90 %.3f p99 %.3f max %.3f ms  (load %s)" % (B.pct(lat, 50), B.pct(lat, 90), B.pct(lat, 99), B.pct(lat, 100),
                                                               " ".join(f"{x:.2f}" for x in os.getloadavg())))
# per-segment deltas
segs, paths = {}, {}
for rec, xs in S.items():
    labels = [l for l, _ in xs]
    if "ib_orders" not in labels: continue
    xs = xs[:labels.index("ib_orders") + 1]        # the bar's own order (a time-limit close may follow with the same stamp)
    prev = rec; prevl = "received"; p = []
    for l, t in xs:
        segs.setdefault(f"{prevl}->{l}", []).append((t - prev) * 1000); p.append((f"{prevl}->{l}", (t - prev) * 1000)); prev, prevl = t, l
    paths[rec] = (xs[-1][1], p)
for k, v in segs.items():
    v = np.array(v); print(f"{k:28} n={len(v):4} p50 {np.percentile(v,50):7.3f} p90 {np.percentile(v,90):7.3f} p99 {np.percentile(v,99):7.3f} max {v.max():7.3f} ms")

main_tid = threading.main_thread().native_id
THREADS[main_tid] = "event loop (main)"
print(f"one full gc.collect() on the event loop after the orders (housekeeping does one every [memory] garbage_collection_interval): "
      f"{FULL[0][0] * 1000:.1f} ms ({FULL[0][1] * 1000:.1f} ms of CPU), walking {FULL[0][2]} objects; {gc.get_freeze_count()} frozen")
print("garbage collections while the orders were measured:")
for g in range(3):
    d = np.array([(e - s) * 1000 for s, e, gg, *_ in GC if gg == g and WIN[0] <= s <= WIN[1]])
    if len(d): print(f"  gen {g}: {len(d):4} collections, p50 {np.percentile(d, 50):6.3f} max {d.max():7.3f} ms, total {d.sum():7.1f} ms"
                     f" ({sum(1 for x in GC if x[2] == g and x[4] == main_tid and WIN[0] <= x[0] <= WIN[1])} in the event loop thread)")

# per-thread schedstat series -> cumulative (t, run, wait), interpolated at the window edges
series = collections.defaultdict(list)
for t, tid, run, wait in rows: series[tid].append((t, run, wait))
def at(tid, t):
    xs = series[tid]; lo = None
    for x in xs:
        if x[0] <= t: lo = x
        else: break
    return lo or (t, 0, 0)
def window(t0, t1):
    out = {}
    for tid in series:
        a, b = at(tid, t0), at(tid, t1)
        dr, dw = (b[1] - a[1]) / 1e6, (b[2] - a[2]) / 1e6
        if dr > 0.05 or dw > 0.05: out[tid] = (dr, dw)
    return out
def one(tid, t0, t1):
    "ms the thread spent on a CPU, waiting in the run queue, and neither (asleep: the GIL, I/O, or idle) in [t0, t1]."
    a, b = at(tid, t0), at(tid, t1)
    run, q = (b[1] - a[1]) / 1e6, (b[2] - a[2]) / 1e6
    return run, q, max(0.0, (t1 - t0) * 1000 - run - q)
strat_tid = next((t for t, nm in THREADS.items() if nm.startswith("strategy-")), None)
if rows and strat_tid:
    acc = collections.defaultdict(list)
    for rec, (end, p) in paths.items():
        st = dict(S[rec]); 
        if not {"queued", "ctx_submit", "ib_orders"} <= set(st): continue
        for name, tid, t0, t1 in (("loop: bar in, to the queue", main_tid, rec, st["queued"]),
                                  ("strategy thread: wake, on_bar", strat_tid, st["queued"], st["ctx_submit"]),
                                  ("loop: order back, to the socket", main_tid, st["ctx_submit"], st["ib_orders"])):
            acc[name].append(((t1 - t0) * 1000,) + one(tid, t0, t1))
    print("\nper order, each thread's time in its part of the path (ms; sampled): on a CPU / in the run queue / asleep "
          "(for a thread that has work: waiting for the GIL)")
    for name, v in acc.items():
        v = np.array(v)
        print(f"  {name:32} total p99 {np.percentile(v[:,0],99):7.2f}  sum: cpu {v[:,1].sum():7.1f} runq {v[:,2].sum():7.1f} "
              f"asleep {v[:,3].sum():7.1f}  asleep p99 {np.percentile(v[:,3],99):6.2f} max {v[:,3].max():6.2f}")
import bisect
RUNS.sort(); starts = [a for a, _ in RUNS]
rest = []
for rec in paths:
    st = dict(S[rec]); i = bisect.bisect_right(starts, rec) - 1
    if i >= 0 and RUNS[i][1] >= rec and "queued" in st: rest.append((RUNS[i][1] - st["queued"]) * 1000)
if rest:
    r = np.array(rest)
    print(f"\nthe bar's socket read, after the bar was queued (ib_async decoding the rest of that read, the loop busy): "
          f"p50 {np.percentile(r,50):.3f} p90 {np.percentile(r,90):.3f} p99 {np.percentile(r,99):.3f} max {r.max():.3f} ms")
order = sorted(paths, key=lambda r: paths[r][0] - r, reverse=True)
k = max(3, len(order) // 100)
print(f"\nslowest {k} orders (ms); threads that ran meanwhile: on-CPU / run-queue wait (sampled, ±0.3 ms)")
for rec in order[:k]:
    end, p = paths[rec]
    print(f"  {(end - rec) * 1000:7.2f} ms  " + "  ".join(f"{s.split('->')[1]} {d:.2f}" for s, d in p))
    for s, e, g, c, tid in GC:
        if e >= rec and s <= end: print(f"       gc gen {g} {1000 * (e - s):.2f} ms in {THREADS.get(tid, tid)} (collected {c})")
    if rows:
        for tid, (dr, dw) in sorted(window(rec, end).items(), key=lambda x: -x[1][0]):
            print(f"       {THREADS.get(tid, f'tid {tid} (gone)'):40} cpu {dr:6.2f}  runq {dw:6.2f}")
if A.profile:
    ps = pstats.Stats(prof, stream=sys.stdout); ps.sort_stats("cumulative")
    ps.print_callees("_on_bar_update|_on_completed|_new_day|_deliver_bars|_route|snapshot|sample_equity|intent_delta|_working|check")
    ps.sort_stats("tottime").print_stats(25)

for k, c in SLOW.most_common(25): print(f"slow cb x{c:4} max {SLOWT[k]*1000:7.1f} ms  {k}")
