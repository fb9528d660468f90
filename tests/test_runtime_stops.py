"""Stops and the brakes through the live runtime, against the paper gateway over real sockets: every new position gets
its stop and target as one OCA group at the broker, a restart re-attaches instead of sending them again, a local trailing
stop follows the closes and exits, a time limit closes the position, a strategy that keeps buying is held at its limit,
and a price crash trips the emergency stop (orders cancelled, positions flattened, HALTED)."""
from decimal import Decimal, ROUND_CEILING
import pytest
from ats.store import StrategyConfig
from ats.gateway.service import GatewayThread
from ats.risk import TradingState
from runtime_helpers import Session, make_project, wait_for, broker_positions, ledger_positions, duplicate_orders, PROBE

ONCE = """from ats.strategy import Strategy
class Once(Strategy):
    params = dict(symbols=["AAPL"], qty=100)
    def on_start(self):
        self.bought = False
    def on_bar(self, bar):
        if not self.bought:                                  # after a restart the key stops a second entry
            self.bought = True
            self.buy(self.symbols[0], self.p["qty"], client_order_key="entry")
"""


@pytest.fixture
def gateway(project):
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    yield gw
    gw.stop()


def once(project, env, qty=100):
    return make_project(project, env=env, strategies=dict(once=ONCE),
                        configs=[StrategyConfig("once.py", "once", True, dict(symbols=["AAPL"], qty=qty), {}, 0.3)])


def open_orders(gw):
    return [o for o in gw.gw.exchange.orders.values() if not o.done]


def aapl(gw):
    return next(cid for cid, i in gw.gw.exchange.instruments.items() if i.symbol == "AAPL")


def test_a_new_position_gets_stop_and_target_as_one_oca_group_kept_across_a_restart_and_closed_by_the_time_limit(project, gateway):
    s, st = once(project, "ATS_STOP_LOSS__DEFAULT_STOP_PCT=0.25\nATS_STOP_LOSS__PROFIT_TARGET_RATIO=3\nATS_STOP_LOSS__TIME_BASED_STOP=10\n")
    sess = Session(s, st, gateway).start()
    try:
        sess.step(2)
        assert wait_for(lambda: len(open_orders(gateway)) == 2)
        pos = sess.rt.ledger.positions[("once", aapl(gateway))]
        stop, target = sorted(open_orders(gateway), key=lambda o: o.order_type != "STP")
        # 25 % under the average cost (rounded up to the cent: toward the entry), target 3 × that risk above it
        want_stop = (pos.avg_price * Decimal("0.75") / Decimal("0.01")).to_integral_value(ROUND_CEILING) * Decimal("0.01")
        assert (stop.order_type, stop.action, stop.total_quantity, Decimal(str(stop.aux_price))) == ("STP", "SELL", 100, want_stop)
        assert target.order_type == "LMT" and Decimal(str(target.lmt_price)) == pytest.approx(pos.avg_price + 3 * (pos.avg_price - want_stop), abs=Decimal("0.01"))
        assert stop.oca_group == target.oca_group and stop.oca_group.startswith("ats-") and stop.order_ref.startswith(f"once:stop.{stop.oca_group[4:]}.")
    finally:
        sess.stop()
    # a restart: the plan is read back and matched with the orders IB holds; nothing is sent twice
    before = {(o.client_id, o.order_id) for o in open_orders(gateway)}
    sess = Session(s, st, gateway).start()
    try:
        assert {(o.client_id, o.order_id) for o in open_orders(gateway)} == before and len(sess.rt.stopbook) == 1
        assert duplicate_orders(gateway) == {}
        sess.step(12)                                        # more than 10 calendar days after the entry
        assert wait_for(lambda: broker_positions(gateway) == {} and open_orders(gateway) == [])
        assert any("time limit" in a["message"] for a in sess.rt.alerts) and len(sess.rt.stopbook) == 0
        assert ledger_positions(sess.rt.ledger) == {}
        assert [o.order_ref.split(":")[1].split(".")[0] for o in gateway.gw.exchange.orders.values()].count("entry") == 1
    finally:
        sess.stop()


def test_a_local_trailing_stop_follows_the_closes_up_and_exits_when_crossed(project, gateway):
    s, st = once(project, "ATS_STOP_LOSS__TRAILING_STOP=true\nATS_STOP_LOSS__TRAILING_MODE=local\nATS_STOP_LOSS__TRAILING_STOP_PCT=0.03\n"
                          "ATS_STOP_LOSS__PROFIT_TARGET_RATIO=0\nATS_STOP_LOSS__TIME_BASED_STOP=0\n")
    sess = Session(s, st, gateway).start()
    try:
        sess.step(2)
        assert wait_for(lambda: len(sess.rt.stopbook) == 1)
        plan = sess.rt.stopbook.get("once", aapl(gateway))
        floor = plan.initial_stop
        levels, closes = [plan.stop_price], []
        for _ in range(120):
            sess.step(1)
            if not sess.rt.stopbook.plans: break
            levels.append(plan.stop_price); closes.append(sess.rt.last_price["AAPL"])
        assert levels == sorted(levels) and levels[-1] > floor               # it only ever tightened, and it did move
        assert max(closes) * 0.97 <= float(levels[-1]) + 0.01                 # 3 % under the best close
        assert wait_for(lambda: broker_positions(gateway) == {} and open_orders(gateway) == [])
        assert any("crossed the trailing stop" in a["message"] for a in sess.rt.alerts)
        exits = [o for o in gateway.gw.exchange.orders.values() if o.order_ref.startswith("once:exit.")]
        assert len(exits) == 1 and exits[0].oca_group == plan.oca_group and exits[0].status == "Filled"
    finally:
        sess.stop()


