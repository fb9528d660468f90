#!/usr/bin/env python
"""Run ib_async's own request tests against `ats gateway` (issue 15: the paper gateway holds to IB's behaviour).

    python scripts/ib_async_suite.py /path/to/ib_async          # or IB_ASYNC_REPO=/path/to/ib_async
    git clone https://github.com/ib-api-reloaded/ib_async        # a checkout of the version you have installed

It starts two fresh paper gateways in a temporary project, on the ports the tests name (their conftest connects to
127.0.0.1:7497, tests/test_contract.py to 4001), runs that checkout's tests/test_requests.py and tests/test_contract.py
with this interpreter's pytest, prints each test's outcome and the pass/fail counts, and stops the gateways.
The tests are async: pytest-asyncio must be importable (`pip install pytest-asyncio`). Nothing of ib_async is copied.
Exit status: 0 when every test passed, 1 when one failed, 2 when the suite could not be run.
"""
from __future__ import annotations
import argparse, os, socket, subprocess, sys, tempfile, time
import xml.etree.ElementTree as ET
from pathlib import Path

TESTS = ("tests/test_requests.py", "tests/test_contract.py")
PORTS = (7497, 4001)              # fixed by the tests themselves: conftest's IB.connectAsync() default and test_contract's connect
ASYNC_OPTS = ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=session",
              "-o", "asyncio_default_test_loop_scope=session"]    # their session-wide `ib` fixture and the tests share one loop


def fail(msg: str) -> int:
    print(f"ib_async suite: {msg}", file=sys.stderr)
    return 2


def port_busy(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def start_gateway(port: int, project: Path) -> subprocess.Popen:
    "A fresh `ats gateway` in `project` (its own state file), started with this interpreter."
    cmd = [sys.executable, "-c", "import sys; from ats.gateway.service import cli_main; sys.exit(cli_main(sys.argv[1:]))",
           "--port", str(port), "--state", str(project / f"gateway_{port}.json"), "--fresh"]
    log = open(project / f"gateway_{port}.log", "w")
    return subprocess.Popen(cmd, cwd=project, stdout=log, stderr=subprocess.STDOUT)


def wait_listening(procs: dict[int, subprocess.Popen], project: Path, timeout: float = 60.0) -> str | None:
    "None once every gateway accepts connections; else what went wrong."
    deadline = time.monotonic() + timeout
    for port, p in procs.items():
        while not port_busy(port):
            if p.poll() is not None:
                return f"the gateway on port {port} exited ({p.returncode}): {(project / f'gateway_{port}.log').read_text()[-800:]}"
            if time.monotonic() > deadline: return f"the gateway on port {port} did not listen within {timeout:.0f} s"
            time.sleep(0.2)
    return None


def counts(junit: Path) -> dict[str, list[str]]:
    "Test ids by outcome (passed, failed, skipped) from pytest's JUnit XML."
    out: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        kind = "failed" if case.find("failure") is not None or case.find("error") is not None else \
               "skipped" if case.find("skipped") is not None else "passed"
        out[kind].append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repo", nargs="?", default=os.environ.get("IB_ASYNC_REPO"), help="an ib_async checkout (default $IB_ASYNC_REPO)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a single test may take before it counts as failed")
    a = ap.parse_args(argv)
    if not a.repo: return fail("give the path of an ib_async checkout (argument or IB_ASYNC_REPO)")
    repo = Path(a.repo).expanduser().resolve()
    if missing := [t for t in TESTS if not (repo / t).is_file()]:
        return fail(f"{repo} is not an ib_async checkout: {', '.join(missing)} not found")
    try: import pytest_asyncio  # noqa: F401
    except ImportError: return fail("the tests are async and need pytest-asyncio: pip install pytest-asyncio")
    if busy := [p for p in PORTS if port_busy(p)]:
        return fail(f"port {', '.join(map(str, busy))} is in use (TWS, IB Gateway or another gateway?); the tests connect there: stop it first")
    with tempfile.TemporaryDirectory(prefix="ib_async_suite_") as tmp:
        project = Path(tmp)
        procs = {port: start_gateway(port, project) for port in PORTS}
        try:
            if why := wait_listening(procs, project): return fail(why)
            junit = project / "junit.xml"
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--timeout={a.timeout:g}", f"--junitxml={junit}",
                   "--rootdir", str(repo), *ASYNC_OPTS, *TESTS]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, cwd=repo)
            if not junit.exists(): return fail("pytest wrote no results (see its output above)")
            got = counts(junit)
        finally:
            for p in procs.values(): p.terminate()
            for p in procs.values():
                try: p.wait(10)
                except subprocess.TimeoutExpired: p.kill()
    for kind in ("passed", "failed", "skipped"):
        for name in got[kind]: print(f"{kind.upper():8} {name}")
    print(f"ib_async suite: {len(got['passed'])} passed, {len(got['failed'])} failed, {len(got['skipped'])} skipped")
    return 1 if got["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
