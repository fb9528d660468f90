"""Paper gateway speed, as a user runs it: `ats gateway` in its own process (with a state file, so the fill journal and its
fsync are included), the ib_async clients in this process. Every figure is printed next to ceilings measured in the same run.

    .venv/bin/python benchmarks/bench_gateway.py [--orders 2000] [--profile /tmp/gw.prof]

Reports
- ceilings: the loopback echo (a raw socket round trip), and what unmodified ib_async can decode: the exact bytes the
  gateway sent for N fills (and for streamed ticks) recorded, then replayed from a plain socket server as fast as it can
  send them, counting execDetails events (tick callbacks) per second;
- order round trip (placeOrder -> execDetails, one order at a time) p50/p99;
- filled orders/s with 1 and 8 clients, orders pipelined (place N, then wait for all N execDetails);
- quote ticks/s with the gateway's clock running flat out, delivered to 8 raw socket clients (frames counted: the
  gateway's delivery rate) and to 8 ib_async clients (what ib_async in one process consumes).
IB's pacing limit (50 messages/s per client) is lifted for the throughput runs (`--max-msg-per-sec`), as noted in the output.
--profile runs the order and tick gateways under cProfile (ATS_GATEWAY_PROFILE) and prints their top costs."""
import argparse, asyncio, os, pstats, shutil, signal, socket, struct, subprocess, sys, tempfile, threading, time
from pathlib import Path
from ib_async import IB, Stock, MarketOrder
from ib_async.ib import StartupFetchNONE
from ats.gateway.protocol import frame, split_frames
from ats.supervisor import free_port

GATEWAY = "import sys; from ats.gateway.service import cli_main; sys.exit(cli_main(sys.argv[1:]))"
SYMBOLS = ["AAPL", "GOOG", "IBM", "MSFT", "SPY", "QQQ", "ACWI", "IWM", "TLT"]
FIRST_DAY = "2000-03-02"            # the sample data's second day: the most sessions for the flat-out clock to play
FLAT_OUT = 86400 * 100_000          # --speed: 100,000 sessions a second asked for, so the clock runs as fast as the gateway can

def pct(xs, p): xs = sorted(xs); return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]

