"""Options income: cash-secured puts on SPY. When it holds no put it sells the SPY put whose expiration is nearest
30 calendar days and whose |delta| is nearest 0.25 (the spec 'SPY.OPT:P:30d:0.25delta', chosen afresh from the chain
at each new position) — as many contracts as its capital secures at the underlying's close, at most max_contracts:

    contracts = floor(capital / (close × 100)), at most max_contracts

Right after the sale fills it places a GTC limit order to buy the put back at (1 − take_profit) of the premium (50 %
by default; 0 holds every put to expiry). A put that expires out of the money leaves the account worthless (the
premium is kept); one in the money is assigned: 100 SPY shares per contract bought at the strike. It does not sell
covered calls: it sells assigned shares at the next bar's market order and goes on selling puts.
Not active after `ats init`: activate it with `ats strategies activate options_income` once the account can trade
options. `ats backtest options_income` prices its puts with the paper gateway's model (Black-Scholes, realized vol) and
fills its orders as the gateway does: the sale at the desk's bid at the next open (the trade's entry), the take-profit
limit from that price, intraday, at the first ask at or below it (`ats replay` matches it fill for fill)."""
import math
from ats.strategy import Strategy, StrategyParamError


class OptionsIncome(Strategy):
    params = dict(symbols=["SPY", "SPY.OPT:P:30d:0.25delta"], max_contracts=1, take_profit=0.5, lookback=30)
    stops = False

    def validate(self):
        from ats.instruments import parse_spec
        p = self.p
        specs = [parse_spec(s, self.name) for s in p["symbols"]]
        if len(specs) != 2 or not specs[0].is_stock or not specs[1].is_option or specs[1].symbol != specs[0].symbol or specs[1].right != "P":
            raise StrategyParamError(f"strategy {self.name!r}: symbols = {p['symbols']!r} must be a stock and a put spec on it, "
                                     "e.g. ['SPY', 'SPY.OPT:P:30d:0.25delta']")
        if p["max_contracts"] < 1 or not 0.0 <= p["take_profit"] < 1.0 or p["lookback"] < 5:
            raise StrategyParamError(f"strategy {self.name!r}: max_contracts >= 1, 0 <= take_profit < 1 and lookback >= 5 are required")

    @property
    def warmup(self):
        return self.p["lookback"] + 1

    def contracts(self, capital: float, price: float) -> int:
        "Puts the capital secures at the underlying's price (the backtest uses it too)."
        return int(min(self.p["max_contracts"], math.floor(capital / (price * 100)))) if price > 0 else 0

    def on_bar(self, bar):
        und, put = self.symbols
        if self.ctx.position(und) > 0:
            self.order_target_quantity(und, 0, reason="assigned: sell the shares")
        h = self.ctx.history(und, self.warmup)
        if len(h) < self.warmup or self.ctx.position(put) != 0: return
        n = self.contracts(self.ctx.capital, float(h["close"].iloc[-1]))
        if n >= 1: self.order_target_quantity(put, -n, reason=f"sell {n} cash-secured put(s)")

    def on_fill(self, fill):
        tp = self.p["take_profit"]
        if tp and getattr(fill, "sec_type", "") == "OPT" and getattr(fill, "kind", "trade") == "trade" and fill.quantity < 0:
            limit = round(float(fill.price) * (1 - tp), 2)
            if limit >= 0.01:
                self.buy(self.symbols[1], abs(float(fill.quantity)), order_type="LMT", limit_price=limit, tif="GTC",
                         reason=f"take profit: buy back at {1 - tp:.0%} of the premium")