def test_a_strategy_that_keeps_buying_is_held_at_its_limit_and_told_why(project, gateway):
    s, st = make_project(project, env="ATS_STOP_LOSS__DEFAULT_STOP_PCT=0.5\nATS_STOP_LOSS__TIME_BASED_STOP=0\n", strategies=dict(probe=PROBE), configs=[
        StrategyConfig("probe.py", "probe", True, dict(symbols=["IBM"], qty=400), dict(max_position_size=0.05), 0.5)])
    sess = Session(s, st, gateway).start()
    try:
        sess.step(25)
        slot = sess.rt.slots["probe"]
        assert wait_for(lambda: slot.refused >= 5), (slot.refused, slot.orders, [(r["kind"], r.get("reason")) for r in sess.rt.activity][-8:], sess.rt.alerts)
        nav = sess.rt.nav()
        held = float(sess.rt.ledger.position("probe", next(iter(broker_positions(gateway)))))
        assert held * sess.rt.last_price["IBM"] <= 0.05 * nav * 1.02        # never above 5 % of NAV (price moves aside)
        assert any(r["kind"] == "refused" and "[max_position_size]" in r["reason"] for r in sess.rt.activity)
    finally:
        sess.stop()


def test_a_price_crash_trips_the_emergency_stop_cancels_flattens_and_halts(project, gateway):
    s, st = make_project(project, env="ATS_RISK__MAX_POSITION_SIZE=0.9\nATS_RISK__MAX_PORTFOLIO_WEIGHT=0.95\n"
                                      "ATS_STOP_LOSS__DEFAULT_STOP_PCT=0.9\nATS_STOP_LOSS__PROFIT_TARGET_RATIO=0\n",
                         strategies=dict(once=ONCE),
                         configs=[StrategyConfig("once.py", "once", True, dict(symbols=["AAPL"], qty=8000), {}, 0.9)])
    sess = Session(s, st, gateway).start()
    try:
        sess.step(2)
        cid = aapl(gateway)
        assert wait_for(lambda: broker_positions(gateway).get(cid) == 8000)
        g = gateway.gw
        px = sess.rt.last_price["AAPL"]
        def crash():                                     # −40 % during a session (the market is open: the flatten fills at once)
            g.market_open = g.exchange.market_open = True
            g.dispatch(g.exchange.mark(cid, px * 0.6, g.now()) + [("account",), ("position", cid)])
        gateway.call(crash)
        assert wait_for(lambda: sess.rt.risk.state() is TradingState.HALTED, 10)
        assert wait_for(lambda: broker_positions(gateway) == {} and open_orders(gateway) == [], 10)
        # the runtime raises the alert right after placing the flatten orders; the paper gateway (a thread of this process)
        # can fill them before the runtime's thread runs its next line, so the alert is waited for, not read at once
        assert wait_for(lambda: any(a["level"] == "CRITICAL" and "emergency stop" in a["message"] for a in list(sess.rt.alerts)), 10), list(sess.rt.alerts)
        sess.step(2)
        assert broker_positions(gateway) == {}                                   # HALTED: the strategy cannot buy again
    finally:
        sess.stop()


