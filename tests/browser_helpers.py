"""What the browser tests share: Debian's Chromium driven by Playwright (never a downloaded browser), and the dashboards
served by the very Voila command line `ats up` and `ats dashboard` use (`ats.ui.server.voila_spec`)."""
import contextlib, os, shutil, subprocess, time
import pytest
from ats.supervisor import free_port, port_open

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium missing: `make test` installs it")


@contextlib.contextmanager
def served(project, page: str, env: dict | None = None):
    "The project's dashboards served as `ats dashboard` serves them, on a free port; yields the URL of `page` (control, settings, data, jobs)."
    from ats.config import load_settings
    from ats.ui.server import voila_spec, dashboard_url
    e = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))} | {"ATS_GUI__PORT": str(free_port())} | (env or {})
    s = load_settings(project / "settings.ini", env=e)
    spec = voila_spec(s, project / "settings.ini")
    with open(project / "voila.log", "ab") as log:
        proc = subprocess.Popen(spec.argv, env={**e, **spec.env}, cwd=project, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t = time.time()
        while not port_open("127.0.0.1", s.gui.port):
            assert proc.poll() is None and time.time() - t < 60, f"voila did not start: {(project / 'voila.log').read_text()[-2000:]}"
            time.sleep(0.2)
        yield dashboard_url(s, page)
    finally:
        proc.terminate(); proc.wait(10)


@contextlib.contextmanager
def chromium(width: int = 1500, height: int = 1000):
    "A fresh headless Chromium page."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try: yield b.new_page(viewport={"width": width, "height": height})
        finally: b.close()
