"""The playground page in a real browser: headless Chromium loads /, submits a prompt, and the
streamed text appears, with per-token probabilities for the hover boxes."""
import json
import shutil
import subprocess
import time
import urllib.parse

import pytest

pytest.importorskip("starlette")
from serve_helpers import running_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium; "
                                             "scripts/setup.sh --dev installs it where apt is available)")
def test_the_playground_streams_a_completion_in_a_browser(tiny_run, tmp_path):
    with running_server(tiny_run) as server:
        from lmlab.infer.generate import generate

        expected = generate(server.model, server.tokenizer, "ROMEO:\n", max_new_tokens=25, temperature=0)
        query = urllib.parse.urlencode({"prompt": "ROMEO:\n", "temperature": 0, "max_tokens": 25, "top_k": 0,
                                        "autorun": 1})
        # The page logs one line to the console when the stream ends; Chromium prints it on stderr.
        proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                 f"--user-data-dir={tmp_path}", "--enable-logging=stderr", "--v=0",
                                 f"{server.url}/?{query}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
        try:
            deadline, result = time.monotonic() + 60, None
            for line in proc.stderr:
                if "lmlab-playground-done " in line:
                    payload = line.split("lmlab-playground-done ", 1)[1]
                    result = json.loads(payload.rsplit('", source:', 1)[0])  # logged as: "MESSAGE", source: URL
                    break
                assert time.monotonic() < deadline, "the page did not finish"
        finally:
            proc.kill()
            proc.wait()
        assert result is not None, "chromium exited before the page finished"
    assert result["text"] == "ROMEO:\n" + expected
    assert result["status"].startswith("finished (length)")
    assert result["tips"] == 25  # every token carries its probability and top alternatives