# ---- the gateway process -----------------------------------------------------------------------
def start_gateway(state: Path, *, speed: float = 0, start: str = "2005-01-03", profile: str | None = None) -> tuple[subprocess.Popen, int]:
    "`ats gateway` (its cli_main) in its own process on a fresh account with a state file; returns once it listens."
    port = free_port()
    env = dict(os.environ, **({"ATS_GATEWAY_PROFILE": profile} if profile else {}))
    p = subprocess.Popen([sys.executable, "-c", GATEWAY, "--port", str(port), "--speed", str(speed), "--start", start,
                          "--state", str(state), "--fresh", "--max-msg-per-sec", str(10**9)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen = ""
    while "listening" not in seen:
        line = p.stdout.readline()
        if not line: raise RuntimeError(f"the gateway exited: {seen}")
        seen += line
    threading.Thread(target=p.stdout.read, daemon=True).start()        # keep its log from filling the pipe
    return p, port

def stop_gateway(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGINT)
    try: p.wait(60)
    except subprocess.TimeoutExpired: p.kill(); p.wait(10)

# ---- ceilings ------------------------------------------------------------------------------------
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
    s.close()
    return n / (time.perf_counter() - t0), lat

class Recorder:
    "A TCP proxy in front of the gateway that keeps every byte the gateway sends to the (one) client."
    def __init__(self, upstream: int):
        self.srv = socket.socket(); self.srv.bind(("127.0.0.1", 0)); self.srv.listen()
        self.port, self.upstream, self.data, self.sent = self.srv.getsockname()[1], upstream, bytearray(), bytearray()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        c, _ = self.srv.accept()
        u = socket.create_connection(("127.0.0.1", self.upstream))
        def pump(a, b, keep):
            while True:
                try: d = a.recv(1 << 20)
                except OSError: d = b""
                if not d: break
                (self.data if keep else self.sent).extend(d)
                try: b.sendall(d)
                except OSError: break
            for x in (a, b):
                try: x.shutdown(socket.SHUT_RDWR)
                except OSError: pass
        threading.Thread(target=pump, args=(c, u, False), daemon=True).start()
        pump(u, c, True)

def raw_frames(data: bytes) -> list[tuple[str, bytes]]:
    "The messages in `data` as (message id, the message's bytes)."
    out, i = [], 0
    while i + 4 <= len(data):
        n = struct.unpack_from(">I", data, i)[0]
        out.append((data[i + 4:data.index(b"\0", i + 4)].decode(), data[i:i + 4 + n])); i += 4 + n
    return out

class Replayer:
    """A plain socket server that plays a recorded session to each client that connects: the version line after the
    greeting, the connect answers after START_API (positions once the client asks for them, as ib_async waits for that
    answer), then (on `go`) the recorded body, as fast as it can."""
    def __init__(self, head: bytes, body: bytes):
        self.head, self.body, self.go = raw_frames(head), body, threading.Event()
        self.srv = socket.socket(); self.srv.bind(("127.0.0.1", 0)); self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            c, _ = self.srv.accept()
            threading.Thread(target=self._play, args=(c,), daemon=True).start()

    def _play(self, c):
        (_, version), rest = self.head[0], self.head[1:]
        c.recv(4096); c.sendall(version)
        buf, positions = b"", False
        while not positions:
            msgs, buf = split_frames(buf + c.recv(65536))
            for m in msgs:
                if m[0] == "71": c.sendall(b"".join(b for k, b in rest if k not in ("61", "62")))      # START_API
                if m[0] == "61": c.sendall(b"".join(b for k, b in rest if k in ("61", "62"))); positions = True
        threading.Thread(target=lambda: [None for _ in iter(lambda: c.recv(65536), b"")], daemon=True).start()
        self.go.wait(); c.sendall(self.body)

def n_frames(data: bytes, kinds: tuple) -> int:
    msgs, _ = split_frames(bytes(data))
    return sum(1 for m in msgs if m[0] in kinds and not (m[0] == "1" and float(m[4] or 0) == 0))

async def connect(port: int, client_id: int) -> IB:
    ib = IB(); await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=60, fetchFields=StartupFetchNONE)
    ib.client.MaxRequests = 0
    return ib

async def record_fills(port: int, n: int) -> tuple[bytes, bytes, bytes]:
    """The bytes the gateway sends for the connect (head) and for n pipelined market orders filled (body), and the
    placeOrder messages ib_async sent for them."""
    rec = Recorder(port)
    ib = await connect(rec.port, 300); await asyncio.sleep(0.3); head = bytes(rec.data)
    c = Stock("AAPL", "SMART", "USD"); await ib.qualifyContractsAsync(c); await asyncio.sleep(0.3)
    split, sent = len(rec.data), len(rec.sent)
    await pipelined([ib], c, n)
    await asyncio.sleep(0.5); ib.disconnect()
    return head, bytes(rec.data[split:]), bytes(rec.sent[sent:])

def raw_fills(port: int, orders: bytes, client_id: int = 301) -> float:
    """Filled orders per second the gateway itself sustains: a raw socket client sends ib_async's recorded placeOrder
    messages (order ids are per client, so under a new client id they are new orders) and counts execDetails frames."""
    want = len(split_frames(orders)[0])
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"API\0" + struct.pack(">I", 9) + b"v157..178"); s.recv(100)
    s.sendall(frame(71, 2, client_id, "")); time.sleep(0.3); s.recv(1 << 20)
    t0 = time.perf_counter()
    threading.Thread(target=s.sendall, args=(orders,), daemon=True).start()
    buf, got = b"", 0
    while got < want:
        d = s.recv(1 << 20)
        if not d: raise RuntimeError(f"the gateway closed the connection after {got} of {want} fills")
        msgs, buf = split_frames(buf + d)
        got += sum(1 for m in msgs if m[0] == "11")
    dt = time.perf_counter() - t0
    s.close()
    return want / dt

async def replay_fills(head: bytes, body: bytes) -> float:
    "execDetails events per second unmodified ib_async delivers from the recorded bytes, sent as fast as a socket can."
    rp, want = Replayer(head, body), n_frames(body, ("11",))
    ib = await connect(rp.port, 300)
    got, done = 0, asyncio.get_running_loop().create_future()
    def on_exec(trade, fill):
        nonlocal got; got += 1
        if got >= want and not done.done(): done.set_result(None)
    ib.execDetailsEvent += on_exec
    t0 = time.perf_counter(); rp.go.set()
    await asyncio.wait_for(done, 120); dt = time.perf_counter() - t0
    ib.disconnect()
    return want / dt

