"""Paper gateway speed, measured against a raw loopback echo in the same run.

    .venv/bin/python benchmarks/bench_gateway.py [--orders 2000]

Reports: order round trip (placeOrder -> execDetails) p50/p99 with unmodified ib_async, filled orders/s
with 1 and 8 clients, quote ticks/s delivered to 8 clients, and the loopback echo ceiling.
IB's pacing limit (50 messages/s per client) is lifted for the throughput runs, as noted in the output."""
import argparse, asyncio, socket, statistics, struct, threading, time
from ib_async import IB, Stock, MarketOrder
from ats.gateway.service import GatewayThread
from ats.gateway.protocol import frame, split_frames

def pct(xs, p): xs = sorted(xs); return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]

def echo_baseline(n=20000):
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
    port = srv.getsockname()[1]
    def serve():
        c, _ = srv.accept()
        while (d := c.recv(65536)): c.sendall(d)
    threading.Thread(target=serve, daemon=True).start()
    s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = frame(3, 1, "AAPL", "BUY", 100); lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter(); s.sendall(msg); got = 0
        while got < len(msg): got += len(s.recv(65536))
        lat.append(time.perf_counter() - t)
    return n / (time.perf_counter() - t0), lat

async def round_trips(port, n):
    ib = IB(); await ib.connectAsync("127.0.0.1", port, clientId=1); ib.client.MaxRequests = 0
    c = Stock("AAPL", "SMART", "USD"); await ib.qualifyContractsAsync(c)
    lat = []
    for i in range(n):
        done = asyncio.get_running_loop().create_future()
        def on_exec(trade, fill, done=done):
            if not done.done(): done.set_result(None)
        ib.execDetailsEvent += on_exec
        t = time.perf_counter(); ib.placeOrder(c, MarketOrder("BUY" if i % 2 else "SELL", 1)); await done
        lat.append(time.perf_counter() - t); ib.execDetailsEvent -= on_exec
    ib.disconnect(); return lat

async def throughput(port, clients, per_client):
    ibs = []
    for k in range(clients):
        ib = IB(); await ib.connectAsync("127.0.0.1", port, clientId=100 + k); ib.client.MaxRequests = 0; ibs.append(ib)
    c = Stock("MSFT", "SMART", "USD"); await ibs[0].qualifyContractsAsync(c)
    fills = 0; target = clients * per_client; done = asyncio.get_running_loop().create_future()
    def on_exec(trade, fill):
        nonlocal fills; fills += 1
        if fills >= target and not done.done(): done.set_result(None)
    for ib in ibs: ib.execDetailsEvent += on_exec
    t0 = time.perf_counter()
    for i in range(per_client):
        for ib in ibs: ib.placeOrder(c, MarketOrder("BUY" if i % 2 else "SELL", 1))
        if i % 50 == 0: await asyncio.sleep(0)
    await asyncio.wait_for(done, 120)
    dt = time.perf_counter() - t0
    for ib in ibs: ib.disconnect()
    return target / dt

def ticks(g, clients=8, days=300):
    socks = []
    for k in range(clients):
        s = socket.create_connection(("127.0.0.1", g.port))
        s.sendall(b"API\0" + struct.pack(">I", 9) + b"v157..178"); s.recv(100)
        s.sendall(frame(71, 2, 200 + k, ""))
        for i, sym in enumerate(["AAPL", "GOOG", "IBM", "MSFT", "SPY", "QQQ", "ACWI", "IWM", "TLT"]):
            s.sendall(frame(1, 11, i + 1, 0, sym, "STK", "", 0, "", "", "SMART", "", "USD", "", "", False, "", False, False, ""))
        socks.append(s)
    counts = [0] * clients
    stop = False
    def reader(k, s):
        buf = b""; s.settimeout(0.5)
        while not stop:
            try: d = s.recv(1 << 20)
            except socket.timeout: continue
            if not d: break
            msgs, buf = split_frames(buf + d)
            counts[k] += sum(1 for m in msgs if m[0] in ("1", "2"))
    ts = [threading.Thread(target=reader, args=(k, s), daemon=True) for k, s in enumerate(socks)]
    for t in ts: t.start()
    time.sleep(0.5); base = sum(counts)
    t0 = time.perf_counter(); g.call(g.gw.step, days); time.sleep(0.5)
    dt = time.perf_counter() - t0
    stop = True
    return (sum(counts) - base) / dt

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--orders", type=int, default=2000); a = ap.parse_args()
    echo_rate, echo_lat = echo_baseline()
    with GatewayThread(data="sample", speed=0, max_msg_per_sec=10**9) as g:
        lat = asyncio.run(round_trips(g.port, 500))
        one = asyncio.run(throughput(g.port, 1, a.orders))
        eight = asyncio.run(throughput(g.port, 8, a.orders // 8))
        tps = ticks(g)
    print(f"loopback echo (ceiling):      {echo_rate:10.0f} msg/s   p50 {pct(echo_lat, 50) * 1e6:6.0f} µs  p99 {pct(echo_lat, 99) * 1e6:6.0f} µs")
    print(f"order round trip (ib_async):  p50 {pct(lat, 50) * 1e3:6.2f} ms  p99 {pct(lat, 99) * 1e3:6.2f} ms   "
          f"({pct(lat, 50) / pct(echo_lat, 50):.0f}x the echo p50)   target p99 <= 5 ms")
    print(f"filled orders/s, 1 client:    {one:10.0f}   ({one / echo_rate:.3f} of the echo rate)   target >= 2000")
    print(f"filled orders/s, 8 clients:   {eight:10.0f}")
    print(f"quote ticks/s to 8 clients:   {tps:10.0f}   target >= 100000")
    print("(IB's 50 msg/s pacing limit was lifted for these runs; with it a client is capped at 50 requests/s)")

if __name__ == "__main__":
    main()
