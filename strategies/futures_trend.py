"""Futures trend: trade the E-mini S&P 500 front future (`ES.FUT`, rolled 5 business days before expiry) by a
moving-average rule on its continuous series — long while the fast simple moving average is above the slow one, else
flat (or short with `long_short`) — in whole contracts sized to a volatility target:

    contracts = floor(capital × target_vol / (annualised volatility × close × multiplier)), at most max_contracts

so one contract of ES at 1,300 (65,000 of exposure) with 15 % volatility uses 9,750 of a 10 % × 97,500 risk budget.
Its signal is its exit (no attached stops). Not active after `ats init`: activate it with
`ats strategies activate futures_trend` once the account can trade futures."""
import math
import pandas as pd
from ats.strategy import Strategy, StrategyParamError


class FuturesTrend(Strategy):
    params = dict(symbols=["ES.FUT"], fast=50, slow=200, long_short=False, target_vol=0.10, vol_lookback=60,
                  max_contracts=5, multiplier=50.0)
    stops = False

    def validate(self):
        p = self.p
        if len(p["symbols"]) != 1:
            raise StrategyParamError(f"strategy {self.name!r}: trades one future; symbols = {p['symbols']!r} (e.g. ['ES.FUT'])")
        if not 1 <= p["fast"] < p["slow"]:
            raise StrategyParamError(f"strategy {self.name!r}: fast ({p['fast']}) must be at least 1 and below slow ({p['slow']})")
        if not 0.0 < p["target_vol"] <= 1.0:
            raise StrategyParamError(f"strategy {self.name!r}: target_vol = {p['target_vol']} must be an annual volatility in (0, 1]")
        if p["vol_lookback"] < 5 or p["max_contracts"] < 1 or p["multiplier"] <= 0:
            raise StrategyParamError(f"strategy {self.name!r}: vol_lookback >= 5, max_contracts >= 1 and multiplier > 0 are required")

    @property
    def warmup(self):
        return max(self.p["slow"], self.p["vol_lookback"] + 1)

    def signal(self, close: pd.Series) -> pd.Series:
        "+1 long, 0 flat, -1 short (with long_short) per bar; NaN before the slow average exists."
        fast = close.rolling(self.p["fast"], min_periods=self.p["fast"]).mean()
        slow = close.rolling(self.p["slow"], min_periods=self.p["slow"]).mean()
        s = (fast > slow).astype(float) - ((fast < slow).astype(float) if self.p["long_short"] else 0.0)
        return s.where(slow.notna())

    def contracts(self, close: pd.Series, capital: float) -> pd.Series:
        "Signed whole contracts to hold per bar (the rule above; the backtest uses it too)."
        vol = close.pct_change().rolling(self.p["vol_lookback"]).std() * math.sqrt(252)
        n = (capital * self.p["target_vol"] / (vol * close * self.p["multiplier"])).clip(upper=self.p["max_contracts"])
        return (self.signal(close) * n.fillna(0).apply(math.floor)).where(vol.notna())

    def on_bar(self, bar):
        sym = self.symbols[0]
        h = self.ctx.history(sym, self.warmup + 1)
        if len(h) < self.warmup: return
        target = self.contracts(h["close"], self.ctx.capital).iloc[-1]
        if pd.isna(target): return
        if float(target) != self.ctx.position(sym):
            self.order_target_quantity(sym, float(target), reason=f"trend: hold {int(target)} contract(s)")
