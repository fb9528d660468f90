"""Faults against the paper gateway: the gateway drops every connection five times in a session, the runner is killed with
SIGKILL mid-session and restarted, another program holds a strategy's client id, a strategy floods orders. After each: no
fill lost, no decision sent twice, the ledger's positions equal the broker's."""
import os, signal, subprocess, sys, time
from decimal import Decimal
import pytest
from ib_async import IB
from ats.store import StrategyConfig
from ats.gateway.service import GatewayThread
from ats.ledger import load_ledger
from ats.control import send_command
from ats.reconciliation import resync
from runtime_helpers import Session, make_project, wait_for, broker_positions, ledger_positions, duplicate_orders, PROBE

FLOOD = """from ats.strategy import Strategy
class Flood(Strategy):
    params = dict(symbols=["MSFT"], n=120)
    def on_start(self):
        self.paced = []
    def on_bar(self, bar):
        for i in range(self.p["n"]):
            self.buy("MSFT", 1, client_order_key=f"{bar.time:%Y%m%d}-{i}")
        self.buy("MSFT", 1, client_order_key=f"{bar.time:%Y%m%d}-0")      # the same decision again: must not be sent twice
    def on_pacing(self, throttled):
        self.paced.append(throttled)
"""


def configs():
    return [StrategyConfig("ma_crossover.py", "ma_crossover", True, dict(symbols=["AAPL", "MSFT"], fast=3, slow=8), {}, 0.3),
            StrategyConfig("probe.py", "probe", True, dict(symbols=["IBM"], qty=10), {}, 0.2)]


def test_the_runtime_reconnects_after_five_dropped_connections_and_ends_consistent(project):
    s, st = make_project(project, strategies=dict(probe=PROBE), configs=configs())
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    sess = Session(s, st, gw).start()
    try:
        sess.step(12)
        for k in range(1, 6):
            n = gw.call(gw.gw.drop)                                  # every client of the gateway loses its socket
            assert n == 3
            sess.step(2)                                             # bars go on while ats reconnects
            assert wait_for(lambda: sess.rt.main.reconnects == k and all(sl.conn.reconnects == k for sl in sess.rt.slots.values()), 10)
            sess.step(3)
        # nothing half done: every order is complete or still waiting, untouched, for the next open
        assert wait_for(lambda: ledger_positions(sess.rt.ledger) == broker_positions(gw) and all(o.done or o.filled == 0 for o in gw.gw.exchange.orders.values()))
        sess.run(resync(sess.rt, "test"))
        rows = {r["strategy"]: r for r in sess.rt.status()}
        assert all(r["state"] == "running" and r["connection"] == "connected" for r in rows.values())
        assert rows["probe"]["orders"] >= 20 and rows["ma_crossover"]["orders"] > 0
        assert sess.rt.last_reconciliation.ok
        assert duplicate_orders(gw) == {}
        assert set(sess.rt.ledger.fills) == {f.exec_id for f in gw.gw.exchange.fills}
        assert any("lost; reconnecting" in a["message"] for a in sess.rt.alerts)
    finally:
        sess.stop(); gw.stop()


RUNNER = """import sys, logging
logging.basicConfig(level=logging.INFO)
from ats.config import load_settings
from ats.runtime import run_session
r = run_session(load_settings(sys.argv[1]), port=int(sys.argv[2]), minutes=float(sys.argv[3]))
print(r.summary(), flush=True)
"""


def start_runner(project, port, minutes=5.0):
    (project / "runner.py").write_text(RUNNER)
    log = open(project / "runner.log", "ab")
    return subprocess.Popen([sys.executable, str(project / "runner.py"), str(project / "settings.ini"), str(port), str(minutes)],
                            cwd=project, stdout=log, stderr=subprocess.STDOUT)


def test_kill_9_of_the_runner_then_restart_loses_no_fill_and_sends_nothing_twice(project):
    s, st = make_project(project, strategies=dict(probe=PROBE), configs=configs())
    # four simulated days a second: bars, orders and fills keep coming while the runner is dead
    gw = GatewayThread(data="sample", speed=4 * 86400, start="2006-01-03", state_path=project / "gw.json").start()
    try:
        runner = start_runner(project, gw.port)
        assert wait_for(lambda: len(gw.gw.exchange.fills) >= 8, 60), (project / "runner.log").read_text()[-3000:]
        runner.send_signal(signal.SIGKILL); runner.wait(10)
        dead_at = len(gw.gw.exchange.fills)
        time.sleep(1.0)                                             # the market moves on; working orders may fill meanwhile
        runner = start_runner(project, gw.port)
        assert wait_for(lambda: len(gw.gw.exchange.fills) >= dead_at + 8, 60), (project / "runner.log").read_text()[-3000:]
        gw.call(gw.gw.freeze)                                       # the market stops: the stops left at the broker cannot fill
        send_command(st, "shutdown", by="test")
        assert runner.wait(30) == 0, (project / "runner.log").read_text()[-3000:]
        gw.call(lambda: None)
        L = load_ledger(st)
        open_orders = [o for o in gw.gw.exchange.orders.values() if not o.done]
        # a clean shutdown cancels the strategies' working orders and leaves what protects positions: stops, targets, and an
        # exit (a time limit or a local trail) already sent in a position's OCA group, which the frozen market has not filled
        assert all(o.oca_group.startswith("ats-") and (o.order_type in ("STP", "LMT") or o.order_ref.startswith("probe:exit."))
                   for o in open_orders), \
            [(o.order_ref, o.oca_group, o.order_type, o.status) for o in open_orders]
        stopped = {o.con_id for o in open_orders if o.order_type == "STP"}
        assert set(broker_positions(gw)) <= stopped, [str((o.order_id, o.order_type, o.oca_group, o.status, o.total_quantity, o.placed_day)) for o in gw.gw.exchange.orders.values() if o.oca_group] + [str(L.positions)]  # every position the runner left has its stop at the broker
        ats_fills = {f.exec_id for f in gw.gw.exchange.fills}
        assert set(L.fills) == ats_fills                            # no fill lost, none stored twice
        assert ledger_positions(L) == broker_positions(gw) != {}
        assert duplicate_orders(gw) == {}                           # no decision sent twice across the crash
        log = (project / "runner.log").read_text()
        assert "ended: shutdown requested by test" in log
    finally:
        gw.stop()


