"""Moving-average crossover: long while the fast simple moving average is above the slow one, else flat."""
import pandas as pd
from ats.strategy import Strategy, StrategyParamError


class MovingAverageCrossover(Strategy):
    params = dict(symbols=["AAPL", "MSFT"], fast=20, slow=50, weight=0.0, rebalance_frequency="daily")

    def validate(self):
        if not 1 <= self.p["fast"] < self.p["slow"]:
            raise StrategyParamError(f"strategy {self.name!r}: fast ({self.p['fast']}) must be at least 1 and below slow ({self.p['slow']})")
        if not 0.0 <= self.p["weight"] <= 1.0:
            raise StrategyParamError(f"strategy {self.name!r}: weight = {self.p['weight']} must be a fraction in [0, 1] (0 = equal split)")

    @property
    def warmup(self):
        return self.p["slow"]

    def target_weights(self, prices: pd.DataFrame) -> pd.DataFrame:
        # each symbol gets an equal share of the strategy's capital unless a weight is given
        w = self.p["weight"] or 1.0 / max(1, len(prices.columns))
        fast = prices.rolling(self.p["fast"], min_periods=self.p["fast"]).mean()
        slow = prices.rolling(self.p["slow"], min_periods=self.p["slow"]).mean()
        out = ((fast > slow).astype(float) * w).where(slow.notna())   # no decision before the slow average exists
        # trade only when the signal changes: holding between crossings keeps turnover (and commissions) down
        return out.where(out.ne(out.shift()))
