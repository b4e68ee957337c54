"""Generating a run into its directory, resumably (docs/design/evaluation.md §6).

**Resume**: rerunning the same spec finds the same directory, drops a torn last line of ``samples.jsonl`` (no
trailing newline or invalid JSON: the process died mid-write), and appends only the (item, sample_index) pairs not
yet present: nothing is lost or duplicated. Work is cut into fixed batches (:func:`work_batches`); a batch left
incomplete is regenerated whole, so every sample is computed with the same batch neighbours as in an uninterrupted
run (batched float kernels are not bitwise invariant to batch composition). A sample's
``sample_uid = item_index * 1_000_000 + sample_index`` keys its ``noise.rng = counter`` randomness. Together these
make a resumed run equal to an uninterrupted one on the same machine (with ``noise.rng = global`` the stream depends
on batch order and a resumed batch replays it from its start, which is also equal). An exclusive ``flock`` on
``<run>/.lock`` keeps two generators off the same run.

**In flight** (an engine with ``in_flight = True``: the client of an SGLang server): no fixed batches. Every
missing (item, sample) pair is sent at once, the server batches them as it likes, and each record is appended when
its sample finishes; a resumed run sends exactly the missing pairs. Sampling stays independent of the neighbours
(counter-keyed noise); kernel-level batch invariance is the server's (docs/sglang.md).
"""
from __future__ import annotations

import inspect
import os
import sys
import time
from typing import Any, Iterator, Sequence

from softthink.methods import METHODS
from softthink.runkey import (engine_versions, load_tokenizer, package_version, plan_run, resolve_device,
                              resolve_dtype)
from softthink.runspec import UID_STRIDE, RunSpec
from softthink.store import JsonlAppender, RunDir, read_jsonl, run_lock, sha256_text, write_config, write_trace


def run_versions(engine: str) -> dict[str, Any]:
    """Versions recorded in ``config.json`` (not part of the run key beyond the engine's own)."""
    return {"python": sys.version.split()[0], "softthink": package_version("softthink"), **engine_versions(engine),
            "numpy": package_version("numpy")}


def sample_uid(item_index: int, sample_index: int) -> int:
    """Deterministic per-sample uid; keys the counter RNG so resumed samples are unchanged."""
    return item_index * UID_STRIDE + sample_index


def _build_engine(spec: RunSpec):
    if spec.engine == "sglang" and spec.serving.url:  # a running server: every request in flight
        from softthink.sglang_glue.client import ServerEngine

        return ServerEngine.for_spec(spec.serving.url, spec, load_tokenizer(spec.model))
    if spec.engine == "sglang":  # an in-process engine of its own, fixed batches (the sglang extra)
        import dataclasses

        from softthink.serving import launch_options
        from softthink.sglang_glue.launch import SGLangEngine

        options = dataclasses.asdict(launch_options(spec))
        for k in ("model_path", "host", "port"):
            options.pop(k)
        return SGLangEngine(spec.model, **{k: v for k, v in options.items() if v is not None})
    from softthink.engine import HFEngine
    from softthink.models import load_model

    device = resolve_device(spec.device)
    model, tok = load_model(spec.model, device=device, dtype=resolve_dtype(spec.dtype, device))
    return HFEngine(model, tok)


def _prompt_for(spec: RunSpec, tokenizer: Any, item: Any, sample_index: int, cfg: Any) -> tuple[str, dict[str, Any]]:
    """Rendered prompt text and extra record fields (GPQA permutation and gold letter)."""
    from softthink import prompts
    from softthink.data import DATASETS

    extra: dict[str, Any] = {}
    question = None
    if DATASETS[spec.dataset].kind == "gpqa":
        question, gold, perm = prompts.gpqa_options(item, spec.gpqa_options, base_seed=cfg.seed,
                                                    sample_index=sample_index)
        extra = {"gpqa_gold": gold, "gpqa_perm": perm}
    text = prompts.render_prompt(tokenizer, spec.dataset, item, nothinking=METHODS[cfg.method].nothinking,
                                 question=question)
    return text, extra


def _prompt_ids(engine: Any, tokenizer: Any, text: str) -> list[int]:
    """Prompt ids, handed to the engine as ids so the recorded hash is of exactly what it fed.

    The engine's own ``encode_prompt`` when it has one, else :func:`softthink.chat.encode_prompt` (no special
    tokens added: templates carry BOS themselves).
    """
    fn = getattr(engine, "encode_prompt", None)
    if callable(fn):
        return list(fn(text))
    from softthink.chat import encode_prompt

    return list(encode_prompt(tokenizer, text))


