"""Risk on futures and FX held under the names IB holds them by (a future as its contract's symbol 'ES', any month; an FX pair as
its base currency 'EUR') and ordered under the strategy's spec ('ES.FUT', 'EURUSD.CASH'):
one exposure per root, so per-symbol limits bind given what is held; and [risk] futures_margin, the initial margin per
contract that the margin check uses instead of the ledger's default table."""
import pytest
from ats.ledger import Instrument
from ats.risk import RiskEngine, RiskConfig, RiskError, PortfolioSnapshot, Order, order_margin, exposure_key

ES = Instrument("ES", "FUT", 50)
PX = 1300.0                                  # one ES contract = 65,000 of exposure


def snap(held: float, excess: float = 1_000_000.0) -> PortfolioSnapshot:
    "As the runtime builds it: the ledger's ES contracts under their held_key 'ES.FUT', the live price under the spec."
    return PortfolioSnapshot(nav=1_000_000.0, excess_liquidity=excess, positions={("trend", "ES.FUT"): held} if held else {},
                             prices={"ES.FUT:roll=5": (PX, 50.0, 1.0), "ES.FUT": (PX, 50.0, 1.0)})


def order(q: float) -> Order: return Order("trend", "ES.FUT:roll=5", q, PX, instrument=ES)


def test_every_spelling_of_a_future_is_one_exposure_under_its_root():
    from ats.risk import held_key
    assert {exposure_key(s) for s in ("ES.FUT", "FUT:ES", "ES.FUT:roll=3", "ES.FUT@CME")} == {held_key("ES", "FUT")} == {"ES.FUT"}
    assert exposure_key("AAPL") == "AAPL" and exposure_key("EURUSD.CASH") == "EUR.USD"        # as IB names the held pair
    assert exposure_key("ES") == held_key("ES", "STK") == "ES"                  # Eversource's stock is another exposure


def test_a_position_limit_binds_an_es_fut_order_given_the_held_es_contracts():
    eng = RiskEngine(RiskConfig(max_position_size=1.0, max_portfolio_weight=10), {"trend": dict(max_position_value=150_000)})
    assert eng.check(order(1), snap(0)).allowed                     # 1 contract: 65,000
    d = eng.check(order(1), snap(2))                                 # 2 held + 1 = 195,000 > 150,000
    assert not d.allowed and "max_position_value" in d.message and "195,000" in d.message, d.message
    # closing what is held reduces risk: accepted even in a HALTED state (it was counted as a new short before)
    eng.kill("trend", by="test")
    assert eng.check(order(-2), snap(2)).reducing


def test_the_stock_es_and_the_es_future_are_two_exposures():
    "Eversource trades as ES on NYSE: 1,000 of its shares held are not 1,000 ES contracts (before, both counted under 'ES')."
    eng = RiskEngine(RiskConfig(max_position_size=1.0, max_portfolio_weight=10), {"trend": dict(max_position_value=150_000)})
    s = PortfolioSnapshot(nav=1_000_000.0, excess_liquidity=1_000_000.0, positions={("trend", "ES"): 1000.0},
                          prices={"ES": 65.0, "ES.FUT:roll=5": (PX, 50.0, 1.0)})
    assert eng.check(order(2), s).allowed                                  # 2 contracts: 130,000 of futures exposure
    d = eng.check(Order("trend", "ES", 2000, 65.0), s)                      # 3,000 shares: 195,000 of the stock
    assert not d.allowed and "195,000" in d.message, d.message


def test_after_a_roll_the_old_and_the_new_contract_count_as_one_exposure():
    "Mid-roll the ledger holds the old month (ESH6) and the new one (ESM6): both are ES positions of the strategy."
    eng = RiskEngine(RiskConfig(max_position_size=0.15, max_portfolio_weight=10))
    s = PortfolioSnapshot(nav=1_000_000.0, excess_liquidity=1_000_000.0, positions={("trend", "ES.FUT"): 2.0},  # 1 ESH6 + 1 ESM6
                          prices={"ES.FUT:roll=5": (PX, 50.0, 1.0)})
    d = eng.check(order(1), s)                                       # 3 × 65,000 = 19.5 % > 15 %
    assert not d.allowed and "max_position_size" in d.message and "19.50%" in d.message, d.message
    assert eng.usage(s)["strategies"]["trend"]["largest_symbol"] == "ES.FUT"


