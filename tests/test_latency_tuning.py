"""The runner process is tuned for latency once it has started (issue 16): the objects alive after start-up are frozen
out of the garbage collector's walks, so a full collection on the event loop (the housekeeping's periodic one) no longer
stalls an order in flight for ~70 ms; and what can wait runs once a bar is through (`ats.pacing`): the ledger and state
writers write then, and the young garbage is collected then, not in the middle of an order. The tuning must not loosen
anything: each strategy still runs in its own thread (a broken one is disabled, the others trade on), every order still
passes the risk check, every fill and stop still reaches the database, and garbage cycles are still freed.
Figures: benchmarks/results/runtime_latency.txt."""
import asyncio, gc, json, threading, weakref
from ats.store import StrategyConfig
from ats.gateway.service import GatewayThread
from ats.runtime import run_session_async
from ats.pacing import tune_runner_process
from ats.ledger import LedgerStore
from ats.risk import ArcticStateStore
from ats import paper
from runtime_helpers import make_project, wait_for, PROBE, BOOM
import pytest

QUIET = "ATS_STOP_LOSS__DEFAULT_STOP_PCT=0.5\nATS_STOP_LOSS__PROFIT_TARGET_RATIO=0\nATS_STOP_LOSS__TIME_BASED_STOP=0\n"


@pytest.fixture
def gateway(project):
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    yield gw
    gw.stop()


@pytest.fixture
def unfrozen():
    "What a session freezes in this (pytest) process is handed back to the collector afterwards."
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_tune_runner_process_takes_start_up_objects_out_of_the_collectors_walks(unfrozen):
    start_up = [dict(a=1)]                                     # alive at start-up, tracked by the collector
    assert tune_runner_process() == gc.get_freeze_count() > 1000
    session = [dict(b=2)]
    walked = {id(o) for o in gc.get_objects()}                  # what a collection walks: what the session created, not start-up
    assert id(session) in walked and id(start_up) not in walked


def test_a_session_runs_tuned_with_isolation_and_risk_checks_intact(project, gateway, unfrozen):
    s, st = make_project(project, env=QUIET, strategies=dict(probe=PROBE, boom=BOOM), configs=[
        StrategyConfig("probe.py", "probe", True, dict(qty=1), {}, 0.3),
        StrategyConfig("probe.py", "greedy", True, dict(symbols=["IBM"], qty=400), dict(max_position_size=0.05), 0.3),
        StrategyConfig("boom.py", "boom", True, {}, {}, 0.1)])
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    seen, freed = {}, []

    class Cycle: pass

    def on_start(rt):                                           # right after start-up, as `ats run` and the runner notebook
        seen.update(rt=rt, frozen=gc.get_freeze_count(), loop_thread=threading.get_ident(), gc_on=gc.isenabled())
        # only the bars may write now: the writers' own timers are an hour (the defaults write within 0.25 s anyway)
        rt.writer.interval = rt.stopbook.store.delay = rt.risk.store.delay = 3600.0
        for _ in range(3 * gc.get_threshold()[0]):              # garbage that only a collection frees (a reference cycle)
            a, b = Cycle(), Cycle(); a.b, b.a = b, a
            weakref.finalize(a, freed.append, 1)
    session = asyncio.run_coroutine_threadsafe(run_session_async(s, st, port=gateway.port, on_start=on_start), loop)
    try:
        assert wait_for(lambda: "rt" in seen, 30), session.exception() if session.done() else "the session did not start"
        rt = seen["rt"]
        assert seen["frozen"] > 1000                            # the start-up objects are out of the collector's walks
        assert seen["gc_on"] is False                           # CPython no longer collects in the middle of an order...
        run = lambda coro, timeout=30: asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
        paper.step(gateway, rt, run, 5)
        booked = set(rt.ledger.fills)                           # days 1-5, settled
        paper.step(gateway, rt, run, 1)                         # a 6th bar: once it is through, what was queued before it is written
        probe, greedy, boom = (rt.slots[n] for n in ("probe", "greedy", "boom"))
        # isolation: every strategy in a thread of its own, not the event loop's; the broken one is disabled, the others trade
        threads = {sl.worker._thread.ident for sl in (probe, greedy, boom)}
        assert len(threads) == 3 and seen["loop_thread"] not in threads
        assert wait_for(lambda: boom.worker.state.value == "disabled", 10) and probe.orders >= 5
        # risk: the greedy strategy is held at its 5 % position limit, told why
        assert wait_for(lambda: greedy.refused >= 1, 10), (greedy.orders, greedy.refused)
        assert any(r["kind"] == "refused" and r["strategy"] == "greedy" and "[max_position_size]" in r["reason"] for r in rt.activity)
        # ...but the pacer does, once a bar is through: the cycles made at start-up are freed while the session runs
        assert rt.pacer.quiet_moments >= 5 and freed and rt.pacer.collections >= 1
        # the writers wrote once bars were through, though their own timers would have waited an hour
        stored = LedgerStore(st)
        assert len(booked) >= 4 and wait_for(lambda: {f.exec_id for f in stored.fills()} >= booked, 10), "fills not written after a bar"
        # the 6th day's own fills come on the strategies' connections and may be read after its bar was through: they wait
        # for the next bar (or, by default, the writers' own 0.25 s); a kick, as the next bar would give, writes them
        rt.writer.kick(); rt.stopbook.store.kick()
        assert wait_for(lambda: {f.exec_id for f in stored.fills()} >= set(rt.ledger.fills), 10), "fills not in the database"
        stops = ArcticStateStore(st.library("portfolios"), "stops.state")
        assert wait_for(lambda: stops.load() == json.loads(json.dumps(rt.stopbook.to_state())), 10), "stops not in the database"
    finally:
        if "rt" in seen: loop.call_soon_threadsafe(seen["rt"].request_stop, "test done")
        session.result(60)
        loop.call_soon_threadsafe(loop.stop)
    assert gc.isenabled()                                       # handed back when the session ends
