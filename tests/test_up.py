"`ats up` (what `make run` starts): the paper gateway as a child process, the runtime, live status, a summary at the end."
import shutil
from ats.supervisor import free_port, port_open
from conftest import ROOT, run_ats


def test_ats_up_trades_the_shipped_strategies_and_stops_cleanly(project):
    shutil.copytree(ROOT / "strategies", project / "strategies", dirs_exist_ok=True)
    run_ats("init", cwd=project, check=True)
    port = free_port()
    r = run_ats("up", "--minutes", "0.3", "--speed", "432000", "--every", "5", cwd=project, env={"IB_PORT": str(port)}, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "started paper gateway" in out and "2 strategies" in out and "NAV" in out
    summary = out.split("summary:")[1]
    rows = {l.split()[0]: l.split() for l in summary.splitlines() if l.startswith(("ma_crossover", "long_term_momentum"))}
    assert set(rows) == {"ma_crossover", "long_term_momentum"}
    assert all(int(v[2]) > 0 for v in rows.values()), summary          # both placed orders
    assert "positions:" in out
    assert not port_open("127.0.0.1", port)                              # the gateway child was stopped
