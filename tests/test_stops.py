"Stops: levels by hand for both sides, trailing stops that only tighten and fire once, bracket orders IB accepts, a stop book that re-attaches without duplicates."
import datetime as dt, itertools, json
from decimal import Decimal, ROUND_CEILING, ROUND_FLOOR
import pytest
from hypothesis import given, settings, strategies as st
from ib_async import Order as IBOrder, Trade
from ats.stops import (StopConfig, StopError, StopPlan, StopBook, plan_stop, follow, bracket, protective_orders, exit_order, stop_key)

T0 = dt.datetime(2024, 3, 1, 15, 30, tzinfo=dt.timezone.utc)
D = Decimal


@pytest.mark.parametrize("qty, entry, cfg, kw, stop, target", [
    (100, 50.0, StopConfig(), {}, "49.00", "52.00"),
    (-100, 50.0, StopConfig(), {}, "51.00", "48.00"),
    (10, 33.33, StopConfig(), {}, "32.67", "34.65"),                                  # 32.6634 -> toward the entry
    (-10, 33.33, StopConfig(), {}, "33.99", "32.01"),                                 # 33.9966 -> toward the entry
    (100, 50.0, StopConfig(profit_target_ratio=1.5), {"stop_pct": 0.04}, "48.00", "53.00"),   # the strategy's own stop
    (100, 50.0, StopConfig(), {"stop_price": 47.0, "target_price": 60.0}, "47.00", "60.00"),
    (100, 50.0, StopConfig(profit_target_ratio=0), {}, "49.00", None),
    (5, 0.8123, StopConfig(), {"tick": "0.0001"}, "0.7961", "0.8447"),                # 0.796054 -> 0.7961; risk 0.0162 -> 0.8447
])
def test_stop_and_target_levels_by_hand(qty, entry, cfg, kw, stop, target):
    p = plan_stop("s1", "X", qty, entry, cfg, opened_at=T0, **kw)
    assert p.stop_price == D(stop) and p.initial_stop == D(stop)
    assert p.target_price == (D(target) if target else None)
    assert p.exit_at == T0 + dt.timedelta(days=cfg.time_based_stop)


def test_stop_settings_from_the_real_configuration(tmp_path):
    from ats.config import load_settings
    ini = tmp_path / "settings.ini"
    ini.write_text("[stop_loss]\ntrailing_stop = true\ntrailing_mode = local\ntime_based_stop = 0\n")
    s = load_settings(ini, env={})
    for c in (StopConfig.from_settings(s), StopConfig.from_settings(s.stop_loss)):
        assert (c.trailing_stop, c.trailing_mode, c.time_based_stop, c.default_stop_pct) == (True, "local", 0, 0.02)


@pytest.mark.parametrize("call, words", [
    (lambda: plan_stop("s1", "X", 0, 50.0, opened_at=T0), ["quantity 0", "non-zero"]),
    (lambda: plan_stop("s1", "X", 10, -1, opened_at=T0), ["entry price = -1"]),
    (lambda: plan_stop("s1", "X", 10, 50.0, opened_at=T0, stop_price=51), ["stop 51", "losing side", "long"]),
    (lambda: plan_stop("s1", "X", -10, 50.0, opened_at=T0, stop_price=49), ["losing side", "short"]),
    (lambda: plan_stop("s1", "X", 10, 50.0, opened_at=T0, target_price=45), ["target 45", "winning side"]),
    (lambda: plan_stop("s1", "X", 10, 50.0, opened_at=T0, stop_pct=2), ["stop_pct = 2"]),
    (lambda: plan_stop("s1", "X", 10, 0.01, opened_at=T0), ["within one tick", "widen"]),
    (lambda: StopConfig(trailing_mode="tws"), ["[stop_loss] trailing_mode = 'tws'", "broker or local"]),
    (lambda: StopConfig(default_stop_pct=2), ["default_stop_pct = 2"]),
    (lambda: bracket(plan_stop("s1", "X", 10, 50.0, opened_at=T0), itertools.count(1).__next__, entry_type="LMT"), ["needs limit_price"]),
])
def test_bad_stops_are_refused_with_a_clear_message(call, words):
    with pytest.raises(StopError) as e:
        call()
    for w in words: assert w in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, -1]), st.floats(20, 1000), st.floats(0.005, 0.2), st.lists(st.floats(0.5, 2.0), min_size=1, max_size=40))
