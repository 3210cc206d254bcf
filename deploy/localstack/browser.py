"""Headless Chromium (Debian's ``chromium`` package) for the tests that look at a rendered page.

``find_chromium(install=True)`` returns the browser's path: ``chromium`` / ``chromium-browser``
on PATH or in /usr/bin; otherwise, as root with apt-get (like ``gateway.find_nginx`` installs
nginx), installs ``chromium`` from Debian; otherwise raises ``BrowserUnavailable`` saying how to
install it.

``screenshot(page, png, width=, height=)`` and ``dump_dom(page)`` run one headless browser each
(``--headless --no-sandbox``: the sandbox needs user namespaces a container or root often lacks)
on a local file, with a throwaway profile and HOME, and a timeout; a browser that fails or
writes nothing raises ``BrowserUnavailable`` with the tail of its stderr.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium", "/usr/bin/chromium-browser")
TIMEOUT_S = 120
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class BrowserUnavailable(RuntimeError):
    """No usable headless Chromium here (not installed and not installable, or it failed)."""


def find_chromium(install: bool = True) -> str:
    for cand in CANDIDATES:
        path = shutil.which(cand) or (cand if os.path.isabs(cand) else None)
        if path and os.access(path, os.X_OK):
            return path
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        log.warning("chromium not found; installing Debian's chromium with apt-get")
        for cmd in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
        ):
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=1800, check=False
            )
            if proc.returncode != 0:
                raise BrowserUnavailable(
                    f"{' '.join(cmd)} failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
                )
        return find_chromium(install=False)
    raise BrowserUnavailable(
        "chromium not found (PATH, /usr/bin); as root: apt-get install chromium (Debian)"
    )


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="taper-chromium-") as home:
        cmd = [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={home}/profile",
            *args,
        ]
        env = {**os.environ, "HOME": home}
        try:
            return subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BrowserUnavailable(f"chromium timed out after {TIMEOUT_S} s") from exc


def screenshot(page: Path, png: Path, *, width: int = 1000, height: int = 1400) -> Path:
    """A PNG of the local file ``page`` rendered at ``width`` x ``height``."""
    png.unlink(missing_ok=True)
    proc = _run([f"--screenshot={png}", f"--window-size={width},{height}", page.as_uri()])
    if not png.exists() or png.stat().st_size == 0:
        raise BrowserUnavailable(
            f"chromium wrote no screenshot (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return png


def dump_dom(page: Path) -> str:
    """The DOM of the local file ``page`` after rendering, serialized as HTML."""
    proc = _run(["--dump-dom", page.as_uri()])
    if proc.returncode != 0 or not proc.stdout.strip():
        raise BrowserUnavailable(
            f"chromium dumped no DOM (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def screenshot_url(
    url: str, png: Path, *, width: int = 1400, height: int = 900, budget_ms: int = 15000
) -> Path:
    """A PNG of the page at ``url`` (a single-page app: its scripts get ``budget_ms`` of virtual
    time to fetch and render before the shot)."""
    png.unlink(missing_ok=True)
    proc = _run(
        [
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={budget_ms}",
            url,
        ]
    )
    if not png.exists() or png.stat().st_size == 0:
        raise BrowserUnavailable(
            f"chromium wrote no screenshot (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return png


def dump_dom_url(url: str, *, budget_ms: int = 15000, offline: bool = False) -> str:
    """The DOM of the page at ``url`` once its scripts had ``budget_ms`` of virtual time.
    ``offline``: no host name resolves (only IP literals such as 127.0.0.1 are reached), so a page
    that needs a CDN fails to render."""
    extra = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"] if offline else []
    proc = _run([*extra, f"--virtual-time-budget={budget_ms}", "--dump-dom", url])
    if proc.returncode != 0 or not proc.stdout.strip():
        raise BrowserUnavailable(
            f"chromium dumped no DOM (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return proc.stdout
