"""A client of a running soft-thinking SGLang server (`sglang-serve`): the engine `generate_run` uses for SGLang runs.

Every missing sample of a run is sent at once, bounded by a window (a few times the server's
`max_running_requests`), and each result is handed back the moment it finishes, so a continuous-batching server
keeps its slots full instead of waiting for the longest sample of a fixed batch. Requests are plain HTTP
`/generate` calls (one per sample) from a thread pool: the server, not the client, decides how they are batched.

Needs no SGLang in the client's environment: only the tokenizer and `softthink`.
"""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Iterator, Sequence


DEFAULT_WINDOW = 64
REQUEST_TIMEOUT_S = 7 * 24 * 3600  # a 32k-token reasoning sample on a loaded server takes hours, not days


class ServerError(RuntimeError):
    """The server cannot be reached, died, or does not match the run spec."""


def _api_key(env_name: str | None) -> str | None:
    return os.environ.get(env_name) if env_name else None


def http_json(url: str, body: dict | None = None, api_key: str | None = None, timeout: float = 30) -> tuple[int, Any]:
    """GET (body None) or POST a JSON body; (status, parsed JSON). The key travels only in the Authorization header."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read() or b"{}"
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"error": raw.decode(errors="replace")[:2000]}


def server_info(url: str, api_key: str | None = None) -> dict[str, Any]:
    """SGLang's `/server_info` (its server arguments and more)."""
    try:
        # the server asks its schedulers for their state: slow while they decode a large batch
        status, info = http_json(url.rstrip("/") + "/server_info", api_key=api_key, timeout=300)
    except OSError as e:
        raise ServerError(f"no SGLang server answers at {url} ({e})") from None
    if status != 200 or not isinstance(info, dict):
        raise ServerError(f"{url}/server_info answered {status}: {str(info)[:300]}")
    return info


def check_server(url: str, spec: Any, tokenizer: Any, api_key: str | None = None) -> dict[str, Any]:
    """Check that the server at `url` serves `spec`: model, dtype, TP size and driver from its `/server_info`,
    then one short probe request with the spec's own settings (a concept width above the server's kmax, or a
    server started without the plugin, comes back as an abort naming the reason). Raises `ServerError` naming
    every mismatch; returns the server info."""
    info = server_info(url, api_key)
    problems = []
    served = str(info.get("model_path", ""))
    from softthink.sglang_glue.cpu import materialize

    want_paths = {spec.model, materialize(spec.model)} if _is_alias(spec.model) else {spec.model}
    if served not in want_paths and not served.rstrip("/").endswith("/" + spec.model.strip("/")):
        problems.append(f"model: the server has {served!r}, the spec wants {spec.model!r}")
    if spec.dtype != "auto" and str(info.get("dtype")) not in (spec.dtype, "auto"):
        problems.append(f"dtype: the server runs {info.get('dtype')!r}, the spec wants {spec.dtype!r}")
    sv = spec.serving
    if int(info.get("tp_size") or 1) != sv.tp_size:
        problems.append(f"serving.tp_size: the server has {info.get('tp_size')}, the spec wants {sv.tp_size}")
    server_driver = "A" if info.get("enable_custom_logit_processor") else "B"
    if spec.generation.is_soft and server_driver != sv.driver:
        problems.append(f"serving.driver: the server runs Driver {server_driver} (enable_custom_logit_processor="
                        f"{bool(info.get('enable_custom_logit_processor'))}), the spec wants Driver {sv.driver}")
    if not problems and spec.generation.is_soft:
        from softthink.chat import encode_prompt
        from softthink.sglang_glue.launch import checked_request

        req = checked_request(tokenizer, spec.generation, 0, sv.driver, sv.kmax)
        req["sampling_params"]["max_new_tokens"] = 2
        status, out = http_json(url.rstrip("/") + "/generate",
                                {"input_ids": encode_prompt(tokenizer, "1+1="), **req}, api_key, timeout=600)
        fr = (out or {}).get("meta_info", {}).get("finish_reason") if isinstance(out, dict) else None
        if status != 200 or (isinstance(fr, dict) and fr.get("type") == "abort"):
            problems.append(f"probe request refused ({status}): {json.dumps(fr or out)[:400]}")
    if problems:
        raise ServerError(f"the server at {url} does not match the run spec: " + "; ".join(problems))
    return info


def _is_alias(model: str) -> bool:
    from softthink.models import ALIASES

    return model in ALIASES


