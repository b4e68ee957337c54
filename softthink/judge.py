"""Optional LLM judge, suite policy of docs/design/evaluation.md §7.

* Off by default; never the headline number. Its verdicts feed a separate column ``acc_judge`` = rule OR judge,
  labelled ``<model>/<prompt version>`` (:meth:`Judge.label`).
* One prompt for every method and sample (:data:`PROMPT`): the reference answer plus the answer section = the text
  after the last ``</think>``; when there is none, the last :data:`TAIL_CHARS` characters of the completion (the same
  tail for every method). No finished/unfinished distinction (the official judge's two prompts are not emulated here).
* A pinned, dated model id; temperature 0; strict verdict parsing: after stripping, the reply must be exactly
  ``YES`` or ``NO``, anything else is ``judge_unparsable``.
* The API key is read only from the environment (``OPENAI_API_KEY`` or the variable named by ``api_key_env``) and is
  never written anywhere; a missing key is a recorded failure (``judge_no_key``), as is a missing ``openai`` package
  (``judge_unavailable``) and an API error after bounded retries (``judge_error``). Failures are recorded, never
  dropped: the sample is not-judged-correct.
* Math and GPQA only: code datasets are graded by execution and get no judge column.
* Only samples the rule grader did not accept are sent (``skipped_rule_correct`` otherwise): rule OR judge is the
  same, and no call is spent on them.
* Replies are cached on disk under ``cache_dir/<h[:2]>/<h>.json`` with ``h = sha256(canonical JSON of {prompt, model,
  params})`` (errors are not cached). The judge runs in the grading stage only.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from softthink.answers import THINK_END, answer_section  # noqa: F401  (judge.THINK_END: an old public name)

PROMPT_VERSION = "suite-judge-1"
TAIL_CHARS = 2000
DEFAULT_MODEL = "gpt-4.1-2025-04-14"
DEFAULT_CACHE_DIR = "cache/judge"
PARAMS = {"temperature": 0.0, "max_tokens": 8}

PROMPT = """You are checking the final answer of a response against a reference answer.

Reference answer:
{reference}

Response (final part):
{answer}

