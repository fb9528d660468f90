"The live runtime against the paper gateway: several strategies, each isolated, fills attributed, ledger = broker."
import asyncio, shutil, threading, time
from decimal import Decimal
import pytest
from ats.config import load_settings
from ats.store import Store, StrategyConfig
from ats.gateway.service import GatewayThread
from ats.runtime import Runtime, WorkerState
from conftest import ROOT, run_ats

BROKEN = "from ats.strategy import Strategy\nclass Boom(Strategy):\n    params = dict(symbols=['MSFT'])\n    def on_bar(self, bar):\n        raise RuntimeError('bad strategy')\n"


@pytest.fixture
def setup(project):
    shutil.copytree(ROOT / "strategies", project / "strategies", dirs_exist_ok=True)
    (project / "strategies" / "boom.py").write_text(BROKEN)
    (project / "strategies" / "typo.py").write_text("from ats.strategy import Strategy\nclass T(Strategy)\n  pass\n")
    run_ats("init", cwd=project, check=True)
    (project / ".env").write_text("ATS_RECOVERY__RECOVERY_DELAY=0\nATS_RISK__MAX_POSITION_SIZE=0.5\nATS_RISK__MAX_PORTFOLIO_WEIGHT=0.6\n")
    s = load_settings(project / "settings.ini")
    st = Store.from_settings(s)
    st.save_strategy_config(StrategyConfig("ma_crossover.py", "ma_crossover", True, dict(symbols=["AAPL"], fast=3, slow=8), {}, 0.3))
    st.save_strategy_config(StrategyConfig("long_term_momentum.py", "long_term_momentum", True, dict(symbols=["IBM"], lookback_period=2), {}, 0.3))
    st.save_strategy_config(StrategyConfig("boom.py", "boom", True, {}, {}, 0.1))
    st.save_strategy_config(StrategyConfig("typo.py", "typo", True, {}, {}, 0.1))
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True); th.start()
    rt = Runtime(s, st, port=gw.port)
    asyncio.run_coroutine_threadsafe(rt.start(), loop).result(60)
    yield gw, rt, loop
    asyncio.run_coroutine_threadsafe(rt.stop(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop); gw.stop()


def test_strategies_trade_isolated_and_ledger_matches_broker(setup):
    gw, rt, loop = setup
    for _ in range(70):
        gw.call(gw.gw.step, 1); time.sleep(0.05)
    time.sleep(0.5)
    st = {r["strategy"]: r for r in rt.status()}
    assert st["ma_crossover"]["orders"] > 0 and st["long_term_momentum"]["orders"] > 0
    assert st["boom"]["state"] == WorkerState.DISABLED.value and "bad strategy" in st["boom"]["error"]
    assert st["typo"]["state"] == "failed" and "typo.py:2: syntax error" in st["typo"]["error"]
    assert len({r["client_id"] for r in st.values()}) == 4                         # each strategy its own client id
    # every fill attributed to the strategy that sent it; the ledger sums to the broker's positions
    strategies = {f.strategy for f in rt.ledger.fills.values()}
    assert strategies <= {"ma_crossover", "long_term_momentum"} and strategies
    broker = {cid: p.qty for cid, p in gw.gw.exchange.positions.items() if p.qty}
    ledger = {}
    for (s, cid), p in rt.ledger.positions.items(): ledger[cid] = ledger.get(cid, 0) + p.quantity
    assert {k: v for k, v in ledger.items() if v} == broker
