"The settings window in a real Voila server, driven in headless Chromium."
import pytest
from ats.store import Store
from conftest import run_ats, ROOT
from browser_helpers import CHROMIUM, ARGS, needs_chromium, served

pytestmark = needs_chromium


@pytest.fixture
def voila(project):
    for f in ("ma_crossover.py", "long_term_momentum.py"):
        (project / "strategies" / f).write_text((ROOT / "strategies" / f).read_text())
    run_ats("init", cwd=project, check=True)
    with served(project, "settings", {"ATS_USER": "trader-ann"}) as url:
        yield url, project


def _browser(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def test_trader_edits_a_strategy_in_the_browser(voila, tmp_path):
    from playwright.sync_api import sync_playwright
    url, project = voila
    with sync_playwright() as pw:
        b = _browser(pw)
        page = b.new_page(viewport={"width": 1500, "height": 900})
        page.goto(url, timeout=60000)
        FAST, WEIGHT, SYMBOLS = (f".ats-param-ma_crossover-{k} input" for k in ("fast", "weight", "symbols"))
        page.wait_for_selector(FAST, timeout=60000)

        def enter(selector, text):
            page.fill(selector, text); page.press(selector, "Enter")

        # each parameter gets the widget of its declared type: numbers, a choice, comma-separated symbols
        assert page.locator(FAST).get_attribute("type") == "number" and page.locator(WEIGHT).get_attribute("type") == "number"
        assert page.locator(".ats-param-ma_crossover-rebalance_frequency select").input_value() == "daily"
        assert page.locator(SYMBOLS).input_value() == "AAPL, MSFT"
        # Enter applies a field; a bad value is refused in the page with the store's message and nothing is stored
        enter(WEIGHT, "7")
        page.wait_for_selector("text=parameters.weight = 7.0 is outside [0, 1]", timeout=20000)
        enter(WEIGHT, "0")                                   # back as stored: nothing to write
        page.wait_for_selector("text=no change", timeout=20000)
        # symbols read as `ats strategies set-param ma_crossover symbols=AAPL,NOPE` reads them, checked against the broker
        enter(SYMBOLS, "AAPL, NOPE")
        page.wait_for_selector("text='NOPE' is not known to the broker", timeout=20000)
        assert page.locator(".ats-msg.ok").count() == 0
        enter(SYMBOLS, "AAPL")
        page.wait_for_selector("text=saved (active)", timeout=20000)
        # the strategy's own check, as the runtime would run it: a wrong combination never shows a green "saved"
        enter(FAST, "60")
        page.wait_for_selector("text=fast (60) must be at least 1 and below slow (50)", timeout=20000)
        assert page.locator(".ats-msg.ok").count() == 0
        # the message is on its own line below Save, never pushing the button out of view
        save, status = page.locator(".ats-save-ma_crossover").bounding_box(), page.locator(".ats-status-ma_crossover").bounding_box()
        assert status["y"] >= save["y"] + save["height"] - 1 and save["x"] + save["width"] <= 1500
        enter(FAST, "10")
        page.wait_for_selector("text=saved (active)", timeout=20000)
        # a choice and a tick box apply with the Save button
        page.select_option(".ats-param-ma_crossover-rebalance_frequency select", "weekly")
        page.click(".ats-active-ma_crossover input")
        page.click(".ats-save-ma_crossover")
        page.wait_for_selector("text=saved (inactive)", timeout=20000)
        page.screenshot(path=str(tmp_path / "settings.png"), full_page=True)
        b.close()
    st = Store(f"lmdb://{project}/data_and_research/db")
    cfg = st.load_strategy_config("ma_crossover")
    assert cfg.active is False and cfg.parameters == {"symbols": ["AAPL"], "fast": 10, "slow": 50, "rebalance_frequency": "weekly"}
    h = st.strategy_config_history("ma_crossover")
    assert list(h["by"])[-1] == "trader-ann" and len(h) == 4     # init, Enter (symbols), Enter (fast), Save: the refused edits wrote nothing
    assert all(p.get("fast") in (10, 20) and "weight" not in p and "NOPE" not in p["symbols"] for p in h["parameters"])


def test_a_link_opens_the_settings_of_one_strategy(voila):
    "The control dashboard links to settings.ipynb?strategy=NAME: that strategy comes first, highlighted; the header links back."
    from playwright.sync_api import sync_playwright
    url, project = voila
    with sync_playwright() as pw:
        b = _browser(pw)
        page = b.new_page(viewport={"width": 1500, "height": 900})
        for name, other in (("ma_crossover", "long_term_momentum"), ("long_term_momentum", "ma_crossover")):
            page.goto(f"{url}?strategy={name}", timeout=60000)
            page.wait_for_selector(f".ats-row-{other}", timeout=60000)
            cards = page.locator(".ats-strategy")
            assert cards.count() == 2
            assert f"ats-row-{name}" in cards.nth(0).get_attribute("class").split()
            assert page.locator(".ats-focus").count() == 1 and f"ats-row-{name}" in page.locator(".ats-focus").get_attribute("class").split()
        assert page.locator("a.ats-nav-control").get_attribute("href") == "control.ipynb"
        assert "current" in page.locator("a.ats-nav-settings").get_attribute("class")
        b.close()
