"""Debian's headless Chromium for the dashboard tests: once from the command line
(``--dump-dom``, ``--screenshot``), or driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: JSON messages ending in NUL on file descriptors 3 and 4),
so a test can type and click. No driver or package beyond the browser itself."""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path

CHROMIUM = os.environ.get("TRAINSERVE_CHROMIUM", "/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # Chromium's own background traffic is refused on a closed network.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1300",
)


def require_chromium() -> None:
    assert Path(CHROMIUM).is_file(), (
        f"{CHROMIUM} is missing: `make browser` installs Debian's chromium package "
        "(the dashboard tests need a real browser and are never skipped)"
    )


def run_chromium(url: str, profile: Path, *args: str) -> str:
    """Chromium on ``url`` once, with ``args`` (``--dump-dom``, ``--screenshot=...``),
    after the page's timers and fetches have run for 8 s of its own clock; its stdout."""
    require_chromium()
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=8000", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


class Page:
    """One tab of a Chromium driven over the DevTools pipe."""

    def __init__(self, profile: Path):
        require_chromium()
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        # The browser reads commands on fd 3 and writes replies on fd 4.
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}', CHROMIUM]
            + [*FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_browser, from_browser),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.problems: list[str] = []  # uncaught exceptions, console errors, CSP reports
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page", "DOM"):
            self._send(f"{domain}.enable", {}, self._session)

    def _send(self, method: str, params: dict, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            while b"\0" not in self._buffer:
                ready, _, _ = select.select([self._replies], [], [], deadline - time.monotonic())
                chunk = os.read(self._replies, 1 << 16) if ready else b""
                assert chunk, f"Chromium did not answer {method}"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]
            self._event(reply)

    def _event(self, message: dict) -> None:
        """Keep what a page should never produce: exceptions, console errors, CSP reports."""
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.problems.append(
                f"exception: {details.get('exception', {}).get('description') or details['text']}"
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.problems.append(
                "console.error: "
                + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.problems.append(
                f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip()
            )

    def goto(self, url: str) -> None:
        self._send("Page.navigate", {"url": url}, self._session)

    def js(self, expression: str):
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self._send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            self._session,
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout: float = 30):
        """Poll a JavaScript expression until it is truthy; its value (true for an element)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(
                f"(() => {{ try {{ const v = {condition}; return v instanceof Node || v; }}"
                " catch (e) { return null; } })()"
            )
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {condition}")

    def click(self, selector: str) -> None:
        """Click the element ``selector`` names (it must exist)."""
        self.wait_for(f"!!document.querySelector({json.dumps(selector)})")
        self.js(f"document.querySelector({json.dumps(selector)}).click()")

    def set_files(self, selector: str, *paths: Path) -> None:
        """Choose files in the <input type=file> ``selector`` names, as a person would."""
        self.wait_for(f"!!document.querySelector({json.dumps(selector)})")
        root = self._send("DOM.getDocument", {"depth": 0}, self._session)["root"]["nodeId"]
        node = self._send(
            "DOM.querySelector", {"nodeId": root, "selector": selector}, self._session
        )["nodeId"]
        self._send(
            "DOM.setFileInputFiles",
            {"nodeId": node, "files": [str(p) for p in paths]},
            self._session,
        )

    def press(self, key: str, shift: bool = False) -> None:
        """Press and release one key (Tab, Enter, Escape, " ") as the keyboard would."""
        codes = {"Tab": 9, "Enter": 13, "Escape": 27, " ": 32, "ArrowDown": 40}
        params = {
            "key": key,
            "code": "Space" if key == " " else key,
            "windowsVirtualKeyCode": codes[key],
            "modifiers": 8 if shift else 0,
        }
        if key in ("Enter", " "):
            params["text"] = "\r" if key == "Enter" else " "
        self._send("Input.dispatchKeyEvent", {"type": "keyDown", **params}, self._session)
        self._send("Input.dispatchKeyEvent", {"type": "keyUp", **params}, self._session)

    def type_text(self, text: str) -> None:
        self._send("Input.insertText", {"text": text}, self._session)

    def throttle_uploads(self, bytes_per_second: float | None) -> None:
        """Send request bodies at most this fast (None: as fast as the machine goes)."""
        self._send("Network.enable", {}, self._session)
        self._send(
            "Network.emulateNetworkConditions",
            {
                "offline": False,
                "latency": 0,
                "downloadThroughput": -1,
                "uploadThroughput": bytes_per_second or -1,
            },
            self._session,
        )

    def allow_downloads(self, directory: Path) -> None:
        """Save what the page downloads (a link with ``download``) into ``directory``."""
        self._send(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(directory), "eventsEnabled": True},
        )

    def resize(self, width: int, height: int = 900) -> None:
        """Lay the page out as on a screen ``width`` CSS pixels wide."""
        self._send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
            self._session,
        )

    def screenshot(self, path: Path, width: int = 1280, max_height: int = 4000) -> bytes:
        """A PNG of the whole page (up to ``max_height``) laid out ``width`` pixels wide."""
        self._send("Emulation.setScrollbarsHidden", {"hidden": True}, self._session)
        self.resize(width)
        height = self.js("Math.ceil(document.documentElement.scrollHeight)")
        height = min(max(int(height), 400), max_height)
        self.resize(width, height)
        time.sleep(0.2)  # one layout and paint at the new size
        shot = self._send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
            self._session,
        )
        data = base64.b64decode(shot["data"])
        Path(path).write_bytes(data)
        return data

    def close(self) -> None:
        os.close(self._commands)
        os.close(self._replies)
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