def test_local_trailing_stop_only_tightens_and_fires_exactly_once_when_crossed(side, entry, pct, moves):
    p = plan_stop("s", "X", 100 * side, entry, StopConfig(trailing_stop=True, trailing_stop_pct=pct, trailing_mode="local"), opened_at=T0)
    best, fired = D(repr(entry)), 0
    for m in moves:
        px = D(repr(round(entry * m, 2))) if round(entry * m, 2) > 0 else D("0.01")
        before, status = p.stop_price, p.status
        sig = follow(p, px)
        if status != "active":
            assert sig == [] and p.stop_price == before
            continue
        assert (p.stop_price - before) * side >= 0                                 # never loosens
        if (px - best) * side > 0: best = px
        assert (best - p.stop_price) * side > 0 or p.status == "exiting"          # stays on the losing side of the best price
        trail = (best * (1 - side * D(repr(pct))) / D("0.01")).to_integral_value(ROUND_CEILING if side > 0 else ROUND_FLOOR) * D("0.01")
        assert p.stop_price == trail                                                # the trail distance from the best price, on the tick
        hit = (p.stop_price - px) * side >= 0
        assert ([s.kind for s in sig if s.kind == "stop_hit"] == ["stop_hit"]) == hit
        fired += hit
    assert fired <= 1


def test_trailing_follows_the_price_up_and_fires_on_the_way_down_long_and_short():
    cfg = StopConfig(trailing_stop=True, trailing_stop_pct=0.02, trailing_mode="local")
    L = plan_stop("s1", "X", 100, 200.0, cfg, opened_at=T0)
    assert L.stop_price == D("196.00")
    path = [(204, "199.92", ["trail_moved"]), (210, "205.80", ["trail_moved"]), (207, "205.80", []), (215.5, "211.19", ["trail_moved"]),
            (212, "211.19", []), (211.19, "211.19", ["stop_hit"])]
    for px, stop, kinds in path:
        assert [s.kind for s in follow(L, px)] == kinds and L.stop_price == D(stop), (px, L.stop_price)
    assert L.status == "exiting" and L.extreme == D("215.5") and follow(L, 150) == []
    S = plan_stop("s1", "X", -100, 200.0, cfg, opened_at=T0)
    assert S.stop_price == D("204.00")
    assert [s.kind for s in follow(S, 190)] == ["trail_moved"] and S.stop_price == D("193.80")   # 190 × 1.02
    assert follow(S, 192) == [] and S.stop_price == D("193.80")
    assert [s.kind for s in follow(S, 193.81)] == ["stop_hit"]


def test_time_exit_and_broker_side_stops_are_left_alone():
    p = plan_stop("s1", "X", 100, 50.0, StopConfig(time_based_stop=10), opened_at=T0)
    assert follow(p, 10.0) == []                                                   # a fixed stop is the broker's to fire
    assert follow(p, 50.0, now=T0 + dt.timedelta(days=9, hours=23)) == []
    sig = follow(p, 50.0, now=dt.datetime(2024, 3, 11, 15, 30))                  # naive = UTC
    assert [s.kind for s in sig] == ["time_exit"] and "2024-03-11" in sig[0].message
    b = plan_stop("s1", "X", 100, 50.0, StopConfig(trailing_stop=True), opened_at=T0)   # broker trailing: IB moves it
    assert follow(b, 80.0) == [] and b.stop_price == D("49.25")
    assert plan_stop("s1", "X", 100, 50.0, StopConfig(time_based_stop=0), opened_at=T0).exit_at is None