class ServerEngine:
    """`generate_run`'s engine for a running server: `generate_unordered` sends all prompts (at most `window` in
    flight) and yields `(index, Generation)` as each finishes. A request the server refuses fails alone: it is
    yielded as an error (`RequestFailed`), the others go on. Statistics: `in_flight_mean`, `requests`."""

    in_flight = True  # generate_run: no fixed batches

    def __init__(self, url: str, tokenizer: Any, driver: str = "A", kmax: int = 30, window: int | None = None,
                 api_key_env: str | None = None):
        self.url = url.rstrip("/")
        self.tokenizer = tokenizer
        self.driver, self.kmax = driver, kmax
        self._api_key_env = api_key_env  # the name only: the key is read at each request, never kept
        self.window = int(window or DEFAULT_WINDOW)
        self.requests = 0
        self._busy = 0
        self._busy_area = 0.0  # integral of requests in flight over time
        self._t_last = None
        self._t_first = None
        self._lock = threading.Lock()

    @classmethod
    def for_spec(cls, url: str, spec: Any, tokenizer: Any, window: int | None = None) -> "ServerEngine":
        """Connect to `url` after checking it serves `spec` (`check_server`)."""
        info = check_server(url, spec, tokenizer, _api_key(spec.serving.api_key_env))
        if window is None:  # a few times what the server decodes at once, so its queue never runs dry
            mrr = int(info.get("max_running_requests") or 0)
            window = max(DEFAULT_WINDOW, 4 * mrr)
        return cls(url, tokenizer, spec.serving.driver, spec.serving.kmax, window, spec.serving.api_key_env)

    def _track(self, delta: int) -> None:
        with self._lock:
            now = time.monotonic()
            if self._t_last is not None:
                self._busy_area += self._busy * (now - self._t_last)
            else:
                self._t_first = now
            self._t_last = now
            self._busy += delta

    @property
    def in_flight_mean(self) -> float:
        """Mean number of requests in flight while any was (time-weighted)."""
        span = (self._t_last or 0) - (self._t_first or 0)
        return self._busy_area / span if span > 0 else 0.0

    def _one(self, ids: list[int], cfg: Any, uid: int):
        from softthink.sglang_glue.launch import checked_request, output_to_generation

        req = checked_request(self.tokenizer, cfg, uid, self.driver, self.kmax)
        t0 = time.time()
        self._track(+1)
        try:
            status, out = http_json(self.url + "/generate", {"input_ids": ids, **req},
                                    _api_key(self._api_key_env), timeout=REQUEST_TIMEOUT_S)
        except OSError as e:
            raise ServerError(f"the server at {self.url} stopped answering ({e})") from None
        finally:
            self._track(-1)
        self.requests += 1
        if status != 200 or not isinstance(out, dict):
            return RequestFailed(uid, f"HTTP {status}: {json.dumps(out)[:500]}")
        fr = out.get("meta_info", {}).get("finish_reason")
        if isinstance(fr, dict) and fr.get("type") == "abort":
            return RequestFailed(uid, f"aborted by the server: {fr.get('message') or json.dumps(fr)[:500]}")
        return output_to_generation(self.tokenizer, cfg, len(ids), uid, out, time.time() - t0)

    def generate_unordered(self, prompts: Sequence[Sequence[int]], cfg: Any,
                           sample_uids: Sequence[int]) -> Iterator[tuple[int, Any]]:
        """`(index, Generation or RequestFailed)` in completion order, at most `window` requests in flight."""
        todo = list(enumerate(prompts))
        with ThreadPoolExecutor(max_workers=self.window, thread_name_prefix="softthink-client") as pool:
            running = {}
            try:
                while todo or running:
                    while todo and len(running) < self.window:
                        i, ids = todo.pop(0)
                        running[pool.submit(self._one, [int(t) for t in ids], cfg, sample_uids[i])] = i
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for f in done:
                        yield running.pop(f), f.result()
            finally:
                for f in running:
                    f.cancel()


class RequestFailed:
    """A sample the server refused or aborted (bad settings for this server): recorded nowhere, reported."""

    def __init__(self, uid: int, message: str):
        self.sample_uid, self.message = uid, message

    def __repr__(self) -> str:
        return f"RequestFailed(uid={self.sample_uid}, {self.message})"


__all__ = ["ServerEngine", "ServerError", "RequestFailed", "check_server", "server_info", "http_json"]
