"""ArcticDB on S3-compatible object storage, end to end against a real S3 server on loopback (moto's server mode):
`ats init` creates the libraries in the bucket, data is ingested and backtested from it, a short `ats up` session
trades and a second process reads its fills, writers and readers in separate processes share one symbol under the
bucket's write leases, and `ats check` names what is wrong with a bucket — never showing the keys."""
import json, os, shutil, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import ROOT, ATS, run_ats
from runtime_helpers import PROBE
from s3_helpers import ACCESS, SECRET, s3, s3_project, start_moto, stop      # noqa: F401 (s3 is a fixture)
from ats.supervisor import free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def no_secret(*texts):
    for t in texts: assert SECRET not in t and ACCESS not in t, t


INGEST = """from ats.config import load_settings
from ats.store import Store, StrategyConfig
from ats.data import ingest, SampleSource
st = Store.from_settings(load_settings('settings.ini'), create=False)
r = ingest(st, SampleSource(), ['AAPL'], progress=False)
st.save_strategy_config(StrategyConfig.from_dict(dict(filename='probe.py', strategy_name='probe', active=True,
                                                      parameters=dict(symbols=['IBM'], qty=5))), by='test')
print(r.results[0].added)
from ats.store import exit_skipping_teardown
exit_skipping_teardown(0)          # as every ats process: not ArcticDB's teardown, which can SIGSEGV after the work
"""


