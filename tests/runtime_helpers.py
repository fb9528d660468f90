"Shared set-up for the runtime tests: a project with strategies, the paper gateway in this process, a runtime on its own loop."
import asyncio, shutil, threading, time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from ats.config import load_settings
from ats.store import Store, StrategyConfig
from ats.gateway.service import GatewayThread
from ats.runtime import Runtime
from ats import paper
from conftest import ROOT, run_ats

# A strategy that buys `qty` shares of its symbol on every bar: its orders show which parameters it used.
PROBE = """from ats.strategy import Strategy
class Probe(Strategy):
    params = dict(symbols=["MSFT"], qty=1)
    def on_bar(self, bar):
        self.buy(self.symbols[0], self.p["qty"])
"""
BLOCKER = """import time
from ats.strategy import Strategy
class Blocker(Strategy):
    params = dict(symbols=["GOOG"], seconds=30.0)
    def on_bar(self, bar):
        time.sleep(self.p["seconds"])
"""
BOOM = """from ats.strategy import Strategy
class Boom(Strategy):
    params = dict(symbols=["MSFT"])
    def on_bar(self, bar):
        raise RuntimeError("bad strategy")
"""
TYPO = "from ats.strategy import Strategy\nclass T(Strategy)\n  pass\n"


def make_project(project: Path, env: str = "", strategies: dict | None = None, configs: list | None = None):
    "A project folder with the shipped strategies plus `strategies` (name -> source), its settings and database."
    shutil.copytree(ROOT / "strategies", project / "strategies", dirs_exist_ok=True)
    for name, src in (strategies or {}).items(): (project / "strategies" / f"{name}.py").write_text(src)
    run_ats("init", cwd=project, check=True)
    (project / ".env").write_text("ATS_RECOVERY__RECOVERY_DELAY=0\nATS_RISK__MAX_POSITION_SIZE=0.5\nATS_RISK__MAX_PORTFOLIO_WEIGHT=0.6\n"
                                  "ATS_IB__RECONNECT_BACKOFF=0.1\nATS_IB__CONNECTION_TIMEOUT=5\n" + env)
    s = load_settings(project / "settings.ini")
    st = Store.from_settings(s)
    for c in st.load_strategy_configs(validate=False):
        c.active = False; st.save_strategy_config(c)
    for c in configs or []: save_unchecked(st, c)
    return s, st


def save_unchecked(st, cfg, by=None):
    """Store a config without the strategy's own check, as a script or an older ats could: tests put broken configs in the
    database on purpose, because the runtime must still report them (a syntax error, a parameter of the wrong type)."""
    kept, st.strategies_dir = st.strategies_dir, None
    try: return st.save_strategy_config(cfg, by=by)
    finally: st.strategies_dir = kept


class Session:
    "A runtime on a background event loop against a paper gateway thread."
    def __init__(self, s, st, gw: GatewayThread):
        self.s, self.st, self.gw = s, st, gw
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.rt = Runtime(s, st, port=gw.port)

    def run(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *a):
        "Run fn on the runtime's loop and return its result."
        async def _c(): return fn(*a)
        return self.run(_c())

    def start(self):
        self.run(self.rt.start()); return self

    def stop(self):
        try: self.run(self.rt.stop(), 60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)

    def step(self, days=1, pause=0.05):
        """Play `days` trading days; after each close wait until every strategy has handled the bar and every order it
        sent has reached the gateway (`ats.paper.step`): they fill at the next open, as at IB. Issue 11: an order still on
        its way when the next step opened the market waited a whole day more, on a busy machine."""
        for _ in range(days):
            paper.step(self.gw, self.rt, self.run, 1)
            time.sleep(pause)

    def settle(self, timeout=20.0):
        "Return once the gateway has read everything the runtime has sent so far (orders, cancels) on every connection."
        self.run(paper.settle(self.rt, timeout), timeout + 5)


def wait_for(cond, timeout=10.0, every=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond(): return True
        time.sleep(every)
    return cond()


def broker_positions(gw) -> dict:
    return {cid: p.qty for cid, p in gw.gw.exchange.positions.items() if p.qty}


def ledger_positions(ledger) -> dict:
    out = {}
    for (s, cid), p in ledger.positions.items(): out[cid] = out.get(cid, Decimal(0)) + p.quantity
    return {k: v for k, v in out.items() if v}


def duplicate_orders(gw) -> dict:
    "orderRefs (strategy:key) the gateway received more than once: a decision sent twice."
    c = Counter(o.order_ref for o in gw.gw.exchange.orders.values() if o.order_ref)
    return {k: n for k, n in c.items() if n > 1}