Is the final answer given in the response equivalent to the reference answer? Reply with exactly one word: YES or NO."""

OK_STATUSES = ("yes", "no", "skipped_rule_correct")


def answer_part(completion: str, tail_chars: int = TAIL_CHARS) -> tuple[str, str]:
    """(text shown to the judge, which part): after the last ``</think>``, else the last ``tail_chars`` characters."""
    section, has_end = answer_section(completion)
    if has_end:
        return section.strip(), "after_think"
    return completion[-tail_chars:].strip(), "tail"


def build_prompt(reference: str, completion: str) -> tuple[str, str]:
    """(prompt, section) for one sample; identical for every method."""
    answer, section = answer_part(completion)
    return PROMPT.format(reference=str(reference).strip(), answer=answer), section


def parse_verdict(reply: str | None) -> tuple[bool | None, str]:
    """Strict: exactly ``YES`` -> (True, "yes"), exactly ``NO`` -> (False, "no"), else (None, "judge_unparsable")."""
    r = (reply or "").strip()
    if r == "YES":
        return True, "yes"
    if r == "NO":
        return False, "no"
    return None, "judge_unparsable"


class Judge:
    """OpenAI-compatible chat-completions judge. ``client``: anything with ``chat.completions.create(**kwargs)``."""

    def __init__(self, model: str = DEFAULT_MODEL, *, client: Any = None, api_key_env: str = "OPENAI_API_KEY",
                 base_url: str | None = None, max_retries: int = 3, timeout_s: float = 60.0,
                 cache_dir: str | os.PathLike | None = None, sleep: Callable[[float], None] = time.sleep):
        self.model = model
        self.api_key_env = api_key_env
        self.base_url = base_url
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.cache_dir = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR)
        self._client = client
        self._client_error: str | None = None
        self._sleep = sleep

    @classmethod
    def from_spec(cls, spec: Any, client: Any = None) -> "Judge":
        """From a :class:`softthink.runs.JudgeSpec`."""
        return cls(spec.model, client=client, api_key_env=spec.api_key_env, base_url=spec.base_url,
                   max_retries=spec.max_retries, timeout_s=spec.timeout_s, cache_dir=spec.cache_dir)

    def label(self) -> str:
        return f"{self.model}/{PROMPT_VERSION}"

    # -- client --------------------------------------------------------------------------------------------------
    def _get_client(self) -> Any:
        if self._client is not None or self._client_error is not None:
            return self._client
        key = os.environ.get(self.api_key_env)
        if not key:
            self._client_error = "judge_no_key"
            return None
        try:
            import openai
        except ImportError:
            self._client_error = "judge_unavailable"
            return None
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout_s, max_retries=0)
        return self._client

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "<redacted>") if key else text

    # -- cache ---------------------------------------------------------------------------------------------------
    def cache_key(self, prompt: str) -> str:
        body = json.dumps({"prompt": prompt, "model": self.model, "params": PARAMS, "base_url": self.base_url},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()

    def _cache_path(self, h: str) -> Path:
        return self.cache_dir / h[:2] / f"{h}.json"

    def _cache_get(self, h: str) -> dict[str, Any] | None:
        p = self._cache_path(h)
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def _cache_put(self, h: str, body: dict[str, Any]) -> None:
        p = self._cache_path(h)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(body, ensure_ascii=False))
        os.replace(tmp, p)

    # -- calls ---------------------------------------------------------------------------------------------------
    def ask(self, prompt: str) -> dict[str, Any]:
        """One verdict: ``{correct, status, reply, cached, attempts, error}`` (never raises for API failures)."""
        h = self.cache_key(prompt)
        hit = self._cache_get(h)
        if hit is not None and "reply" in hit:
            correct, status = parse_verdict(hit["reply"])
            return {"correct": correct, "status": status, "reply": hit["reply"], "cached": True, "attempts": 0,
                    "error": None}
        client = self._get_client()
        if client is None:
            return {"correct": None, "status": self._client_error, "reply": None, "cached": False, "attempts": 0,
                    "error": f"{self._client_error}: set ${self.api_key_env}" if self._client_error == "judge_no_key"
                    else "the openai package is not installed (pip install softthink[judge])"}
        error = None
        for attempt in range(1, self.max_retries + 2):
            try:
                resp = client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": prompt}],
                                                      **PARAMS)
                reply = resp.choices[0].message.content
            except Exception as e:  # API / network errors: retry, then record
                error = self._redact(f"{type(e).__name__}: {e}")[:500]
                if attempt <= self.max_retries:
                    self._sleep(min(30.0, 2.0 ** (attempt - 1)))
                continue
            self._cache_put(h, {"reply": reply, "model": self.model, "params": PARAMS, "prompt_sha256": h})
            correct, status = parse_verdict(reply)
            return {"correct": correct, "status": status, "reply": reply, "cached": False, "attempts": attempt,
                    "error": None}
        return {"correct": None, "status": "judge_error", "reply": None, "cached": False,
                "attempts": self.max_retries + 1, "error": error}

    def judge_sample(self, *, dataset: str, reference: str, completion: str,
                     rule_correct: bool | None) -> dict[str, Any]:
        """Judge record for one sample (stored under ``"judge"`` in its grade record)."""
        base = {"label": self.label(), "model": self.model, "prompt_version": PROMPT_VERSION, "dataset": dataset}
        if rule_correct is True:
            return {**base, "correct": None, "status": "skipped_rule_correct", "reply": None, "section": None,
                    "cached": False, "attempts": 0, "error": None}
        prompt, section = build_prompt(reference, completion)
        return {**base, **self.ask(prompt), "section": section}