def _ids_hash(ids: Sequence[int]) -> str:
    return sha256_text(",".join(map(str, ids)))


def _iter_generations(engine: Any, prompts: list[list[int]], cfg: Any, uids: list[int]) -> Iterator[tuple[int, Any]]:
    """``engine.generate_iter`` (HFEngine; its own progress bar off), or ``engine.generate`` (SGLangEngine)."""
    it = getattr(engine, "generate_iter", None)
    if it is None:
        yield from enumerate(engine.generate(prompts, cfg, sample_uids=uids))
        return
    quiet = {"progress": False} if "progress" in inspect.signature(it).parameters else {}
    yield from it(prompts, cfg, sample_uids=uids, **quiet)


def work_batches(items: Sequence[Any], n: int, batch_size: int) -> list[list[tuple[Any, int]]]:
    """The run's fixed batches: the item-major (item, sample_index) list cut into ``batch_size`` chunks.

    The partition depends only on the run key (slice, n, batch size), never on what is already done, so a batch
    is always generated with the same neighbours (same padding, same kernel shapes) -- bitwise the same outputs.
    """
    work = [(it, j) for it in items for j in range(n)]
    bs = max(1, batch_size)
    return [work[k:k + bs] for k in range(0, len(work), bs)]


def generate_run(spec: RunSpec, engine: Any = None, progress: bool = True,
                 runs_dir: str | os.PathLike | None = None) -> RunDir:
    """Generate every missing sample of ``spec`` into its run directory (resumable; see the module docstring).

    Work is done in the fixed batches of :func:`work_batches`. A batch with no record is generated; a batch that
    a killed run left incomplete is generated again **whole** (same neighbours, hence the same outputs as an
    uninterrupted run: batched float kernels are not invariant to batch composition), and only its missing samples
    are appended; its already stored samples are compared with the regenerated ones and a mismatch is reported on
    stderr (non-deterministic kernels). At most ``batch_size - 1`` samples are recomputed per interruption.

    ``engine``: anything with ``tokenizer`` and ``generate_iter(prompts, cfg, sample_uids=...)`` yielding
    ``(index, Generation)``; None builds ``HFEngine`` from ``spec.model`` (only if there is work left).
    """
    from softthink.data import load_dataset, select

    cfg = spec.generation
    dataset = load_dataset(spec.dataset)
    tokenizer = getattr(engine, "tokenizer", None) if engine is not None else load_tokenizer(spec.model)
    rd = plan_run(spec, tokenizer=tokenizer, dataset=dataset, runs_dir=runs_dir)
    items = select(dataset.items, spec.start, spec.end, spec.limit)
    with run_lock(rd.path):
        write_config(rd, run_versions(spec.engine))
        existing = read_jsonl(rd.samples_path, repair=True)
        stored = {(int(r["item_index"]), int(r["sample_index"])): r for r in existing}
        if len(stored) != len(existing):
            raise RuntimeError(f"{rd.samples_path}: duplicate (item, sample) records")
        batches = [b for b in work_batches(items, spec.n, cfg.batch_size)
                   if any((it.index, j) not in stored for it, j in b)]
        total = len(items) * spec.n
        if not batches:
            return rd
        if engine is None:
            engine = _build_engine(spec)
            tokenizer = engine.tokenizer
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=len(stored), desc=rd.path.name, unit="sample")
        if getattr(engine, "in_flight", False):
            missing = [(it, j) for b in batches for it, j in b if (it.index, j) not in stored]
            _generate_in_flight(spec, engine, tokenizer, rd, missing, stored, bar)
            return rd
        mismatches = 0
        with JsonlAppender(rd.samples_path) as out:
            for work in batches:
                prompts_, extras, ids_hashes, uids = _requests(spec, engine, tokenizer, work)
                for i, gen in _iter_generations(engine, prompts_, cfg, uids):
                    it, j = work[i]
                    rec = _sample_record(it, j, uids[i], ids_hashes[i], extras[i], gen)
                    trace = rec.pop("trace", None)
                    old = stored.get((it.index, j))
                    if old is not None:  # regenerated only to keep the batch whole
                        if old.get("token_ids") != rec.get("token_ids"):
                            mismatches += 1
                        continue
                    if trace is not None:
                        write_trace(rd, it.index, j, trace)
                    out.write(rec)
                    stored[(it.index, j)] = rec
                    if bar is not None:
                        bar.update(1)
        if bar is not None:
            bar.close()
        if mismatches:
            print(f"warning: {mismatches} stored sample(s) differ from their regeneration in the same batch "
                  f"(non-deterministic kernels?); the stored ones were kept", file=sys.stderr)
    return rd


