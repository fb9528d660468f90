"""What a new user hit in a day of use (issue 11): one validation for strategy parameters everywhere, unknown strategy
names refused, a status that can be stale says so, settings files that are not text or have a broken header."""
import threading, datetime as dt, json, re
import pytest
from conftest import run_ats, ROOT
from ats.store import Store, StrategyConfig


def _init(project):
    for n in ("ma_crossover", "long_term_momentum"):
        (project / "strategies" / f"{n}.py").write_text((ROOT / "strategies" / f"{n}.py").read_text())
    run_ats("init", cwd=project, check=True)
    return project


@pytest.fixture
def shipped(project):
    "A project after `ats init` with the shipped strategies (ma_crossover, long_term_momentum) configured."
    return _init(project)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    "One such project for tests that only read it or are refused (refusals change nothing; each test checks that)."
    p = tmp_path_factory.mktemp("shared")
    (p / "strategies").mkdir()
    return _init(p)


def _params(project, name="ma_crossover"):
    return Store(f"lmdb://{project}/data_and_research/db").load_strategy_config(name, validate=False).parameters


# ---- 3. one validation for strategy parameters, everywhere ------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["fast=abc"], "strategy 'ma_crossover': parameter fast = 'abc' has type str; expected int (default 20)"),
    (["symbols=ZZZZ"], "strategy 'ma_crossover': parameters.symbols: 'ZZZZ' is not known to the broker; known: "),
    (["fast=60", "slow=50"], "strategy 'ma_crossover': fast (60) must be at least 1 and below slow (50)"),
    (["fastt=10"], "strategy 'ma_crossover': unknown parameter 'fastt'; parameters of MovingAverageCrossover: symbols, fast, slow"),
])
def test_set_param_refuses_what_the_strategy_refuses_and_writes_nothing(shared, args, message):
    before = _params(shared)
    r = run_ats("strategies", "set-param", "ma_crossover", *args, cwd=shared)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _params(shared) == before


def test_set_param_reads_values_as_the_strategy_declares_them(shipped):
    run_ats("strategies", "set-param", "ma_crossover", "symbols=IBM,MSFT", "fast=5", cwd=shipped, check=True)
    p = _params(shipped)
    assert p["symbols"] == ["IBM", "MSFT"] and p["fast"] == 5 and type(p["fast"]) is int


def test_add_refuses_bad_parameters_before_anything_is_stored(shared):
    r = run_ats("strategies", "add", "mac2", "fast=abc", "--file", "ma_crossover.py", cwd=shared)
    assert r.returncode == 2 and "strategy 'mac2': parameter fast = 'abc' has type str; expected int" in r.stderr
    names = [c["strategy_name"] for c in json.loads(run_ats("strategies", "list", "--json", cwd=shared).stdout)]
    assert "mac2" not in names
    assert run_ats("check", cwd=shared).returncode == 0          # every refusal left a configuration that passes


def test_check_fails_on_a_stored_config_the_strategy_would_refuse(shipped):
    "A config written around the CLI (an old version, a script): `ats check` says what the runtime would say at start."
    st = Store(f"lmdb://{shipped}/data_and_research/db")        # no strategies_dir: no class check on this write
    cfg = st.load_strategy_config("ma_crossover", validate=False)
    cfg.parameters = {**cfg.parameters, "fast": "abc"}
    st.save_strategy_config(cfg)
    r = run_ats("check", cwd=shipped)
    assert r.returncode == 1 and "strategy 'ma_crossover': parameter fast = 'abc' has type str; expected int" in r.stdout
    assert "FAILED" in r.stdout


# ---- 5. unknown names are refused ------------------------------------------------------------------------------

UNKNOWN_NAME_COMMANDS = [
    ["kill", "--strategy", "nosuch"], ["resume", "--strategy", "nosuch"], ["strategies", "history", "nosuch"],
    ["strategies", "stop", "nosuch"], ["strategies", "set-param", "nosuch", "fast=3"], ["ledger", "fills", "--strategy", "nosuch"],
    ["ledger", "assign", "AAPL", "10", "--to", "nosuch"], ["run", "--strategies", "ma_crossover,nosuch", "--no-notebook"],
]


