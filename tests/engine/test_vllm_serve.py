"""The server manager and the load generator against a stand-in server (no vllm needed).

The stand-in (``_FAKE``) is a real HTTP server in a child process that speaks the parts of vLLM's
API the replay uses (``/health``, ``/metrics``, streaming ``/v1/completions`` with
``return_token_ids``) and starts a grandchild, like vLLM's engine core, so the tests can see
that the whole process group is stopped: on a normal exit, on an exception inside the block, on
a server that exits during start-up (the log's tail is in the error) and on one that never
answers ``/health`` (start-up timeout). The client tests need ``aiohttp`` (vLLM's dependency:
they run in the vLLM venv, see test_real_vllm.py) and skip without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import bench, serve
from runner.cli.vllm import exported, from_policy
from simulator.request import Request

_FAKE = r"""
import json, os, subprocess, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
mode = os.environ["FAKE_MODE"]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(os.environ["FAKE_PIDS"], "w").write(f"{os.getpid()} {child.pid}")
print("fake vllm starting", flush=True)
if mode == "exit":
    print("ValueError: bad speculative config", flush=True)
    sys.exit(1)
if mode == "hang":
    time.sleep(600)
port = int(sys.argv[sys.argv.index("--port") + 1])

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        body = b"ok" if self.path == "/health" else b"vllm:spec_decode_num_drafts_total 0\n"
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert "seed" not in req and req["stream"] and req["return_token_ids"]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream"); self.end_headers()
        left = req["max_tokens"]
        while left > 0:
            n = min(2, left); left -= n
            chunk = {"choices": [{"index": 0, "text": "", "token_ids": [7] * n}]}
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n"); self.wfile.flush()
            time.sleep(0.01)
        self.wfile.write(b'data: {"choices": [], "usage": {}}\n\ndata: [DONE]\n\n')

ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_vllm.py"
    script.write_text(_FAKE)
    monkeypatch.setattr(serve, "SERVE", (sys.executable, str(script), "serve"))

    def make(mode: str) -> tuple[serve.ServeConfig, Path]:
        pids = tmp_path / f"pids-{mode}"
        env = (("FAKE_MODE", mode), ("FAKE_PIDS", str(pids)))
        return serve.ServeConfig(str(tmp_path), env=env), pids

    return make


def _gone(pids: Path) -> bool:
    for pid in map(int, pids.read_text().split()):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # a zombie (exited, not yet reaped by its parent) counts as stopped
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        if state != "Z":
            return False
    return True


def _wait_gone(pids: Path) -> bool:
    for _ in range(100):
        if _gone(pids):
            return True
        time.sleep(0.1)
    return False


def test_the_server_and_its_children_stop_on_exit(fake, tmp_path):
    cfg, pids = fake("ok")
    with serve.Served(cfg, tmp_path / "out" / "server.log", startup_timeout_s=60) as srv:
        assert srv.healthy() and "spec_decode" in srv.metrics()
        assert not _gone(pids)
    assert _wait_gone(pids)
    assert "fake vllm starting" in (tmp_path / "out" / "server.log").read_text()


def test_an_exception_inside_the_block_stops_the_server(fake, tmp_path):
    cfg, pids = fake("ok")
    srv = serve.Served(cfg, tmp_path / "server.log", startup_timeout_s=60)
    with pytest.raises(KeyboardInterrupt), srv:
        raise KeyboardInterrupt  # what Ctrl-C raises in the command
    assert _wait_gone(pids)


def test_a_server_that_exits_during_startup_is_an_error_with_its_log(fake, tmp_path):
    cfg, pids = fake("exit")
    srv = serve.Served(cfg, tmp_path / "server.log", startup_timeout_s=60)
    with pytest.raises(serve.ServerError, match="exited with code 1.*bad speculative config"):
        srv.__enter__()
    assert _wait_gone(pids)


def test_a_server_that_never_answers_is_stopped_at_the_startup_timeout(fake, tmp_path):
    cfg, pids = fake("hang")
    srv = serve.Served(cfg, tmp_path / "server.log", startup_timeout_s=3)
    with pytest.raises(serve.ServerError, match="did not answer /health within 3 s"):
        srv.__enter__()
    assert _wait_gone(pids)