def _requests(spec: RunSpec, engine: Any, tokenizer: Any, work: list) -> tuple[list, list, list, list]:
    """For (item, sample_index) pairs: prompt ids, extra record fields, prompt-id hashes and sample uids."""
    prompts_, extras, ids_hashes = [], [], []
    for it, j in work:
        text, extra = _prompt_for(spec, tokenizer, it, j, spec.generation)
        ids = _prompt_ids(engine, tokenizer, text)
        prompts_.append(ids)
        ids_hashes.append(_ids_hash(ids))
        extras.append({"prompt_text_sha256": sha256_text(text), **extra})
    return prompts_, extras, ids_hashes, [sample_uid(it.index, j) for it, j in work]


def _generate_in_flight(spec: RunSpec, engine: Any, tokenizer: Any, rd: RunDir, missing: list, stored: dict,
                        bar: Any) -> None:
    """Every missing (item, sample) pair sent at once (the engine bounds what is in flight); each record appended
    the moment its sample finishes. The server decides the batches, so there are no fixed batches to keep whole:
    a resumed run sends exactly the missing pairs. A sample the server refuses fails alone; the run then ends with
    an error naming them (the others are stored, a rerun retries only the failed ones)."""
    cfg = spec.generation
    prompts_, extras, ids_hashes, uids = _requests(spec, engine, tokenizer, missing)
    failed, tokens, t0 = [], 0, time.monotonic()
    with JsonlAppender(rd.samples_path) as out:
        for i, gen in engine.generate_unordered(prompts_, cfg, uids):
            it, j = missing[i]
            if not hasattr(gen, "token_ids"):  # a RequestFailed: this sample only
                failed.append(f"item {it.index} sample {j}: {gen.message}")
                continue
            rec = _sample_record(it, j, uids[i], ids_hashes[i], extras[i], gen)
            rec.pop("trace", None)
            out.write(rec)
            stored[(it.index, j)] = rec
            tokens += rec.get("num_tokens") or 0
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{tokens / max(1e-9, time.monotonic() - t0):.1f} tok/s, "
                                    f"{getattr(engine, 'in_flight_mean', 0):.1f} in flight")
    if bar is not None:
        bar.close()
    if failed:
        raise RuntimeError(f"{len(failed)} sample(s) of {rd.path.name} were refused by the server (the other "
                           f"{len(missing) - len(failed)} are stored): " + "; ".join(failed[:5]))


def _sample_record(item: Any, sample_index: int, uid: int, ids_hash: str, extra: dict[str, Any],
                   gen: Any) -> dict[str, Any]:
    """One ``samples.jsonl`` line: identifiers, prompt hashes, then every field of the engine's ``Generation``."""
    g = gen.to_dict() if hasattr(gen, "to_dict") else dict(gen)
    if g.get("sample_uid") is not None and int(g["sample_uid"]) != uid:
        raise RuntimeError(f"engine returned sample_uid {g['sample_uid']} for item {item.index} sample "
                           f"{sample_index}, expected {uid}")
    rec: dict[str, Any] = {
        "item_index": item.index,
        "item_id": item.id,
        "sample_index": sample_index,
        "sample_uid": uid,
        "prompt_ids_sha256": ids_hash,
        **extra,
    }
    for k in ("text", "token_ids", "num_tokens", "num_thinking_tokens", "num_answer_tokens", "finish_reason",
              "think_end_reason", "think_end_step", "wall_time", "prompt_tokens"):
        rec[k] = g.get(k)
    if rec["num_tokens"] is None and rec["token_ids"] is not None:
        rec["num_tokens"] = len(rec["token_ids"])
    for k, v in g.items():  # engine flags not listed above (cold-stop / abort counters, retractions, ...)
        if k not in rec and k not in ("sample_uid", "prompt_ids"):
            rec[k] = v
    return rec

