"The data browser in a real Voila server, driven in headless Chromium, on bars ingested by the real download job."
import pytest
from conftest import run_ats, ROOT
from browser_helpers import needs_chromium, served, chromium

pytestmark = needs_chromium


def voila(project):
    "dashboards/data.ipynb served as `ats dashboard` serves it, for the project's settings.ini; yields the page URL."
    return served(project, "data")


def _cells(page, symbol: str) -> list[str]:
    "The text of the symbols table's row of `symbol`."
    row = page.locator(".ats-data-symbols tr", has=page.locator("td", has_text=symbol)).first
    return [c.strip() for c in row.locator("td").all_inner_texts()]


def test_trader_sees_stored_bars_their_chart_and_quality(project, tmp_path):
    from ats.config import load_settings
    from ats.data import read_bars
    from ats.store import Store
    run_ats("init", cwd=project, check=True)
    run_ats("jobs", "run", "download_us_stock_data", "-p", "source", "sample", "-p", "universe", "AAPL,IBM", "-p", "progress", "false",
            cwd=project, check=True, timeout=300)
    st = Store.from_settings(load_settings(project / "settings.ini"), create=False)
    aapl, ibm = read_bars(st, "AAPL"), read_bars(st, "IBM")
    updated = st.library("market_data").get_description("AAPL.1d").last_update_time
    del st
    with voila(project) as url, chromium() as page:
        page.goto(url, timeout=60000)
        page.wait_for_selector(".ats-data-symbols", timeout=60000)
        # the true size, span and last write of what the job stored
        assert _cells(page, "AAPL.1d") == ["AAPL.1d", f"{len(aapl):,}", f"{aapl.index[0]:%Y-%m-%d}", f"{aapl.index[-1]:%Y-%m-%d}",
                                           f"{updated:%Y-%m-%d %H:%M:%S} UTC"]
        assert _cells(page, "IBM.1d")[1:4] == [f"{len(ibm):,}", f"{ibm.index[0]:%Y-%m-%d}", f"{ibm.index[-1]:%Y-%m-%d}"]
        assert page.locator(".ats-data-libraries tr", has=page.locator("td", has_text="market_data")).locator("td.num").inner_text() == "2"
        assert page.locator(".bk-Canvas").count() == 0 and page.locator(".ats-data-empty").count() == 0
        # choosing it draws the candlestick chart and reports the quality of all its bars
        page.select_option(".ats-data-symbol select", "AAPL.1d")
        page.wait_for_selector(".bk-Canvas", timeout=60000)
        q = page.wait_for_selector(".ats-data-quality", timeout=30000).inner_text()
        assert "AAPL" in q and f"{len(aapl):,}" in q and "problems" in q
        page.locator(".ats-data-detail").screenshot(path=str(tmp_path / "data.png"))     # what a trader sees
        # a link with ?symbol= opens the page on that instrument
        page.goto(url + "?symbol=IBM", timeout=60000)
        page.wait_for_selector(".bk-Canvas", timeout=60000)
        q = page.wait_for_selector(".ats-data-quality", timeout=30000).inner_text()
        assert "IBM" in q and f"{len(ibm):,}" in q


def test_an_empty_database_says_how_to_fill_it(project):
    run_ats("init", cwd=project, check=True)
    with voila(project) as url, chromium() as page:
        page.goto(url, timeout=60000)
        msg = page.wait_for_selector(".ats-data-empty", timeout=60000).inner_text()
        assert "has no bars yet" in msg and "ats jobs run download_us_stock_data -p source sample" in msg