def test_a_stop_that_fills_as_the_position_grows_leaves_the_rest_protected(project, gateway):
    # A strategy buys after every close; the market is shut overnight, so each buy fills at the next open. On the first day
    # whose low crosses the stop (but not its open) the new shares fill at the open and the stop, sized for yesterday's
    # position, fills later that day, before the resize reaches the broker, which refuses it. The shares bought that
    # morning must get a stop of their own.
    s, st = make_project(project, env="ATS_STOP_LOSS__DEFAULT_STOP_PCT=0.02\nATS_STOP_LOSS__PROFIT_TARGET_RATIO=0\n"
                                      "ATS_STOP_LOSS__TIME_BASED_STOP=0\nATS_RISK__MAX_POSITION_SIZE=1\n",
                         strategies=dict(probe=PROBE), configs=[StrategyConfig("probe.py", "probe", True, dict(symbols=["AAPL"], qty=10), {}, 0.5)])
    sess = Session(s, st, gateway).start()
    ex, cid = gateway.gw.exchange, aapl(gateway)
    def shut():
        gateway.gw.market_open = ex.market_open = False
    stop_fills = lambda: [f for f in ex.fills if ex.orders[(f.client_id, f.order_id)].order_type == "STP"]
    try:
        for day in range(60):
            n = len(ex.orders)
            gateway.call(lambda: (gateway.gw.step(1), shut()))
            wait_for(lambda: len(ex.orders) > n, 2)          # the next buy waits for the open (none on a day without a bar)
            assert wait_for(lambda: ledger_positions(sess.rt.ledger) == broker_positions(gateway))
            if stop_fills(): break
        assert stop_fills(), "no stop was hit in 60 days; the test needs a lower stop distance"
        assert wait_for(lambda: ledger_positions(sess.rt.ledger) == broker_positions(gateway))
        held = broker_positions(gateway).get(cid, 0)
        assert held > 0
        stops = lambda: [o for o in open_orders(gateway) if o.order_type == "STP" and o.con_id == cid]
        assert wait_for(lambda: sum(o.total_quantity for o in stops()) == held), \
            [(o.order_id, o.order_type, o.status, o.total_quantity) for o in ex.orders.values() if o.oca_group]
        assert len(stops()) == 1 and len(sess.rt.stopbook) == 1
        # Which way it is re-protected depends on the order the two executions reach the ledger: stop first (usual) and the
        # spent plan is replaced with an alert; buy first (seen on a loaded machine) and the stop's fill flattens the old
        # plan, then the buy opens a new one. Either way: exactly one stop, for exactly what is held (asserted above).
        if not any("a new stop protects the remaining" in a["message"] for a in sess.rt.alerts):
            assert sess.rt.stopbook.get("probe", cid).quantity == held, sess.rt.stopbook.get("probe", cid)
        assert duplicate_orders(gateway) == {}
    finally:
        sess.stop()


def test_an_order_sent_at_the_close_fills_at_the_next_open_even_when_the_gateway_is_slow(project, gateway):
    """Issue 11: on a busy machine the crash test's 8000-share entry sometimes filled a day late. The order, sent at the
    close, was still in the gateway's socket when the test opened the next session, so it waited for the open after.
    The product was right (an order that reaches a shut market waits); the test helper now waits for the gateway's
    word that it has the order. A gateway that reads its socket 1.5 s late reproduces the race every time."""
    s, st = once(project, env="ATS_RISK__MAX_POSITION_SIZE=0.9\nATS_STOP_LOSS__PROFIT_TARGET_RATIO=0\n", qty=100)
    sess = Session(s, st, gateway).start()
    try:
        gateway.call(gateway.gw.stall, 1.5)             # the gateway reads nothing for 1.5 s: the close's order waits in the socket
        sess.step(1)                                    # the close: the strategy buys
        sess.step(1)                                    # the next open fills it
        assert broker_positions(gateway).get(aapl(gateway)) == 100
    finally:
        sess.stop()


ROUND_TRIP = """from ats.strategy import Strategy
class RoundTrip(Strategy):
    params = dict(symbols=["AAPL"], qty=100, flip=False)
    def on_start(self):
        self.n = 0
    def on_bar(self, bar):
        self.n += 1
        if self.n == 1: self.buy(self.symbols[0], self.p["qty"], client_order_key="entry")
        if self.n == 3: self.sell(self.symbols[0], self.p["qty"] * (2 if self.p["flip"] else 1), client_order_key="exit")
"""


@pytest.mark.parametrize("flip", [False, True])
def test_a_position_the_strategy_closes_itself_leaves_no_stop_working_at_the_broker(project, gateway, flip):
    """The strategy sells what it bought with its own order: its stop and target must go with the position. A stop left
    working would later sell again and open a short nobody asked for (seen on the paper gateway: a strategy's exit at
    the open, then its old stop filled three days later). Flipping through zero likewise replaces the old exits."""
    s, st = make_project(project, env="ATS_STOP_LOSS__DEFAULT_STOP_PCT=0.2\n", strategies=dict(rt=ROUND_TRIP),
                         configs=[StrategyConfig("rt.py", "rt", True, dict(symbols=["AAPL"], qty=100, flip=flip), {}, 0.3)])
    sess = Session(s, st, gateway).start()
    try:
        sess.step(2)
        assert wait_for(lambda: len(open_orders(gateway)) == 2)            # the long's stop and target
        long_group = open_orders(gateway)[0].oca_group
        sess.step(3)
        want = -100 if flip else 0
        cid = aapl(gateway)
        assert wait_for(lambda: broker_positions(gateway).get(cid, 0) == want, 10), broker_positions(gateway)
        if flip:   # the short has its own exits (a BUY stop and target), and none of the long's is left
            assert wait_for(lambda: len(open_orders(gateway)) == 2 and all(o.action == "BUY" for o in open_orders(gateway)), 10), \
                [(o.action, o.order_type, o.oca_group) for o in open_orders(gateway)]
            assert all(o.oca_group != long_group for o in open_orders(gateway))
        else:
            assert wait_for(lambda: open_orders(gateway) == [], 10), [(o.action, o.order_type, o.total_quantity) for o in open_orders(gateway)]
        sess.step(5)                                                        # and nothing fires later
        assert broker_positions(gateway).get(cid, 0) == want and ledger_positions(sess.rt.ledger).get(cid, 0) == want
    finally:
        sess.stop()
