"""Long Term Momentum (the configuration guide's example): at each month end, hold the symbol while
its month-end close is above the exponential moving average of its last `lookback_period` month-end
closes, else stay flat."""
import pandas as pd
from ats.strategy import Strategy, StrategyParamError


class LongTermMomentum(Strategy):
    params = dict(symbols=["ACWI"], lookback_period=10, rebalance_frequency="monthly", weight=0.0)

    def validate(self):
        if self.p["lookback_period"] < 2:
            raise StrategyParamError(f"strategy {self.name!r}: lookback_period = {self.p['lookback_period']} months; use at least 2")
        if not 0.0 <= self.p["weight"] <= 1.0:
            raise StrategyParamError(f"strategy {self.name!r}: weight = {self.p['weight']} must be a fraction in [0, 1] (0 = equal split)")

    @property
    def warmup(self):
        return 22 * self.p["lookback_period"]

    def target_weights(self, prices: pd.DataFrame) -> pd.DataFrame:
        w = self.p["weight"] or 1.0 / max(1, len(prices.columns))
        # month-end closes as of each bar: the last close of every completed month so far, then
        # the EMA of those; a decision is taken on the last bar of each month only
        month = prices.index.tz_convert(None).to_period("M") if prices.index.tz is not None else prices.index.to_period("M")
        month_end = prices.groupby(month).tail(1)
        ema = month_end.ewm(span=self.p["lookback_period"], adjust=False, min_periods=self.p["lookback_period"]).mean()
        signal = (month_end > ema).astype(float).where(ema.notna()) * w
        return signal.reindex(prices.index)      # NaN between month ends: no trade