def test_futures_margin_setting_overrides_the_default_table():
    base = RiskConfig()
    assert order_margin(order(2), 0, 2, base.margin_rate) == 2 * 13_000                # the ledger's FUTURES_MARGIN
    cfg = RiskConfig(futures_margin={"ES": 13_200, "nq": 18_700})
    assert cfg.futures_margin == {"ES": 13_200.0, "NQ": 18_700.0}
    assert order_margin(order(2), 0, 2, cfg.margin_rate, cfg.futures_margin) == 2 * 13_200
    # a root with no default and no setting: margin_rate × notional (conservative), a setting makes it per contract
    rty = Order("trend", "RTY.FUT", 1, 700.0, instrument=Instrument("RTY", "FUT", 50))
    assert order_margin(rty, 0, 1, 0.25) == 0.25 * 700 * 50
    assert order_margin(rty, 0, 1, 0.25, {"RTY": 6_000}) == 6_000
    # the engine uses it: of 331,000 excess liquidity, 10 contracts × 13,200 leave 19.9 % of NAV (below the 20 % buffer),
    # at the default 13,000 they leave 20.1 %
    loose = dict(max_position_size=1, max_portfolio_weight=10, max_leverage=50)
    d = RiskEngine(RiskConfig(**loose, futures_margin={"ES": 13_200})).check(order(10), snap(0, excess=331_000))
    assert not d.allowed and "margin_buffer" in d.message, d.message
    assert RiskEngine(RiskConfig(**loose)).check(order(10), snap(0, excess=331_000)).allowed


@pytest.mark.parametrize("bad,expected", [({"ES": 0}, "futures_margin.ES = 0"), ({"ES": "lots"}, "futures_margin.ES = 'lots'"),
                                          ({"E S": 1000}, "'E S' is not a futures root")])
def test_bad_futures_margin_names_the_key(bad, expected):
    with pytest.raises(RiskError, match=r"\[risk\] futures_margin") as e: RiskConfig(futures_margin=bad)
    assert expected in str(e.value), str(e.value)


def test_futures_margin_in_settings_ini_reaches_risk(tmp_path):
    from ats.config import load_settings
    (tmp_path / "settings.ini").write_text("[risk]\nfutures_margin = ES: 13200, NQ: 18700\nfutures_margin.CL = 7000\n")
    s = load_settings(tmp_path / "settings.ini", env={})
    assert RiskConfig.from_settings(s).futures_margin == {"ES": 13_200.0, "NQ": 18_700.0, "CL": 7_000.0}
    assert load_settings(None, env={}).risk.futures_margin == {}          # the ledger's table, as before


@pytest.mark.parametrize("text,expected", [("futures_margin = ES: 0", "ES: 0 is out of range"), ("futures_margin = es: 13200", "'es' is not a valid key"),
                                           ("futures_margin = ES: lots", "ES: 'lots' is not a number")])
def test_bad_futures_margin_in_settings_ini_names_the_line_and_key(tmp_path, text, expected):
    from ats.config import load_settings, SettingsError
    (tmp_path / "settings.ini").write_text(f"[risk]\n{text}\n")
    with pytest.raises(SettingsError) as e: load_settings(tmp_path / "settings.ini", env={})
    assert expected in str(e.value) and "futures_margin" in str(e.value) and "settings.ini:2" in str(e.value), str(e.value)


FX_BUYER = """from ats.strategy import Strategy
class FxBuyer(Strategy):
    params = dict(symbols=["EURUSD.CASH"])
    def on_bar(self, bar):
        self.buy("EURUSD.CASH", 20_000)
"""


def test_an_fx_pair_held_as_its_base_currency_counts_toward_the_limits_of_its_spec(project, tmp_path):
    """IB and the ledger hold EUR.USD under 'EUR' (currency 'USD'); the strategy orders 'EURUSD.CASH'. Both are one
    exposure, so a per-symbol limit binds given what is held: 20,000 EUR (about 25,000-30,000 USD) fit a 50,000 limit,
    a second 20,000 do not. Before, the held pair was invisible to the order and every day's buy went out."""
    import datetime as dt
    from ats.store import StrategyConfig
    from ats.gateway.service import GatewayThread
    from runtime_helpers import Session, make_project
    from ats.risk import held_key
    assert exposure_key("EURUSD.CASH") == exposure_key("CASH:EURUSD") == held_key("EUR", "CASH", "USD") == "EUR.USD"
    assert held_key("AAPL", "STK", "USD") == "AAPL" and held_key("ES", "FUT", "USD") == "ES.FUT"
    gw = GatewayThread(data="sample", speed=0, start="2006-03-01", state_path=tmp_path / "gw.json").start()
    s, st = make_project(project, strategies={"fx_buyer": FX_BUYER},
                         configs=[StrategyConfig("fx_buyer.py", "fx_buyer", True, {}, dict(max_position_value=50_000), 0.5)])
    sess = Session(s, st, gw).start()
    try:
        sess.step(4)
        rt = sess.rt
        held = {p.symbol: p.quantity for p in rt.ledger.positions.values() if p.strategy == "fx_buyer" and p.quantity}
        assert held == {"EUR": 20_000}, held                                  # one buy filled; every later one refused
        snap = sess.call(lambda: (setattr(rt, "_snap", None), rt.snapshot())[1])
        assert snap.positions.get(("fx_buyer", "EUR.USD")) == 20_000 and ("fx_buyer", "EUR") not in snap.positions
        refused = [a for a in rt.activity if a["kind"] == "refused" and a["strategy"] == "fx_buyer"]
        assert refused and all("max_position_value" in a["reason"] for a in refused), refused
    finally:
        sess.stop(); gw.stop()
