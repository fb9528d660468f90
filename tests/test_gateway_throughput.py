"""The paper gateway under load keeps its promises: a fill acknowledged to a client is on disk (the gateway killed with
kill -9 right after execDetails comes back with it), and eight clients streaming quotes each get every tick, in order."""
import json, os, signal, socket, struct, subprocess, sys, threading
from pathlib import Path
from ib_async import IB, Stock, MarketOrder
from ats.gateway.service import GatewayThread
from ats.gateway.protocol import frame, split_frames
from ats.supervisor import free_port

GATEWAY = "import sys; from ats.gateway.service import cli_main; sys.exit(cli_main(sys.argv[1:]))"


def start_gateway(state: Path, port: int) -> subprocess.Popen:
    "`ats gateway` (its cli_main) in its own process, on a kept account; returns once it listens."
    p = subprocess.Popen([sys.executable, "-c", GATEWAY, "--port", str(port), "--speed", "0", "--start", "2005-01-03",
                          "--state", str(state)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    while "listening" not in seen:
        line = p.stdout.readline()
        assert line, seen                       # it exited
        seen += line
    return p


def test_a_fill_acknowledged_to_a_client_survives_kill_9_of_the_gateway(tmp_path):
    state, port = tmp_path / "gateway_state.json", free_port()
    gw = start_gateway(state, port)
    try:
        ib = IB(); ib.connect("127.0.0.1", port, clientId=5, timeout=10)
        c = Stock("AAPL", "SMART", "USD"); ib.qualifyContracts(c)
        acked = []
        def on_exec(trade, fill):                # kill the gateway the moment it has told us about the fill
            if not acked: os.kill(gw.pid, signal.SIGKILL)
            acked.append(fill.execution.execId)
        ib.execDetailsEvent += on_exec
        ib.placeOrder(c, MarketOrder("BUY", 7))
        for _ in range(100):
            if acked: break
            try: ib.sleep(0.05)
            except ConnectionError: break        # the gateway is gone (killed above)
        assert acked, "the gateway never reported the fill"
        gw.wait(10)
        assert gw.returncode == -signal.SIGKILL
        ib.disconnect()
    finally:
        if gw.poll() is None: gw.kill(); gw.wait(10)
    jp = state.with_suffix(".fills.jsonl")
    journal = [json.loads(x) for x in jp.read_text().splitlines()] if jp.exists() else []
    assert acked[0] in [f["exec_id"] for f in journal]                         # on disk before the client heard of it
    gw = start_gateway(state, port)                                           # the restarted gateway has it in its account
    try:
        ib = IB(); ib.connect("127.0.0.1", port, clientId=6, timeout=10)
        assert acked[0] in [f.execution.execId for f in ib.reqExecutions()]
        assert {p.contract.symbol: p.position for p in ib.positions()} == {"AAPL": 7}
        ib.disconnect()
    finally:
        gw.send_signal(signal.SIGINT); gw.wait(20)


SYMBOLS = ["AAPL", "GOOG", "IBM", "MSFT", "SPY", "QQQ", "ACWI", "IWM", "TLT"]


def subscribe(port: int, client_id: int, first_rid: int) -> socket.socket:
    "A raw TWS API client streaming quotes of SYMBOLS under request ids first_rid, first_rid + 1, ..."
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"API\0" + struct.pack(">I", 9) + b"v157..178")
    s.sendall(frame(71, 2, client_id, ""))
    for i, sym in enumerate(SYMBOLS):
        s.sendall(frame(1, 11, first_rid + i, 0, sym, "STK", "", 0, "", "", "SMART", "", "USD", "", "", False, "", False, False, ""))
    return s


def expected_ticks(gw, days: int) -> dict[int, list[tuple[float, float]]]:
    "Per symbol (index into SYMBOLS), the (last, volume) its ticks must say over the next `days` sessions: open, the day's extremes, close."
    want = {}
    for i, sym in enumerate(SYMBOLS):
        cid = next(c for c, inst in gw.instruments.items() if inst.symbol == sym)
        df, seq = gw.bars[cid], []
        for day in gw.days[gw.day + 1:gw.day + 1 + days]:
            if day not in df.index: continue
            r = df.loc[day]
            path = [r.open, r.low, r.high, r.close] if r.close >= r.open else [r.open, r.high, r.low, r.close]
            seq += [(float(px), float(r.volume) * (ph + 1) / 4) for ph, px in enumerate(path)]
        want[i] = seq
    return want


def test_eight_clients_streaming_quotes_each_receive_every_tick_in_order():
    days, n_clients = 40, 8
    with GatewayThread(data="sample", speed=0, start="2005-01-03", max_msg_per_sec=10**9) as g:
        want = expected_ticks(g.gw, days)
        n_want = 4 * sum(len(v) for v in want.values())
        assert n_want >= 0.9 * 4 * 4 * days * len(SYMBOLS)
        # half the clients use the same request ids, half their own: each must see its own ids
        rids = [1 if k % 2 else 1000 * (k + 1) for k in range(n_clients)]
        socks = [subscribe(g.port, 20 + k, rids[k]) for k in range(n_clients)]
        got = [[] for _ in socks]
        subscribed = [threading.Event() for _ in socks]
        def read(k, s):                          # until the snapshot ticks of every subscription and then every streamed tick arrived
            s.settimeout(30)
            buf, snap = b"", 0
            while len(got[k]) < n_want and (d := s.recv(1 << 20)):
                msgs, buf = split_frames(buf + d)
                for m in msgs:
                    if subscribed[k].is_set(): got[k].append(m) if m[0] in ("1", "2") else None
                    elif m[0] in ("1", "2"):
                        snap += 1
                        if snap == 8 * len(SYMBOLS): subscribed[k].set()     # bid, ask, last, high, low, open, volume, close each
        readers = [threading.Thread(target=read, args=(k, s), daemon=True) for k, s in enumerate(socks)]
        for t in readers: t.start()
        assert all(e.wait(30) for e in subscribed), "not every client got its snapshot ticks"
        g.call(g.gw.step, days)
        for t in readers: t.join(60)
        for s in socks: s.close()
    for k, ticks in enumerate(got):
        assert len(ticks) == n_want, (k, len(ticks), n_want)                                 # every tick, none twice
        for i in range(len(SYMBOLS)):
            mine = [m for m in ticks if int(m[2]) == rids[k] + i]
            last = [float(m[4]) for m in mine if m[0] == "1" and m[3] == "4"]
            vol = [float(m[4]) for m in mine if m[0] == "2" and m[3] == "8"]
            assert list(zip(last, vol)) == want[i], (k, SYMBOLS[i])                             # in order
            kinds = [(m[0], m[3]) for m in mine]
            assert kinds == [("1", "1"), ("1", "2"), ("1", "4"), ("2", "8")] * len(want[i])   # bid, ask, last, volume