def test_an_unknown_strategy_name_is_refused_listing_the_known_ones(shared):
    for args in UNKNOWN_NAME_COMMANDS:
        r = run_ats(*args, cwd=shared)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "no strategy named 'nosuch'; configured strategies: long_term_momentum, ma_crossover" in r.stderr, (args, r.stderr)
    risk = json.loads(run_ats("risk", "status", "--json", cwd=shared, check=True).stdout)
    assert "nosuch" not in json.dumps(risk)                              # no state was stored for it


def test_kill_of_a_known_strategy_still_works_without_a_runner(shipped):
    r = run_ats("kill", "--strategy", "ma_crossover", cwd=shipped, check=True)
    assert "HALTED" in r.stdout
    risk = json.loads(run_ats("risk", "status", "--json", cwd=shipped, check=True).stdout)
    assert risk["strategies"]["ma_crossover"]["effective"] == "HALTED"


# ---- 4. a status that can be stale says so ---------------------------------------------------------------------

def _publish(project, age_s: float, running: bool = True):
    from ats.runtime import write_status
    t = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age_s)
    write_status(Store(f"lmdb://{project}/data_and_research/db"),
                 dict(as_of=t.isoformat(), running=running, stop_reason=None if running else "session length reached",
                      host="127.0.0.1", port=7497, account={}, latency_ms={}, connections=[{"state": "reconnecting"}],
                      strategies=[], positions=[], alerts=[], risk={"account": "ACTIVE"}))


def test_a_status_nobody_refreshes_is_shown_stale_with_its_age(shipped):
    _publish(shipped, age_s=42)
    r = run_ats("status", cwd=shipped)
    assert r.returncode == 1 and re.search(r"STALE: last published [4-9]\d s ago", r.stdout) and "  running  " not in r.stdout, r.stdout
    j = json.loads(run_ats("status", "--json", cwd=shipped).stdout)
    assert j["freshness"]["state"] == "stale" and 40 <= j["freshness"]["age_s"] < 60
    stop = threading.Event()          # a live runner publishes every second, also while `ats status` starts (slow on a busy box)
    pub = threading.Thread(target=lambda: [(_publish(shipped, age_s=0), stop.wait(0.5)) for _ in iter(stop.is_set, True)])
    pub.start()
    try: j = json.loads(run_ats("status", "--json", cwd=shipped).stdout)
    finally: stop.set(); pub.join()
    assert j["freshness"]["state"] == "running"
    _publish(shipped, age_s=600, running=False)
    r = run_ats("status", cwd=shipped)
    assert "STALE" not in r.stdout and json.loads(run_ats("status", "--json", cwd=shipped).stdout)["freshness"]["message"] == \
        "stopped 10 min ago: session length reached"


def test_the_supervisor_records_a_dead_runner(shipped):
    from ats.status import mark_dead, freshness
    from ats.runtime import read_status
    _publish(shipped, age_s=0)
    st = Store(f"lmdb://{shipped}/data_and_research/db")
    assert mark_dead(st, "the live runner died (killed by signal 9)")
    f = freshness(read_status(st))
    assert f.state == "stopped" and "the live runner died (killed by signal 9)" in f.message
    assert not mark_dead(st, "again")              # a stopped status is left alone


# ---- 11. small things: settings files a person broke ----------------------------------------------------------

def test_a_binary_settings_file_is_named_with_its_line(project):
    (project / "settings.ini").write_bytes(b"[ib]\nport = 7497\n\x85\x00\xff junk\n")
    r = run_ats("check", cwd=project)
    assert r.returncode == 1 and "settings.ini:3:" in r.stdout and "is not a text file: byte 0x85 on line 3" in r.stdout
    assert "codec can't decode" not in r.stdout
    r = run_ats("strategies", "list", cwd=project)
    assert r.returncode == 2 and "settings.ini:3" in r.stderr and "Traceback" not in r.stderr


def test_a_section_header_without_its_bracket_is_blamed_on_its_own_line(project):
    text = (ROOT / "settings.ini").read_text()
    lines = text.splitlines()
    k = lines.index("[risk]") + 1
    (project / "settings.ini").write_text(text.replace("[risk]", "[risk", 1))
    r = run_ats("check", cwd=project)
    assert r.returncode == 1 and f"settings.ini:{k}: '[risk' is not a section header: write it as [risk]" in r.stdout, r.stdout


def test_percentages_never_show_minus_zero():
    from ats.cli import pct
    assert pct(-0.00001) == "0.00%" and pct(-0.02) == "-2.00%" and pct(0.1234) == "12.34%"
