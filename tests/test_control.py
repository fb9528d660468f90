"Control channel: several senders, one runner, every command answered once and recorded."
import datetime as dt
import subprocess, sys
import pandas as pd
from ats.control import send_command, CommandInbox, command_log, wait_for_result, LIBRARY
from ats.store import Store


def test_concurrent_cli_senders_lose_nothing(tmp_path):
    uri = f"lmdb://{tmp_path}/db"
    Store(uri)
    code = ("import sys; from ats.store import Store; from ats.control import send_command\n"
            f"st = Store({uri!r})\n"
            "for i in range(10): send_command(st, 'reload', f's{sys.argv[1]}', {'i': i}, by='p' + sys.argv[1])\n"
            "from ats.store import exit_skipping_teardown; exit_skipping_teardown(0)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in range(3)]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    got = CommandInbox(Store(uri)).poll()
    assert len(got) == 30 and len({c.id for c in got}) == 30
    assert sorted(c.args["i"] for c in got if c.target == "s1") == list(range(10))


def test_stale_commands_expire_not_execute(tmp_path):
    st = Store(f"lmdb://{tmp_path}/db")
    old = send_command(st, "stop", "ma_crossover", by="ann")
    # age the command as if it had been sent two minutes before the runner started
    lib = st.library(LIBRARY)
    df = lib.read("commands.cli").data
    df.index = df.index - pd.Timedelta(minutes=2)
    lib.write("commands.cli", df)
    assert CommandInbox(st, max_age=60).poll() == []
    res = wait_for_result(st, old, timeout=1)
    assert res.status == "expired" and "send it again" in res.message
    log = command_log(st)
    assert log.loc[0, "status"] == "expired" and log.loc[0, "by"] == "ann"


def test_no_runner_means_no_result(tmp_path):
    st = Store(f"lmdb://{tmp_path}/db")
    assert wait_for_result(st, send_command(st, "kill"), timeout=0.3) is None
    assert command_log(st).loc[0, "status"] == "pending"


def test_unknown_action(tmp_path):
    import pytest
    with pytest.raises(ValueError, match="unknown command 'explode'; commands: start, stop"):
        send_command(Store(f"lmdb://{tmp_path}/db"), "explode")
