"""BarHistory is appended to by the runner's event loop while strategy threads read its DataFrame. A reader must
always see whole bars: a frame built while a bar was being added once failed a running strategy with
`IndexError: index 578 is out of bounds for axis 0 with size 578`, and the supervisor restarted it mid-session."""
import threading
import pandas as pd
from ats.runtime import BarHistory


def test_readers_see_consistent_frames_while_the_event_loop_appends():
    t0 = pd.Timestamp("2004-01-01")
    errors, seen = [], []
    for _ in range(10):
        h, done = BarHistory(keep=100_000), threading.Event()
        def read():
            while not done.is_set():
                try:
                    f = h.frame
                    c = f["close"].loc[:t0 + pd.Timedelta(days=10_000)]
                    assert len(c) == len(f) and f.index.is_monotonic_increasing
                    seen.append(len(f))
                except Exception as e:                       # noqa: BLE001 — any exception is the bug
                    errors.append(f"{type(e).__name__}: {e}")
        reader = threading.Thread(target=read); reader.start()
        for i in range(2000): h.append(t0 + pd.Timedelta(days=i), (1.0, 2.0, 0.5, 1.0 + i, 100.0))
        done.set(); reader.join()
        assert len(h.frame) == 2000 and h.close() == 2000.0
    assert not errors, errors[:3]
    assert len(set(seen)) > 10                                # the reader really ran while bars arrived


def test_late_and_corrected_bars_and_the_memory_bound():
    t0 = pd.Timestamp("2004-01-01")
    h = BarHistory(keep=10)
    for i in (0, 1, 3): h.append(t0 + pd.Timedelta(days=i), (1, 1, 1, float(i), 1))
    h.append(t0 + pd.Timedelta(days=2), (1, 1, 1, 2.0, 1))                # late: kept in order
    h.append(t0 + pd.Timedelta(days=3), (1, 1, 1, 33.0, 1))               # a correction replaces
    assert list(h.frame["close"]) == [0.0, 1.0, 2.0, 33.0]
    for i in range(4, 30): h.append(t0 + pd.Timedelta(days=i), (1, 1, 1, float(i), 1))
    assert 10 <= len(h) <= 11 and h.last == t0 + pd.Timedelta(days=29) and h.frame.index.is_monotonic_increasing
