"The settings window in a real Voila server, driven in headless Chromium."
import os, shutil, subprocess, sys, time
from pathlib import Path
import pytest
from ats.store import Store
from conftest import run_ats, ROOT
from ats.supervisor import free_port, port_open

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium missing: `make test` installs it")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def voila(project):
    for f in ("ma_crossover.py", "long_term_momentum.py"):
        (project / "strategies" / f).write_text((ROOT / "strategies" / f).read_text())
    run_ats("init", cwd=project, check=True)
    port = free_port()
    env = {**os.environ, "ATS_SETTINGS": str(project / "settings.ini"), "ATS_USER": "trader-ann"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "voila"), str(ROOT / "dashboards" / "settings.ipynb"), "--no-browser",
                             f"--port={port}", "--Voila.ip=127.0.0.1", "--Voila.tornado_settings={'headers':{'Content-Security-Policy':''}}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    t = time.time()
    while not port_open("127.0.0.1", port):
        assert proc.poll() is None and time.time() - t < 60, "voila did not start"
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/", project
    proc.terminate(); proc.wait(10)


def test_trader_edits_a_strategy_in_the_browser(voila, tmp_path):
    from playwright.sync_api import sync_playwright
    url, project = voila
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = b.new_page(viewport={"width": 1500, "height": 900})
        page.goto(url, timeout=60000)
        page.wait_for_selector(".ats-params-ma_crossover input", timeout=60000)
        # Enter applies a field; a bad value is refused in the page and nothing is stored
        page.fill(".ats-params-ma_crossover input", '{"fast": 20, "slow": 50, "symbols": ["AAPL"], "weight": 7}')
        page.press(".ats-params-ma_crossover input", "Enter")
        page.wait_for_selector("text=parameters.weight = 7 is outside [0, 1]", timeout=20000)
        # the strategy's own check, as the runtime would run it: a wrong type never shows a green "saved"
        page.fill(".ats-params-ma_crossover input", '{"fast": "abc", "slow": 50, "symbols": ["AAPL"]}')
        page.press(".ats-params-ma_crossover input", "Enter")
        page.wait_for_selector("text=parameter fast = 'abc' has type str; expected int", timeout=20000)
        page.fill(".ats-params-ma_crossover input", '{"fast": 60, "slow": 50, "symbols": ["AAPL"]}')
        page.press(".ats-params-ma_crossover input", "Enter")
        page.wait_for_selector("text=fast (60) must be at least 1 and below slow (50)", timeout=20000)
        assert page.locator(".ats-msg.ok").count() == 0
        # a good value: Enter saves it
        page.fill(".ats-params-ma_crossover input", '{"fast": 10, "slow": 50, "symbols": ["AAPL"]}')
        page.press(".ats-params-ma_crossover input", "Enter")
        page.wait_for_selector("text=saved (active)", timeout=20000)
        # deactivate with the Save button
        page.click(".ats-active-ma_crossover input")
        page.click(".ats-save-ma_crossover")
        page.wait_for_selector("text=saved (inactive)", timeout=20000)
        page.screenshot(path=str(tmp_path / "settings.png"))
        b.close()
    st = Store(f"lmdb://{project}/data_and_research/db")
    cfg = st.load_strategy_config("ma_crossover")
    assert cfg.active is False and cfg.parameters == {"fast": 10, "slow": 50, "symbols": ["AAPL"]}
    h = st.strategy_config_history("ma_crossover")
    assert list(h["by"])[-1] == "trader-ann" and len(h) == 3     # init, Enter, Save: the refused edits wrote nothing
    assert all(p.get("fast") in (10, 20) and "weight" not in p for p in h["parameters"])