def test_sigterm_stops_the_server_too(fake, tmp_path):
    cfg, pids = fake("ok")
    code = (
        "import os, signal, sys, time\n"
        f"sys.path[:0] = [{str(Path(__file__).resolve().parents[2])!r}]\n"
        "from engine import serve\n"
        f"serve.SERVE = {serve.SERVE!r}\n"
        f"cfg = serve.ServeConfig({cfg.target!r}, env={cfg.env!r})\n"
        f"with serve.Served(cfg, {str(tmp_path / 'server.log')!r}, startup_timeout_s=60):\n"
        "    print('up', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    proc.terminate()
    assert proc.wait(timeout=60) == 128 + 15
    assert _wait_gone(pids)


def test_the_client_streams_every_token_of_every_request(fake, tmp_path):
    pytest.importorskip("aiohttp", reason="aiohttp comes with vllm (run in .venv-vllm)")
    from engine.data import Corpus

    cfg, _ = fake("ok")
    reqs = [Request(i, 0.05 * i, 16, 5 + i, "code") for i in range(4)]
    jobs = bench.jobs(reqs, 0, {"code": Corpus.load("code", "heldout")})
    assert [len(j.prompt) for j in jobs] == [16] * 4
    with serve.Served(cfg, tmp_path / "server.log", startup_timeout_s=60) as srv:
        open_loop = bench.run(srv.url, cfg.served_name, jobs, bench.Load())
        closed = bench.run(srv.url, cfg.served_name, jobs, bench.Load(concurrency=2))
    for outs in (open_loop, closed):
        assert [o.ok for o in outs] == [True] * 4
        assert [o.tokens for o in outs] == [5, 6, 7, 8]
        assert [o.chunks for o in outs] == [3, 3, 4, 4]  # two tokens a chunk
        assert all(o.sent <= o.first <= o.finish for o in outs)


def test_policies_become_vllms_speculative_config():
    assert from_policy("none", "D") is None
    assert from_policy("fixed:k=3", "D")["num_speculative_tokens"] == 3
    doc = from_policy("batch_table:sizes=4;16,ks=6;2,default=0", "D")
    assert doc["num_speculative_tokens"] == 6 and doc["method"] == "draft_model"
    assert doc["num_speculative_tokens_per_batch_size"] == [[1, 4, 6], [5, 16, 2]]
    from profiles.errors import InputError

    with pytest.raises(InputError, match="none, fixed and batch_table"):
        from_policy("dspark", "D")
    with pytest.raises(InputError, match="draft model"):
        from_policy("fixed:k=2", "")


def test_an_export_is_launched_with_only_its_placeholders_filled(tmp_path):
    import json

    from profiles.errors import InputError

    (tmp_path / "export.json").write_text(json.dumps({
        "format": "vllm", "files": ["speculative_config.json"],
        "launch": {"argv": ["vllm", "serve", "$MODEL", "--max-num-seqs", "12"]}}))  # fmt: skip
    (tmp_path / "speculative_config.json").write_text(json.dumps(
        {"method": "$METHOD", "model": "$DRAFT", "num_speculative_tokens": 3}))  # fmt: skip
    assert exported(tmp_path, "/d") == (
        {"method": "draft_model", "model": "/d", "num_speculative_tokens": 3},
        12,
    )
    with pytest.raises(InputError, match="needs a draft"):
        exported(tmp_path, "")
    with pytest.raises(InputError, match="not a vllm export"):
        exported(tmp_path / "nowhere", "/d")


def test_bad_vllm_replays_are_one_line_and_exit_2(tmp_path, capsys):
    from engine import vllm
    from runner.cli import main

    why = vllm.missing()
    cases = [["replay", "--backend", "vllm", "--out", str(tmp_path / "a")]]
    if why is None:  # these get past the vllm check only where vllm imports
        cases = [
            ["replay", "--backend", "vllm"],  # no --out for the log
            ["replay", "--backend", "vllm", "--out", str(tmp_path / "b"), "--engine", "vllm:"],
            ["replay", "--backend", "vllm", "--out", str(tmp_path / "c"), "--policy", "dspark"],
            [
                "replay",
                "--backend",
                "vllm",
                "--out",
                str(tmp_path / "d"),
                "--speculative-config",
                "{nope",
            ],  # fmt: skip
            [
                "replay",
                "--backend",
                "vllm",
                "--out",
                str(tmp_path / "e"),
                "--export",
                str(tmp_path),
            ],  # fmt: skip
            [
                "replay",
                "--backend",
                "vllm",
                "--out",
                str(tmp_path / "f"),
                "--engine",
                "vllm:/no/such/dir",
            ],  # fmt: skip
        ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("spectune: error: ") and err.count("\n") == 1, (argv, err)
        if why is not None:
            assert "spectune[vllm]" in err
    assert not any(p.name in "abcdef" for p in tmp_path.iterdir())  # no --out claimed


def test_ctrl_c_during_a_vllm_replay_stops_the_server_and_exits_130(fake, tmp_path):
    """The whole command (``replay --backend vllm``) against the stand-in, interrupted."""
    import signal

    from engine import vllm

    if vllm.missing():
        pytest.skip("the command checks that vllm imports first (run in .venv-vllm)")
    cfg, pids = fake("ok")
    out = tmp_path / "out"
    code = (
        "import os, sys\n"
        f"sys.path[:0] = [{str(Path(__file__).resolve().parents[2])!r}]\n"
        "from engine import serve\n"
        f"serve.SERVE = {serve.SERVE!r}\n"
        f"os.environ.update({dict(cfg.env)!r})\n"
        "from runner.cli import main\n"
        "sys.exit(main(['replay', '--backend', 'vllm', '--workload', 'synthetic', "
        "'--num-requests', '300', '--request-rate', '5', '--max-prompt-tokens', '16', "
        f"'--max-output-tokens', '16', '--out', {str(out)!r}, '--quiet']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    for _ in range(1200):  # the models are exported first, then the server starts
        if (out / "metrics-before.prom").exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert proc.stderr.read() == "spectune: interrupted\n"
    assert _wait_gone(pids)
    assert not (out / "summary.json").exists()  # an interrupted replay writes no results


def test_the_server_logs_its_steps_whatever_level_the_caller_set(monkeypatch):
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "WARNING")  # what engine.vllm.open_llm sets
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    env = serve.ServeConfig("/m").environment()
    assert env["VLLM_LOGGING_LEVEL"] == "INFO" and "VLLM_ENABLE_V1_MULTIPROCESSING" not in env
    assert "--enable-logging-iteration-details" in serve.ServeConfig("/m").argv(1)