def test_bracket_orders_are_linked_for_ib():
    ids = itertools.count(500).__next__
    p = plan_stop("mom", "AAPL", -30, 150.0, StopConfig(trailing_stop=True), opened_at=T0, con_id=265598)
    b = bracket(p, ids, entry_type="LMT", limit_price=150.0, account="DU1")
    parent, target, stop = b.orders
    assert [o.orderId for o in b.orders] == [500, 501, 502] and p.order_ids == {"parent": 500, "target": 501, "stop": 502}
    assert (parent.action, parent.totalQuantity, parent.orderType, parent.lmtPrice, parent.transmit, parent.ocaGroup, parent.tif) == ("SELL", 30.0, "LMT", 150.0, False, "", "DAY")
    assert (target.action, target.orderType, target.lmtPrice, target.parentId, target.transmit) == ("BUY", "LMT", 145.5, 500, False)
    assert (stop.action, stop.orderType, stop.trailingPercent, stop.trailStopPrice, stop.parentId, stop.transmit) == ("BUY", "TRAIL", 1.5, 152.25, 500, True)
    assert {o.ocaGroup for o in (target, stop)} == {f"ats-{p.key}"} and {o.ocaType for o in (target, stop)} == {1}
    assert {o.orderRef for o in b.orders} == {"mom"} and {o.account for o in b.orders} == {"DU1"} and {o.tif for o in (target, stop)} == {"GTC"}
    # local trailing: the broker holds a plain stop at the initial level underneath
    q = plan_stop("mom", "AAPL", 30, 150.0, StopConfig(trailing_stop=True, trailing_mode="local", profit_target_ratio=0), opened_at=T0)
    follow(q, 160.0)
    lb = bracket(q, ids)
    assert lb.target is None and (lb.stop.orderType, lb.stop.auxPrice, lb.stop.transmit) == ("STP", 147.75, True) and q.stop_price == D("157.60")
    prot = protective_orders(p, ids)
    assert [(o.orderType, o.parentId, o.transmit) for o in prot] == [("LMT", 0, True), ("TRAIL", 0, True)]
    x = exit_order(p, 999)
    assert (x.action, x.orderType, x.totalQuantity, x.ocaGroup, x.ocaType, x.transmit) == ("BUY", "MKT", 30.0, p.oca_group, 1, True)


def test_keys_are_stable_and_plans_round_trip_through_json():
    assert stop_key("s", 1, T0) == stop_key("s", 1, "2024-03-01 15:30:00+00:00") == stop_key("s", 1, dt.datetime(2024, 3, 1, 15, 30))
    assert stop_key("s", 1, T0) != stop_key("s", 2, T0) != stop_key("t", 1, T0)
    p = plan_stop("s", "X", D("12.5"), 101.37, StopConfig(trailing_stop=True, trailing_mode="local"), opened_at=T0, con_id=9)
    follow(p, 120)
    p.order_ids = {"stop": 7}
    again = StopPlan.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p and isinstance(again.stop_price, Decimal) and again.opened_at.tzinfo is not None


def _book_with_three(path):
    book = StopBook(path)
    plans = [plan_stop("s1", "AAPL", 100, 50.0, opened_at=T0, con_id=1), plan_stop("s1", "MSFT", -20, 300.0, opened_at=T0, con_id=2),
             plan_stop("s2", "IBM", 10, 100.0, StopConfig(trailing_stop=True, trailing_mode="local"), opened_at=T0, con_id=3)]
    for p in plans: book.attach(p)
    return book, plans