def count_ticks(ib: IB, counter: list) -> None:
    "Count the price and size ticks ib_async's decoder hands to its wrapper (the wrapper's own methods still run)."
    w = ib.wrapper
    def wrap(name):
        orig = getattr(w, name)
        def counted(*a): counter[0] += 1; return orig(*a)
        setattr(w, name, counted)
    wrap("priceSizeTick"); wrap("tickSize")

async def subscribe(ib: IB) -> None:
    ib.reqMarketDataType(1)
    for i, sym in enumerate(SYMBOLS):                 # the gateway's con_ids (UNIVERSE order): ib_async keys tickers by conId
        ib.reqMktData(Stock(sym, "SMART", "USD", conId=100_000 + i), "", False, False)

async def record_ticks(port: int, seconds: float) -> tuple[bytes, bytes]:
    "The bytes a client streaming SYMBOLS receives from the flat-out clock over `seconds`: connect (head) and ticks (body)."
    rec = Recorder(port)
    ib = await connect(rec.port, 400); await asyncio.sleep(0.3); split = len(rec.data)
    await subscribe(ib); await asyncio.sleep(seconds); ib.disconnect(); await asyncio.sleep(0.2)
    return bytes(rec.data[:split]), bytes(rec.data[split:])

async def replay_ticks(head: bytes, body: bytes, clients: int = 8) -> float:
    "Ticks per second `clients` unmodified ib_async clients (this one process) decode from the recorded bytes."
    rp, want = Replayer(head, body), n_frames(body, ("1", "2"))
    ibs, counter = [], [0]
    for k in range(clients):
        ib = await connect(rp.port, 400); count_ticks(ib, counter); await subscribe(ib); ibs.append(ib)
    t0 = time.perf_counter(); rp.go.set()
    while counter[0] < want * clients and time.perf_counter() - t0 < 120: await asyncio.sleep(0.001)
    dt = time.perf_counter() - t0
    for ib in ibs: ib.disconnect()
    return counter[0] / dt

# ---- the gateway under load -----------------------------------------------------------------------
async def round_trips(port, n):
    ib = IB(); await ib.connectAsync("127.0.0.1", port, clientId=1, timeout=60); ib.client.MaxRequests = 0
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

async def pipelined(ibs: list[IB], c, per_client: int) -> float:
    "Place per_client market orders on each client, then wait for all their execDetails; filled orders per second."
    fills, target, done = 0, len(ibs) * per_client, asyncio.get_running_loop().create_future()
    def on_exec(trade, fill):
        nonlocal fills; fills += 1
        if fills >= target and not done.done(): done.set_result(None)
    for ib in ibs: ib.execDetailsEvent += on_exec
    t0 = time.perf_counter()
    for i in range(per_client):
        for ib in ibs: ib.placeOrder(c, MarketOrder("BUY" if i % 2 else "SELL", 1))
        if i % 50 == 0: await asyncio.sleep(0)
    await asyncio.wait_for(done, 300)
    dt = time.perf_counter() - t0
    for ib in ibs: ib.execDetailsEvent -= on_exec
    return target / dt

async def throughput(port, clients, per_client):
    ibs = []
    for k in range(clients):
        ib = IB(); await ib.connectAsync("127.0.0.1", port, clientId=100 + k, timeout=60); ib.client.MaxRequests = 0; ibs.append(ib)
    c = Stock("MSFT", "SMART", "USD"); await ibs[0].qualifyContractsAsync(c)
    rate = await pipelined(ibs, c, per_client)
    for ib in ibs: ib.disconnect()
    return rate

def raw_ticks(port: int, clients: int = 8, seconds: float = 3.0) -> float:
    "Tick frames per second the gateway delivers to `clients` raw socket clients streaming SYMBOLS, over `seconds`."
    socks = []
    for k in range(clients):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"API\0" + struct.pack(">I", 9) + b"v157..178"); s.recv(100)
        s.sendall(frame(71, 2, 200 + k, ""))
        for i, sym in enumerate(SYMBOLS):
            s.sendall(frame(1, 11, i + 1, 0, sym, "STK", "", 0, "", "", "SMART", "", "USD", "", "", False, "", False, False, ""))
        socks.append(s)
    counts, stop = [0] * clients, False
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
    time.sleep(0.5); base, t0 = sum(counts), time.perf_counter()
    time.sleep(seconds)
    n, dt = sum(counts) - base, time.perf_counter() - t0
    stop = True
    for t in ts: t.join(2)
    for s in socks: s.close()
    return n / dt

