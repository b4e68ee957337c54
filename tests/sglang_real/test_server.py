"""`python -m softthink sglang-serve --device cpu` for real: `/generate`, the OpenAI-compatible client with
`extra_body`, JSON responses, and bad requests that fail alone while the server keeps serving."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from parity import CONFIGS, MODEL, QUESTIONS, assert_same, hf, items, prompts, reference


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict, timeout: float = 300, headers: dict | None = None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@contextlib.contextmanager
def serving(model: str, *args: str, env: dict | None = None, start_timeout: float = 300):
    """`python -m softthink sglang-serve --model MODEL --device cpu ARGS` on a free loopback port until the block
    ends (the whole process group is ended, also when the start fails). Yields {"base", "log", "port"}."""
    port = _free_port()
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"softthink-serve-{port}.log"), "w+")
    cmd = [sys.executable, "-m", "softthink", "sglang-serve", "--model", model, "--device", "cpu", "--port", str(port),
           *args]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, **(env or {})))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + start_timeout
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                pytest.fail(f"server did not start (rc {proc.poll()}):\n{log.read()[-4000:]}")
            time.sleep(1)
        yield {"base": base, "log": log, "port": port}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()


@pytest.fixture(scope="module", params=["A", "B"])
def server(request):
    with serving(MODEL, "--driver", request.param, "--extra", json.dumps({"log_level": "warning"})) as srv:
        yield dict(srv, driver=request.param)


def _request(cfg: dict, uid: int, driver: str) -> dict:
    from softthink.config import GenerationConfig
    from softthink.sglang_glue.launch import build_request

    tok = hf().tokenizer
    return build_request(GenerationConfig.from_dict(cfg), tok.encode("</think>", add_special_tokens=False),
                         [tok.eos_token_id], uid, driver=driver)


def _ids(text):
    from softthink.chat import encode_prompt

    return encode_prompt(hf().tokenizer, text)


def _generate_body(its, driver):
    reqs = [_request(it["config"], it["uid"], driver) for it in its]
    body = {"input_ids": [_ids(it["prompt"]) for it in its], "sampling_params": [r["sampling_params"] for r in reqs]}
    if driver == "A":
        body["custom_logit_processor"] = [r["custom_logit_processor"] for r in reqs]
    return body


def _as_gens(outs):
    from softthink.sglang_glue.launch import _finish_reason, think_stats

    tok = hf().tokenizer
    marker = tok.encode("</think>", add_special_tokens=False)
    return [{"token_ids": o["output_ids"], "finish_reason": _finish_reason(o["meta_info"], [tok.eos_token_id]),
             "think_end_step": think_stats(o["output_ids"], marker, True)[0]} for o in outs]


def test_generate_endpoint_matches_the_reference(server):
    its = items("soft") + items("soft_cold_stop", uid0=10)
    status, outs = _post(server["base"] + "/generate", _generate_body(its, server["driver"]))
    assert status == 200, outs
    assert_same(its, _as_gens(outs), f"server-{server['driver']}")
    json.dumps(outs)  # meta_info holds no tensors
    if server["driver"] == "B":
        assert len(outs[0]["meta_info"]["st_ids"]) == len(outs[0]["output_ids"])


def test_openai_client_with_extra_body(server):
    import openai

    it = items("soft_budget")[0]
    req = _request(it["config"], it["uid"], server["driver"])
    sp = req["sampling_params"]
    no_key = "-".join(["local", "server", "needs", "none"])  # the server runs without --api-key
    client = openai.OpenAI(base_url=server["base"] + "/v1", api_key=no_key)
    extra = {"top_k": sp["top_k"], "min_p": sp["min_p"], "custom_params": sp["custom_params"],
             "skip_special_tokens": False}
    if server["driver"] == "A":
        extra["custom_logit_processor"] = req["custom_logit_processor"]
    r = client.completions.create(model="default", prompt=_ids(it["prompt"]), max_tokens=sp["max_new_tokens"],
                                  temperature=sp["temperature"], top_p=sp["top_p"], extra_body=extra)
    ref = reference([it])[0]
    want = hf().tokenizer.decode(ref.token_ids, skip_special_tokens=False)
    assert r.choices[0].text.strip() == want.replace("<|im_end|>", "").strip()


def _bad_bodies(driver):
    good = _generate_body(items("soft")[:1], driver)

    def with_params(**cp):
        b = json.loads(json.dumps(good))
        b["sampling_params"][0]["custom_params"].update(cp)
        return b

    wide = _generate_body([dict(items("soft")[0], config=dict(CONFIGS["soft"], think={"max_topk": 64}))], driver)
    penalised = json.loads(json.dumps(good))
    penalised["sampling_params"][0]["presence_penalty"] = 0.3
    return {
        "kmax": (wide, "SOFTTHINK_SGLANG_KMAX"),
        "marker": (with_params(st_marker=list(range(100, 112))), "SOFTTHINK_SGLANG_MARKER_MAX"),
        "malformed_cfg": (with_params(st_cfg='{"cold_stop": {"length": -3}}'), "cold_stop.length"),
        "no_marker": (with_params(st_marker=[]), "st_marker"),
        "penalty": (penalised, "presence_penalty"),
    }


@pytest.mark.parametrize("case", ["kmax", "marker", "malformed_cfg", "no_marker", "penalty"])
def test_bad_request_fails_alone_and_the_server_keeps_serving(server, case):
    body, words = _bad_bodies(server["driver"])[case]
    status, out = _post(server["base"] + "/generate", body)
    text = json.dumps(out)
    assert words in text, (status, text[:2000])
    if status == 200:  # the request itself ended with the error
        assert out[0]["meta_info"]["finish_reason"]["type"] == "abort"
    its = items("soft")[1:2]
    status, outs = _post(server["base"] + "/generate", _generate_body(its, server["driver"]))
    assert status == 200, outs
    assert_same(its, _as_gens(outs), f"after-{case}")


def test_malformed_native_parameters_are_refused_by_sglang(server):
    body = _generate_body(items("soft")[:1], server["driver"])
    body["sampling_params"][0]["temperature"] = "hot"
    status, out = _post(server["base"] + "/generate", body)
    assert status >= 400, out
    status, _ = _post(server["base"] + "/generate", _generate_body(items("soft")[:1], server["driver"]))
    assert status == 200