def test_a_client_id_held_by_another_program_is_skipped(project):
    s, st = make_project(project, strategies=dict(probe=PROBE), configs=[StrategyConfig("probe.py", "probe", True, dict(qty=1), {}, 0.2)])
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    other = IB(); other.connect("127.0.0.1", gw.port, clientId=2, timeout=5)     # the id the first strategy would take
    sess = Session(s, st, gw)
    try:
        t0 = time.monotonic()
        sess.start()
        assert time.monotonic() - t0 < 5                                          # refused at once, not after the connect timeout
        slot = sess.rt.slots["probe"]
        assert slot.state == "running" and slot.conn.client_id == 3
        sess.step(1)
        assert wait_for(lambda: slot.orders == 1)
        sess.step(1)                                                              # it fills at the next open
        assert wait_for(lambda: slot.fills >= 1)
    finally:
        sess.stop(); other.disconnect(); gw.stop()


def test_a_strategy_that_floods_orders_is_paced_and_told_not_cut_off(project):
    s, st = make_project(project, env="ATS_RISK__MAX_POSITION_SIZE=1\n", strategies=dict(flood=FLOOD),
                         configs=[StrategyConfig("flood.py", "flood", True, dict(n=120), {}, 0.5)])
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    sess = Session(s, st, gw).start()
    try:
        sess.step(1)
        slot = sess.rt.slots["flood"]
        assert wait_for(lambda: slot.orders == 120, 20)
        assert wait_for(lambda: len(gw.gw.exchange.orders) == 120, 20), (len(gw.gw.exchange.orders), gw.gw.stats, slot.orders, slot.refused)
        assert gw.gw.stats["paced"] == 0                                   # IB's pacing limit was never hit
        assert slot.conn.status().throttle_episodes >= 1 and sess.rt.counters["deduped"] >= 1
        assert wait_for(lambda: slot.worker.handler.paced[:2] == [True, False], 10)
        assert any("sends faster than" in a["message"] for a in sess.rt.alerts)
        assert slot.conn.connected
    finally:
        sess.stop(); gw.stop()


WIDE = """from ats.strategy import Strategy
class Wide(Strategy):
    params = dict(symbols=["AAPL", "GOOG", "IBM", "MSFT", "SPY", "QQQ", "ACWI", "IWM", "TLT"])
    def on_bar(self, bar):
        pass
"""


def test_the_burst_of_a_connect_is_paced_without_a_warning(project):
    "Every connect sends a burst (positions, executions, one history and one subscription per symbol): queued, not alarming."
    s, st = make_project(project, env="ATS_IB__MAX_MESSAGES_PER_SECOND=10\n", strategies=dict(wide=WIDE),
                         configs=[StrategyConfig("wide.py", "wide", True, {}, {}, 0.5)])
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    sess = Session(s, st, gw).start()
    try:
        sess.step(2)
        assert sess.rt.main.status().throttle_episodes + sess.rt.slots["wide"].conn.status().throttle_episodes >= 1   # it was paced
        time.sleep(2.5)
        assert not any("faster than" in a["message"] for a in sess.rt.alerts), [a["message"] for a in sess.rt.alerts]
    finally:
        sess.stop(); gw.stop()


def test_latency_is_measured_again_soon_after_the_connect_burst(project):
    "The first round trip is taken in the connect's burst; the status must not show that figure for a whole heartbeat interval."
    import asyncio
    from ats.broker import Connection, ConnectionSettings, ClientIds
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    async def go():
        c = Connection("probe", ConnectionSettings(port=gw.port, heartbeat_interval=30.0), ClientIds(1))
        await c.connect()
        await asyncio.sleep(6.0)
        n = c.heartbeats
        await c.close()
        return n
    try:
        assert asyncio.run(go()) >= 3              # at the connect, 1 s and 5 s later; the next only after 30 s
    finally:
        gw.stop()