async def ib_ticks(port: int, clients: int = 8, seconds: float = 3.0) -> float:
    "Ticks per second 8 ib_async clients (this one process) get from the gateway's flat-out clock, over `seconds`."
    ibs, counter = await asyncio.gather(*[connect(port, 500 + k) for k in range(clients)]), [0]   # at once: the clock is running
    for ib in ibs: count_ticks(ib, counter); await subscribe(ib)
    await asyncio.sleep(0.5); base, t0 = counter[0], time.perf_counter()
    await asyncio.sleep(seconds)
    n, dt = counter[0] - base, time.perf_counter() - t0
    for ib in ibs: ib.disconnect()
    return n / dt

def top_costs(path: str, n: int = 12) -> None:
    print(f"-- top costs of the gateway process ({path}), by own time --")
    st = pstats.Stats(path); st.sort_stats("tottime"); st.print_stats(n)

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--profile", default=None, help="profile the gateway processes; stats files are PATH.orders and PATH.ticks")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_gateway_", dir=Path(__file__).parent))     # the project's disk: fsync is real
    try: run(a, tmp)
    finally: shutil.rmtree(tmp, ignore_errors=True)

def run(a, tmp: Path) -> None:
    prof = lambda kind: f"{a.profile}.{kind}" if a.profile else None
    echo_rate, echo_lat = echo_baseline()

    p, port = start_gateway(tmp / "orders.json", profile=prof("orders"))
    try:
        head, body, orders = asyncio.run(record_fills(port, a.orders))
        raw_one = raw_fills(port, orders)
        lat = asyncio.run(round_trips(port, 500))
        one = asyncio.run(throughput(port, 1, a.orders))
        eight = asyncio.run(throughput(port, 8, a.orders // 8))
    finally: stop_gateway(p)
    journal = len((tmp / "orders.fills.jsonl").read_text().splitlines())
    fill_ceiling = max(asyncio.run(replay_fills(head, body)) for _ in range(3))          # a ceiling: the best of three

    p, port = start_gateway(tmp / "ticks.json", speed=FLAT_OUT, start=FIRST_DAY, profile=prof("ticks"))
    try: raw = raw_ticks(port)
    finally: stop_gateway(p)
    p, port = start_gateway(tmp / "ticks1.json", speed=FLAT_OUT, start=FIRST_DAY)
    try: viaib = asyncio.run(ib_ticks(port))
    finally: stop_gateway(p)
    p, port = start_gateway(tmp / "ticks2.json", speed=FLAT_OUT, start=FIRST_DAY)
    try: thead, tbody = asyncio.run(record_ticks(port, 2.0))
    finally: stop_gateway(p)
    tick_ceiling = max(asyncio.run(replay_ticks(thead, tbody)) for _ in range(3))

    print(f"loopback echo (ceiling):           {echo_rate:10.0f} msg/s   p50 {pct(echo_lat, 50) * 1e6:6.0f} µs  p99 {pct(echo_lat, 99) * 1e6:6.0f} µs")
    print(f"ib_async decode ceiling, fills:    {fill_ceiling:10.0f} execDetails/s (1 client, {a.orders} recorded fills replayed)")
    print(f"ib_async decode ceiling, ticks:    {tick_ceiling:10.0f} ticks/s (8 clients in one process, recorded ticks replayed)")
    print(f"order round trip (ib_async):  p50 {pct(lat, 50) * 1e3:6.2f} ms  p99 {pct(lat, 99) * 1e3:6.2f} ms   "
          f"({pct(lat, 50) / pct(echo_lat, 50):.0f}x the echo p50)   target p99 <= 5 ms")
    print(f"filled orders/s, 1 client:         {one:10.0f}   ({one / fill_ceiling:.2f} of the ib_async ceiling)   target >= 2000")
    print(f"filled orders/s, 8 clients:        {eight:10.0f}")
    print(f"filled orders/s, 1 raw client:     {raw_one:10.0f}   (the gateway's own fill rate: recorded placeOrders in, execDetails counted)")
    print(f"quote ticks/s, 8 raw clients:      {raw:10.0f}   (the gateway's delivery rate)   target >= 100000")
    print(f"quote ticks/s, 8 ib_async clients: {viaib:10.0f}   ({viaib / tick_ceiling:.2f} of the ib_async ceiling)")
    print(f"(gateway in its own process with a state file: {journal} fills journaled and fsynced before any client heard of them;")
    print(" IB's 50 msg/s pacing limit was lifted for these runs; with it a client is capped at 50 requests/s)")
    if a.profile:
        for kind in ("orders", "ticks"): top_costs(prof(kind))

if __name__ == "__main__":
    main()