def test_init_ingest_backtest_and_a_short_up_session_on_s3_whose_fills_a_second_process_reads(project, s3, capsys):
    from ats.cli import main
    shutil.copytree(ROOT / "strategies", project / "strategies", dirs_exist_ok=True)
    (project / "strategies" / "probe.py").write_text(PROBE)          # buys on every bar: the short session surely fills
    bucket, _ = s3_project(project, s3, prefix="prod")
    init = run_ats("init", cwd=project, check=True)
    assert "database: s3://127.0.0.1:" in init.stdout
    cfg = {k.split("*")[-1] for k in s3.keys(bucket, "prod/_arctic_cfg/")}
    assert cfg == {"market_data", "strategies", "portfolios", "jobs", "research", "options_data"}     # the libraries are in the bucket
    assert not (project / "data_and_research" / "db").exists()                   # and nothing went to a local LMDB folder
    ingest = subprocess.run([sys.executable, "-c", INGEST], cwd=project, capture_output=True, text=True, timeout=120)
    assert ingest.returncode == 0 and int(ingest.stdout.split()[-1]) > 1000, ingest.stderr
    # the session runs on the trading host; meanwhile this process (another host) checks, backtests and reads settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))}
    env |= {"ATS_GUI__START_DASHBOARD": "false", "ATS_JOBS__START_SCHEDULER": "false", "IB_PORT": str(free_port())}
    up = subprocess.Popen([ATS, "up", "--minutes", "0.3", "--speed", "432000", "--every", "5"], cwd=project, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        capsys.readouterr()
        assert main(["check", "--json"]) == 0
        chk = capsys.readouterr()
        res = {x["check"]: x for x in json.loads(chk.out)["results"]}
        assert res["database"]["status"] == "ok" and "reachable, keys accepted, writable" in res["database"]["message"]
        assert "prefix 'prod'" in res["database"]["message"] and "3 strategies configured" in res["strategies"]["message"]
        assert not s3.keys(bucket, "prod/_ats_probe/")                            # the probe object was deleted again
        assert main(["backtest", "ma_crossover", "--source", "arctic", "--symbols", "AAPL", "--json"]) == 0
        bt = capsys.readouterr()
        assert json.loads(bt.out)["stats"]["trades"] > 0                         # the bars ingested by the other process
        assert main(["config", "--json"]) == 0 and main(["config"]) == 0
        shown = capsys.readouterr()
        settings = json.loads(shown.out[:shown.out.index("settings file:")])["settings"]["arctic"]
        assert settings["s3_access_key"] == settings["s3_secret_key"] == "********"   # set, and shown masked
        out, err = up.communicate(timeout=180)
    finally:
        if up.poll() is None: up.kill()
    assert up.returncode == 0 and "started live runner" in out, out + err
    fills = json.loads(run_ats("ledger", "fills", "--json", cwd=project, check=True).stdout)   # a second process, reading the bucket
    assert [f for f in fills if f["strategy"] == "probe" and f["symbol"] == "IBM"], out
    assert len(fills) == len({f["exec_id"] for f in fills})
    assert any("/portfolios" in k for k in s3.keys(bucket, "prod/"))
    logs = "".join(p.read_text(errors="replace") for p in (project / "logs").rglob("*") if p.is_file())
    assert "probe" in logs
    no_secret(init.stdout, init.stderr, ingest.stdout, ingest.stderr, out, err, logs, chk.out, chk.err, bt.out, bt.err, shown.out, shown.err)


WRITER = r"""
import sys, pandas as pd
from ats.store import Store, symbol_lock, exit_skipping_teardown
st = Store(sys.argv[1], create=False)
lib, name, n = st.library("research"), sys.argv[2], int(sys.argv[3])
for i in range(n):
    with symbol_lock(st, "shared"):               # the timestamp is taken inside the lock, as every ats writer does
        row = pd.DataFrame({"writer": [name], "i": [i]}, index=[pd.Timestamp.now(tz="UTC")])
        lib.append("shared", row) if lib.has_symbol("shared") else lib.write("shared", row)
print("done")
exit_skipping_teardown(0)          # as every ats process: not ArcticDB's teardown, which can SIGSEGV after the work
"""

READER = r"""
import sys, time
from ats.store import Store, exit_skipping_teardown
st = Store(sys.argv[1], create=False)
lib, seen, reads = st.library("research"), 0, 0
while True:
    if lib.has_symbol("shared"):
        n = len(lib.read("shared").data); reads += 1
        assert n >= seen, f"rows went from {seen} to {n}"
        seen = n
        if n >= int(sys.argv[2]): break
    time.sleep(0.05)
print(reads, seen)
exit_skipping_teardown(0)          # as every ats process: not ArcticDB's teardown, which can SIGSEGV after the work
"""


def test_two_writers_on_other_hosts_share_one_symbol_through_the_bucket_lease_while_readers_follow(project, s3):
    bucket, _ = s3_project(project, s3)
    uri = s3.uri(bucket)
    # a crash in a child prints its Python stacks (faulthandler), so a failure says which process and where
    env = dict(os.environ, ATS_ARCTIC__S3_ACCESS_KEY=ACCESS, ATS_ARCTIC__S3_SECRET_KEY=SECRET, PYTHONFAULTHANDLER="1")
    from ats.store import Store
    Store(uri, credentials=(ACCESS, SECRET)).library("research")
    n = 6
    spawn = lambda code, *a: subprocess.Popen([sys.executable, "-c", code, uri, *map(str, a)], env=env, cwd=project,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    readers = [spawn(READER, 2 * n) for _ in range(2)]
    writers = [spawn(WRITER, w, n) for w in ("A", "B")]
    outs = [(p, *p.communicate(timeout=180)) for p in writers + readers]
    for p, out, err in outs: assert p.returncode == 0, f"{p.args[3:]} exited {p.returncode}; printed {out[-300:]!r}\n{err[-3000:]}"
    data = Store(uri, credentials=(ACCESS, SECRET), create=False).library("research").read("shared").data
    assert len(data) == 2 * n and data.index.is_monotonic_increasing                 # no append lost, none failed
    assert sorted(data.groupby("writer").i.apply(list).to_dict().items()) == [("A", list(range(n))), ("B", list(range(n)))]
    assert all(int(out.split()[1]) == 2 * n for _, out, _ in outs[2:])              # each reader saw every row arrive
    assert not s3.keys(bucket, "ats/_ats_locks/")                                     # every lease was released


def test_a_dead_writers_lease_blocks_only_until_it_expires(s3):
    from ats.s3 import S3Locks, LockTimeout
    uri = s3.uri(s3.bucket())
    dead = S3Locks(uri, (ACCESS, SECRET), lease_seconds=1.5)
    dead.owner = "host-a:4242"
    dead.acquire("fills")                                      # taken and never released nor renewed: its writer died
    other = S3Locks(uri, (ACCESS, SECRET), lease_seconds=1.5, wait_seconds=0.3)
    with pytest.raises(LockTimeout, match="host-a:4242"): other.acquire("fills")
    other.wait_seconds = 20
    t0 = time.monotonic()
    with other.hold("fills"): pass                             # taken over once the bucket's clock says the lease expired
    assert time.monotonic() - t0 < 15
    assert not s3.keys(uri.split(":")[2].split("?")[0], "ats/_ats_locks/")


def check_output(project, uri, env=None):
    (project / "settings.ini").write_text(f"[arctic]\nuri = {uri}\n")
    r = run_ats("check", cwd=project, env=env, timeout=120)
    db = [l for l in r.stdout.splitlines() if l.startswith("database")]
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    no_secret(r.stdout, r.stderr)
    return db[0] if db else "", r.stdout


KEYS = {"ATS_ARCTIC__S3_ACCESS_KEY": ACCESS, "ATS_ARCTIC__S3_SECRET_KEY": SECRET}


def test_check_says_there_is_no_such_bucket(project, s3):
    line, _ = check_output(project, s3.uri("no-such-bucket-here"), KEYS)
    assert "ERROR" in line and "no bucket 'no-such-bucket-here'" in line and "create it" in line, line


def test_check_says_the_keys_are_refused(project):
    srv = start_moto(auth=True)                                # a server that checks keys: ours are unknown to it
    try: line, _ = check_output(project, srv.uri("atsbucket"), KEYS)
    finally: stop(srv)
    assert "ERROR" in line and "refused the access keys (InvalidAccessKeyId)" in line and "ATS_ARCTIC__S3_ACCESS_KEY" in line, line


def test_check_says_the_endpoint_is_down(project):
    line, _ = check_output(project, f"s3://127.0.0.1:atsbucket?port={free_port()}", KEYS)
    assert "ERROR" in line and "cannot reach the S3 endpoint http://127.0.0.1:" in line and "is the server running" in line, line


def test_check_says_tls_failed_against_a_plain_http_server(project, s3):
    line, _ = check_output(project, s3.uri(s3.bucket(), scheme="s3s"), KEYS)
    assert "ERROR" in line and "TLS with https://127.0.0.1:" in line and "use s3:// instead of s3s://" in line, line


def test_check_refuses_keys_written_in_the_uri_and_says_where_they_go(project, s3):
    uri = s3.uri(s3.bucket()) + f"&access={ACCESS}&secret={SECRET}"
    line, out = check_output(project, uri)
    assert "access keys must not be written in the URI" in out and "settings.ini:2" in out, out
    assert ".env or the environment as ATS_ARCTIC__S3_ACCESS_KEY and ATS_ARCTIC__S3_SECRET_KEY" in out
    assert "access=********&secret=********" in out and "ERROR" in line


def test_keys_cannot_reach_the_database_as_a_uri_override(s3):
    from ats.store import Store
    st = Store(s3.uri(s3.bucket()), credentials=(ACCESS, SECRET))
    with pytest.raises(ValueError, match="access keys never go in the URI nor the database: put them in .env") as e:
        st.checked_override("arctic", "uri", s3.uri("other") + f"&access={ACCESS}&secret={SECRET}")
    no_secret(str(e.value), repr(st))
