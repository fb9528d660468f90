"""The floor under the runtime's bar→order latency that isolation costs: one round trip from the asyncio event loop to
a strategy thread and back, with nothing done on either side.

The runtime runs every strategy in its own thread (a strategy that hangs or raises never stops the others), so each bar
crosses to that thread and each order crosses back: two wake-ups raw ib_async never pays. This measures those two
hand-offs alone, paced like the latency benchmark (one every `--every` seconds), in the same mechanisms the runtime uses
(`queue.Queue` to the thread, `loop.call_soon_threadsafe` back), so that `bench_runtime_latency.py`'s figures can be
read against it.

    .venv/bin/python benchmarks/bench_thread_handoff.py [--n 300] [--every 0.1]
"""
import argparse, asyncio, queue, threading, time
import numpy as np


async def main(n: int, every: float) -> list[float]:
    loop = asyncio.get_running_loop()
    inbox: queue.Queue = queue.Queue()
    lat: list[float] = []

    def worker():
        while (item := inbox.get()) is not None:
            t0, fut = item
            loop.call_soon_threadsafe(fut.set_result, t0)      # the "order" goes back to the loop

    th = threading.Thread(target=worker, daemon=True); th.start()
    for _ in range(n):
        fut = loop.create_future()
        inbox.put((time.perf_counter(), fut))                  # the "bar" goes to the strategy thread
        t0 = await fut
        lat.append(time.perf_counter() - t0)
        await asyncio.sleep(every)
    inbox.put(None)
    return lat


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--every", type=float, default=0.1)
    a = ap.parse_args()
    lat = np.array(asyncio.run(main(a.n, a.every))) * 1000
    print(f"loop -> thread -> loop, {a.n} round trips, one every {a.every:g} s")
    print(f"p50 {np.percentile(lat, 50):.3f} ms   p90 {np.percentile(lat, 90):.3f} ms   p99 {np.percentile(lat, 99):.3f} ms   max {lat.max():.3f} ms")
