"""The runner's status is replaced every second by the runner and read by `ats status`, `ats up` and every dashboard
page: a read that lands while the runner prunes the previous version must read again, never fail (the dashboard showed
'refresh failed: Not found: [i:runtime.status:…]')."""
import subprocess, sys, textwrap, time
from ats.store import Store
from ats.status import read_status

WRITER = textwrap.dedent("""
    import datetime as dt, sys, time
    from ats.store import Store, exit_skipping_teardown
    from ats.status import write_status
    st, end = Store(sys.argv[1]), time.time() + float(sys.argv[2])
    while time.time() < end: write_status(st, dict(as_of=dt.datetime.now(dt.timezone.utc).isoformat(), running=True))
    exit_skipping_teardown(0)
""")


def test_reading_the_status_while_another_process_replaces_it_never_fails(tmp_path):
    uri = f"lmdb://{tmp_path}/db"
    st = Store(uri, create=True)
    st.library("portfolios")
    w = subprocess.Popen([sys.executable, "-c", WRITER, uri, "12"])
    try:
        while read_status(st) is None: time.sleep(0.01)
        reads, end = 0, time.time() + 8
        while time.time() < end and w.poll() is None:
            assert read_status(st)["running"] is True
            reads += 1
        assert reads > 100, reads
    finally:
        w.kill(); w.wait()