def test_book_is_idempotent_and_refuses_a_second_set_of_stops(tmp_path):
    book, (a, m, i) = _book_with_three(tmp_path / "stops.json")
    assert book.attach(plan_stop("s1", "AAPL", 100, 50.0, opened_at=T0, con_id=1)) == (a, False)
    with pytest.raises(StopError, match="s1 already has stops on AAPL .*resize or close"):
        book.attach(plan_stop("s1", "AAPL", 100, 51.0, opened_at=T0 + dt.timedelta(hours=1), con_id=1))
    assert book.attach(plan_stop("s3", "AAPL", 100, 51.0, opened_at=T0, con_id=1))[1]      # another strategy, its own stops
    assert book.resize("s1", 1, 150).quantity == 150
    with pytest.raises(StopError, match="flips the position"):
        book.resize("s1", 1, -10)
    assert book.resize("s1", 1, 0).status == "closed" and book.get("s1", 1) is None


def test_book_follows_prices_persists_trails_and_signals_once(tmp_path):
    path = tmp_path / "stops.json"
    book, (a, m, i) = _book_with_three(path)
    assert [s.kind for s in book.on_price(3, 110.0)] == ["trail_moved"]                 # IBM: local trail 1.5 %
    assert StopBook(path).get("s2", 3).stop_price == D("108.35")                          # the trail survives a restart
    assert book.on_price(1, 10.0) == []                                                    # AAPL's fixed stop is at the broker
    assert [s.kind for s in book.on_price(3, 108.0)] == ["stop_hit"] and book.on_price(3, 100.0) == []
    assert StopBook(path).get("s2", 3).status == "exiting"
    due = book.due(T0 + dt.timedelta(days=30))
    assert sorted(s.plan.symbol for s in due) == ["AAPL", "MSFT"] and book.due(T0 + dt.timedelta(days=31)) == []


def test_restart_reattaches_instead_of_duplicating(tmp_path):
    path = tmp_path / "stops.json"
    book, (a, m, i) = _book_with_three(path)
    ids = itertools.count(10).__next__
    working = [Trade(order=o) for o in bracket(a, ids).orders[1:]]                        # IB still holds AAPL's target and stop
    working.append(Trade(order=IBOrder(orderId=99, orderType="STP", ocaGroup="ats-ffffffffffffffff")))
    working.append(Trade(order=IBOrder(orderId=98, orderType="LMT")))                     # not ours: ignored
    r = StopBook(path).reattach(working, positions={("s1", 1): 100, ("s1", 2): -20})
    assert [p.symbol for p in r.attached] == ["AAPL"] and r.attached[0].order_ids == {"target": 11, "stop": 12}
    assert [p.symbol for p in r.missing] == ["MSFT"] and [p.symbol for p in r.closed] == ["IBM"]
    assert [o.orderId for o in r.orphans] == [99]
    again = StopBook(path)
    assert len(again) == 2 and again.get("s1", 1).order_ids == {"target": 11, "stop": 12}
    # re-running the reattach changes nothing: still one set of stops per position
    r2 = again.reattach(working, positions={("s1", 1): 100, ("s1", 2): -20})
    assert [p.symbol for p in r2.attached] == ["AAPL"] and [p.symbol for p in r2.missing] == ["MSFT"]


def test_book_in_arcticdb_survives_restarts(tmp_path):
    from ats.store import Store
    from ats.risk import ArcticStateStore
    lib = Store(f"lmdb://{tmp_path / 'db'}?map_size=64MB").library("portfolios")
    book = StopBook(ArcticStateStore(lib, "stops"))
    book.attach(plan_stop("s1", "AAPL", 100, 50.0, opened_at=T0, con_id=1))
    again = StopBook(ArcticStateStore(lib, "stops"))
    assert again.get("s1", 1).stop_price == D("49.00") and again.get("s1", 1).opened_at == T0


def test_unusable_stop_state_is_an_error(tmp_path):
    p = tmp_path / "stops.json"
    p.write_text('{"version": 1, "plans": [{"strategy": "s1"}]}')
    with pytest.raises(StopError, match="stop state in JsonFileStore.*not usable.*check every position's stops"):
        StopBook(p)
