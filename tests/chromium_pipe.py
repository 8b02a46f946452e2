"""Headless Chromium driven over its DevTools pipe (`--remote-debugging-pipe`: JSON messages
separated by NUL on file descriptors 3 and 4), so a test can read what a page shows —
`document.body.innerText`, which leaves out what CSS hides or a closed <details> folds away —
with the standard library alone."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time


class Chromium:
    def __init__(self, binary: str, profile: str):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def as_fds_3_and_4():
            # Chromium reads commands on fd 3 and answers on fd 4. Move both ends out of the
            # way first, so that neither dup2 overwrites the other.
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self._process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "about:blank"],
            close_fds=False, preexec_fn=as_fds_3_and_4, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"chromium did not answer {method}")
            chunk = os.read(self._from_browser, 65536)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self._buffer += chunk

    def page_text(self, url: str, *, settle_s: float = 10.0) -> str:
        """The visible text of `url` once it has loaded and its scripts have run."""
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        deadline = time.monotonic() + settle_s
        while True:  # the new target starts at about:blank; wait for the page itself
            state = self.call("Runtime.evaluate", {
                "expression": "document.readyState + ' ' + location.href",
                "returnByValue": True}, session)["result"].get("value", "")
            if state == f"complete {url}":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load ({state})")
            time.sleep(0.1)
        result = self.call("Runtime.evaluate", {"expression": "document.body.innerText",
                                                "returnByValue": True}, session)
        return result["result"]["value"]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
