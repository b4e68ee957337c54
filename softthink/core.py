"""The per-step soft-thinking math, written once (docs/design/algorithm.md §2-§5). Both engines call `step()`.

Pure torch, batched over rows, no host synchronisation and no data-dependent shapes, so the same code runs in
the transformers engine, inside the SGLang driver and under CUDA graphs. Every per-row knob is a tensor (`Params`),
so rows of one batch may carry different settings.

One THINK step for a row, given fp32 logits z (docs/design/algorithm.md S1-S10):

    p   = softmax(z / T)                                   S1
    H   = -sum_v p_v ln max(p_v, 1e-12)                    S2   (full vocabulary, before filtering)
    p~  = min_p(top_p(top_k(p)))  (each stage renormalised) S3   sequential; "joint" = stock SGLang order
    (w, idx) = topK(p~, K),  w <- w / sum(w)               S5   the concept token
    y   = idx_1  (= argmax z without noise)                S7   the visible token
    e'  = sum_i w_i E[idx_i]                               S10  the next input embedding

Cold Stop (§5) counts consecutive steps with H < tau and forces the think-end marker after L of them; the
think end (§4) is detected only as the recorded (rank-1 or forced) token.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from softthink.methods import METHODS

THINK_EPS_T = 1e-6  # temperatures below this mean greedy (official `< 1e-6` rule)

# integer codes for per-row switches (tensors cannot hold strings)
METHOD_CODES = {name: m.code for name, m in METHODS.items()}
NOISE_CODES = {"none": 0, "gumbel": 1, "dirichlet": 2}
ROUTER_SOURCES = {"filtered": 0, "tempered": 1, "raw": 2}
SALT_DIRICHLET, SALT_GUMBEL, SALT_SAMPLE_THINK, SALT_SAMPLE_ANSWER = 1, 2, 3, 4


# ---------------------------------------------------------------------------------------------------------------
# per-row parameters and state


@dataclass
class Params:
    """Per-row settings as tensors of shape [B] (`marker` is [B, m]). Build with `Params.from_config`."""

    method: torch.Tensor  # METHOD_CODES
    temperature: torch.Tensor  # thinking T
    top_k: torch.Tensor  # <= 0 means all
    top_p: torch.Tensor
    min_p: torch.Tensor
    sequential: torch.Tensor  # bool: sequential (soft) vs joint (stock) filter order in THINK
    max_topk: torch.Tensor  # K (<= the static concept width)
    entropy_raw: torch.Tensor  # bool: entropy of softmax(z) instead of softmax(z/T)
    entropy_norm: torch.Tensor  # bool: divide H by ln V
    tau: torch.Tensor  # Cold Stop threshold (0 = off)
    cold_len: torch.Tensor  # L
    budget: torch.Tensor  # 0 = off
    answer_greedy_argmax: torch.Tensor  # bool: answer.mode == greedy_argmax
    answer_temperature: torch.Tensor  # effective answer-phase temperature (0 = argmax)
    answer_top_k: torch.Tensor
    answer_top_p: torch.Tensor
    answer_min_p: torch.Tensor
    answer_sequential: torch.Tensor
    answer_abort: torch.Tensor  # bool: cold_stop.answer_phase == abort
    noise: torch.Tensor  # NOISE_CODES
    gumbel_tau: torch.Tensor
    dirichlet_alpha: torch.Tensor
    seed: torch.Tensor  # int64
    marker: torch.Tensor  # [B, m] ids of the think-end string
    # method parameters (docs/design/algorithm.md §9)
    moi_beta: torch.Tensor
    moi_k: torch.Tensor  # candidates K_m of the MoI mixture
    router_threshold: torch.Tensor
    router_argmax: torch.Tensor  # bool
    router_source: torch.Tensor  # ROUTER_SOURCES
    swir_alpha0: torch.Tensor
    swir_beta0: torch.Tensor
    swir_window: torch.Tensor
    swir_cap: torch.Tensor  # 0 = no cap
    swir_answer_tokens: torch.Tensor
    max_new: torch.Tensor  # max_new_tokens (SwiReasoning's schedules)
    open_id: torch.Tensor  # last id of "<think>" (-1 if unknown)
    newline_id: torch.Tensor  # id of "\n" (-1 if unknown)

    @classmethod
    def from_config(cls, cfg, batch: int, marker_ids: list[int], device="cpu", open_id: int = -1,
                    newline_id: int = -1) -> "Params":
        """Resolve a GenerationConfig into per-row tensors (all rows share cfg)."""
        t, a = cfg.think, cfg.answer
        # methods whose visible token is sampled in every phase with the thinking parameters (no answer section)
        method = METHODS[cfg.method]
        discrete = method.sampled_output
        greedy_discrete = cfg.method == "cot_greedy" or (discrete and t.temperature < THINK_EPS_T)
        # answer temperature (docs/design/algorithm.md §3, B2): with source "thinking" the answer reuses the thinking T,
        # except that T_a < 1e-6 means greedy.
        if a.temperature_source == "thinking":
            t_ans = 0.0 if a.temperature < THINK_EPS_T else t.temperature
        else:
            t_ans = a.temperature
        if discrete:  # these methods sample the whole output with the thinking parameters
            t_ans = 0.0 if greedy_discrete else t.temperature
        f = lambda v, dt=torch.float32: torch.full((batch,), v, dtype=dt, device=device)  # noqa: E731
        i = lambda v: f(int(v), torch.int64)  # noqa: E731
        b = lambda v: f(bool(v), torch.bool)  # noqa: E731
        return cls(
            method=i(method.code),
            temperature=f(0.0 if greedy_discrete else t.temperature),
            top_k=i(t.top_k),
            top_p=f(t.top_p),
            min_p=f(t.min_p),
            sequential=b(t.filter_order == "sequential"),
            max_topk=i(concept_k(cfg)),
            entropy_raw=b(cfg.entropy.temperature == "raw" or cfg.method == "swir"),  # SwiR: untempered entropy
            entropy_norm=b(cfg.entropy.normalise == "log_vocab"),
            tau=f(cfg.cold_stop.threshold if method.cold_stop else 0.0),
            cold_len=i(cfg.cold_stop.length),
            budget=i(t.budget),
            answer_greedy_argmax=b(not discrete and a.mode == "greedy_argmax"),
            answer_temperature=f(t_ans),
            answer_top_k=i(t.top_k if discrete else a.top_k),
            answer_top_p=f(t.top_p if discrete else a.top_p),
            answer_min_p=f(t.min_p if discrete else a.min_p),
            answer_sequential=b((t.filter_order if discrete else a.filter_order) == "sequential"),
            answer_abort=b(method.cold_stop and cfg.cold_stop.answer_phase == "abort"),
            noise=i(NOISE_CODES[cfg.noise.kind] if not discrete else 0),
            gumbel_tau=f(cfg.noise.gumbel_tau),
            dirichlet_alpha=f(cfg.noise.dirichlet_alpha),
            seed=i(cfg.seed),
            marker=torch.tensor([list(marker_ids)] * batch, dtype=torch.int64, device=device),
            moi_beta=f(cfg.moi.beta),
            moi_k=i(cfg.moi.top_k),
            router_threshold=f(cfg.thinkrouter.threshold),
            router_argmax=b(cfg.thinkrouter.discrete == "argmax"),
            router_source=i(ROUTER_SOURCES[cfg.thinkrouter.confidence_source]),
            swir_alpha0=f(cfg.swir.alpha0),
            swir_beta0=f(cfg.swir.beta0),
            swir_window=i(cfg.swir.window),
            swir_cap=i(cfg.swir.max_switches),
            swir_answer_tokens=i(cfg.swir.answer_tokens),
            max_new=i(cfg.max_new_tokens),
            open_id=i(open_id),
            newline_id=i(newline_id),
        )

    def index(self, rows: torch.Tensor) -> "Params":
        return Params(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


@dataclass
class State:
    """Per-row phase machine state, tensors of shape [B] (`recent` is [B, m])."""

    think: torch.Tensor  # bool: THINK phase
    cnt: torch.Tensor  # int64: consecutive low-entropy steps (Cold Stop)
    n_think: torch.Tensor  # int64: THINK tokens recorded so far
    force: torch.Tensor  # int64: >0 while forcing marker[force] as the next recorded token
    recent: torch.Tensor  # [B, m] last m recorded tokens (multi-token marker detection)
    abort: torch.Tensor  # bool: answer-phase abort pending (honoured after the next token)
    step: torch.Tensor  # int64: steps taken (counter-RNG key)
    # SwiReasoning only (None elsewhere): mode, reference entropy, steps in block, latent->explicit switches, and
    # the answer tokens still allowed after the switch cap forced the think end (-1 = no limit)
    latent: torch.Tensor | None = None
    ref_h: torch.Tensor | None = None
    block: torch.Tensor | None = None
    switches: torch.Tensor | None = None
    answer_left: torch.Tensor | None = None

    @classmethod
    def new(cls, batch: int, marker_len: int, device="cpu", swir: bool = False) -> "State":
        z = torch.zeros(batch, dtype=torch.int64, device=device)
        st = cls(think=torch.ones(batch, dtype=torch.bool, device=device), cnt=z.clone(), n_think=z.clone(),
                 force=z.clone(), recent=torch.full((batch, marker_len), -1, dtype=torch.int64, device=device),
                 abort=torch.zeros(batch, dtype=torch.bool, device=device), step=z.clone())
        if swir:
            st.latent = torch.ones(batch, dtype=torch.bool, device=device)
            st.ref_h, st.block, st.switches = torch.zeros(batch, device=device), z.clone(), z.clone()
            st.answer_left = torch.full((batch,), -1, dtype=torch.int64, device=device)
        return st

    def index(self, rows: torch.Tensor) -> "State":
        return State(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[rows])
                        for f in fields(self)})


@dataclass
class StepOut:
    token: torch.Tensor  # [B] recorded token y_t
    raw_token: torch.Tensor  # [B] token before Cold Stop / budget replacement (finish checks use it, §5.5)
    in_ids: torch.Tensor  # [B, K] next input: ids ...
    in_w: torch.Tensor  # [B, K] ... and weights (one-hot in column 0 for discrete inputs)
    entropy: torch.Tensor  # [B] H_t
    was_think: torch.Tensor  # [B] bool: the step was a THINK step
    ended: torch.Tensor  # [B] bool: thinking ended at this step
    cold: torch.Tensor  # [B] bool: Cold Stop fired at this step
    budget_hit: torch.Tensor  # [B] bool: the thinking budget forced the marker at this step
    abort_now: torch.Tensor  # [B] bool: the answer-phase abort was flagged at this step
    abort_finish: torch.Tensor  # [B] bool: finish after this token (abort flagged at the previous step)
    use_hidden: torch.Tensor  # [B] bool: feed the last hidden state instead of in_ids/in_w (COCONUT-TF)
    in_dense: torch.Tensor | None = None  # [B, V] full-vocabulary input weights (SwiReasoning batches only)
    soft_input: torch.Tensor | None = None  # [B] bool: the next input is not the one-hot of `token`
    cap_hit: torch.Tensor | None = None  # [B] bool: the SwiReasoning switch cap forced the think end
    limit_finish: torch.Tensor | None = None  # [B] bool: finish after this token (SwiR answer allowance used up)


# ---------------------------------------------------------------------------------------------------------------
# counter-based randomness: noise keyed by (seed, sample uid, step, slot), independent of batch composition


_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for 0 <= x < 2^32 without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return ((x * lo) + (((x * hi) & 0xFFFF) << 16)) & _M32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (lowbias32), elementwise on int64 tensors holding values < 2^32."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def row_keys(seed: torch.Tensor, uid: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per row from (seed, sample uid, step)."""
    h = _hash32(seed & _M32)
    h = _hash32(h ^ (seed >> 32) ^ 0x9E3779B9)
    h = _hash32(h ^ (uid & _M32))
    h = _hash32(h ^ ((uid >> 32) & _M32) ^ 0x85EBCA6B)
    return _hash32(h ^ (step & _M32))


def counter_uniform(keys: torch.Tensor, n: int, salt: int) -> torch.Tensor:
    """[B, n] uniforms in (0, 1), a pure function of (key, column, salt)."""
    col = torch.arange(n, device=keys.device, dtype=torch.int64)
    h = _hash32(keys[:, None] ^ _hash32(col * 2 + 1 + (salt << 24)))
    h2 = _hash32(h ^ 0x68E31DA4)
    # 53-bit resolution from two hashes, then float32 (clamped away from 0 and 1)
    u = ((h >> 5).double() * 67108864.0 + (h2 >> 6).double() + 0.5) / 9007199254740992.0  # 27 + 26 bits
    return u.float().clamp(1e-7, 1.0 - 1e-7)


def counter_normal(keys: torch.Tensor, n: int, salt: int) -> torch.Tensor:
    u = counter_uniform(keys, 2 * n, salt)
    u1, u2 = u[:, :n], u[:, n:]
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)


# ---------------------------------------------------------------------------------------------------------------
# the math of one step


def entropy(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """H = -sum p ln max(p, 1e-12) with p = softmax(z / T), full vocabulary, in nats (S2)."""
    p = torch.softmax(logits / temperature[:, None], dim=-1)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def filter_sorted(vals: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor,
                  sequential: torch.Tensor) -> torch.Tensor:
    """Keep-mask over probabilities sorted in descending order (S3). Every filter keeps a prefix.

    top-k keeps i < k; top-p keeps i while the mass before i, divided by the top-k mass M_k (sequential) or not
    (joint, stock SGLang), is < top_p; min-p keeps p_(i) >= min_p * p_(1). The sequential top-p acts on the
    renormalised top-k distribution; min-p is scale-invariant so it needs no renormalisation.
    """
    width = vals.shape[-1]
    pos = torch.arange(width, device=vals.device)
    k = torch.where(top_k > 0, top_k, torch.full_like(top_k, 1 << 40))
    keep_k = pos[None, :] < k[:, None]
    csum = torch.cumsum(vals, dim=-1)
    before = csum - vals
    k_idx = (k.clamp(max=width) - 1)[:, None]
    mass_k = torch.where(k[:, None] <= width, csum.gather(1, k_idx), torch.ones_like(k_idx, dtype=vals.dtype))
    before = torch.where(sequential[:, None], before / mass_k, before)
    keep_p = before < top_p[:, None]
    keep_m = vals >= min_p[:, None] * vals[:, :1]
    return keep_k & keep_p & keep_m


def sorted_probs(logits: torch.Tensor, temperature: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`width` of softmax(z/T), sorted descending. Greedy rows (T < 1e-6) use T = 1 (only rank 1 matters)."""
    top_z, idx = torch.topk(logits, width, dim=-1, sorted=True)
    return probs_at(logits, top_z, temperature), idx


def probs_at(logits: torch.Tensor, top_z: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """softmax(z/T) at the already sorted top logits: the order of z is the order of p for every T > 0, so one
    top-k serves every temperature (exp(z_i/T - logsumexp(z/T)))."""
    t = torch.where(temperature < THINK_EPS_T, torch.ones_like(temperature), temperature)[:, None]
    return torch.exp(top_z / t - torch.logsumexp(logits / t, dim=-1, keepdim=True))


def normalise(w: torch.Tensor) -> torch.Tensor:
    return w / w.sum(-1, keepdim=True).clamp_min(1e-30)


def truncate(vals, idx, keep, k: torch.Tensor, width_k: int):
    """Concept truncation (S5): the first K kept entries (per-row K <= width_k), renormalised."""
    w = (vals * keep)[:, :width_k]
    w = torch.where(torch.arange(width_k, device=w.device)[None, :] < k[:, None], w, torch.zeros_like(w))
    return normalise(w), idx[:, :width_k]


def gumbel_perturb(w: torch.Tensor, ids: torch.Tensor, tau: torch.Tensor, u: torch.Tensor):
    """Gumbel-Softmax on the concept (§9.7): w' = softmax((ln w + g) / tau), zero weights stay zero; re-sorted."""
    g = -torch.log(-torch.log(u))
    logits = (torch.log(w) + g) / tau[:, None]  # log 0 = -inf keeps zeros at zero
    w2 = torch.softmax(logits, dim=-1)
    w2 = torch.where(w > 0, w2, torch.zeros_like(w2))
    w2, order = torch.sort(w2, dim=-1, descending=True)
    return w2, ids.gather(1, order)


def dirichlet_perturb(p: torch.Tensor, alpha: torch.Tensor, keys: torch.Tensor, tries: int = 8) -> torch.Tensor:
    """Dirichlet noise on the support of p (§9.7): q = Gamma(alpha * p_v) normalised over {p_v > 0}.

    Gamma draws use Marsaglia-Tsang with counter-based normals/uniforms (`tries` vectorised proposals, the first
    accepted one is used; acceptance is > 95 % per proposal) and the boost Gamma(a) = Gamma(a + 1) * U^(1/a), all in
    log space so tiny concentrations underflow to weight 0 instead of NaN.
    """
    b, n = p.shape
    a = (alpha[:, None] * p).clamp_min(1e-30)
    d = (a + 1.0) - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    x = counter_normal(keys, n * tries, SALT_DIRICHLET).view(b, n, tries)
    u = counter_uniform(keys, n * tries + n, SALT_DIRICHLET + 16)
    u_acc, u_boost = u[:, : n * tries].view(b, n, tries), u[:, n * tries:]
    v = (1.0 + c[..., None] * x) ** 3
    ok = (v > 0) & (torch.log(u_acc) < 0.5 * x * x + d[..., None] - d[..., None] * v
                    + d[..., None] * torch.log(v.clamp_min(1e-30)))
    first = torch.argmax(ok.int(), dim=-1, keepdim=True)  # first accepted proposal (0 if none: never in practice)
    log_g = torch.log(d) + torch.log(v.gather(2, first).squeeze(-1).clamp_min(1e-30))  # log Gamma(a + 1)
    log_g = log_g + torch.log(u_boost) / a
    log_g = torch.where(p > 0, log_g, torch.full_like(log_g, -math.inf))
    return torch.softmax(log_g, dim=-1)


def sample_sorted(vals: torch.Tensor, idx: torch.Tensor, keep: torch.Tensor, greedy: torch.Tensor,
                  u: torch.Tensor) -> torch.Tensor:
    """Categorical sample from the kept entries by Gumbel-max (exact, and batch-invariant with counter uniforms)."""
    scores = torch.log(torch.where(keep, vals, torch.zeros_like(vals))) - torch.log(-torch.log(u))
    choice = torch.argmax(scores, dim=-1)
    choice = torch.where(greedy, torch.zeros_like(choice), choice)
    return idx.gather(1, choice[:, None]).squeeze(1)


def mix_embeddings(weight: torch.Tensor, ids: torch.Tensor, w: torch.Tensor, fp32: bool = False) -> torch.Tensor:
    """e = sum_i w_i E[ids_i] (S10). `fp32=False` reproduces the official numerics: rows gathered in the model
    dtype, multiplied by fp32 weights, the products cast to the model dtype before the sum. One-hot weights give
    E[id] bit for bit."""
    return mix_rows(weight[ids], w, fp32)


def mix_rows(rows: torch.Tensor, w: torch.Tensor, fp32: bool = False) -> torch.Tensor:
    """The S10 sum on already gathered rows [B, K, D] (the SGLang tensor-parallel path gathers them itself)."""
    acc = torch.promote_types(rows.dtype, torch.float32)  # fp32 products (fp64 for float64 models)
    prod = rows.to(acc) * w[..., None].to(acc)
    if fp32:
        return prod.sum(1).to(rows.dtype)
    return prod.to(rows.dtype).sum(1)


# ---------------------------------------------------------------------------------------------------------------
# the phase machine


def step(logits: torch.Tensor, state: State, prm: Params, keys: torch.Tensor, *, width: int, concept_width: int,
         dirichlet: bool = False, gumbel: bool = True, swir: bool = False, uniforms=None) -> tuple[StepOut, State]:
    """One generation step for every row. Returns the recorded tokens, the next inputs and the new state.

    `width`: static top-k width for filtering (>= every finite top_k and >= concept_width; = V when some row
    uses top_k = -1). `concept_width`: static K (>= every row's max_topk). `keys`: counter-RNG keys from
    `row_keys(seed, uid, step)`. Static flags: `dirichlet`/`gumbel` (some row may use that noise), `swir` (the batch
    runs SwiReasoning: full-vocabulary inputs in `in_dense`). `uniforms(n, salt) -> [B, n]` replaces the counter
    RNG (noise.rng = global).
    """
    rand = uniforms or (lambda n, salt: counter_uniform(keys, n, salt))
    z = logits.float()
    bsz, vocab = z.shape
    think, forcing = state.think, state.force > 0
    method = prm.method
    is_cot, is_moi = method == METHOD_CODES["cot_sample"], method == METHOD_CODES["moi"]
    is_swir, is_router = method == METHOD_CODES["swir"], method == METHOD_CODES["thinkrouter"]
    concept_method = ~(is_cot | is_moi | is_swir)  # soft, coconut_tf, avg_embedding, thinkrouter

    # S1-S2: entropy on the full vocabulary after temperature (greedy rows: T = 1)
    t_think = torch.where(prm.temperature < THINK_EPS_T, torch.ones_like(prm.temperature), prm.temperature)
    t_h = torch.where(prm.entropy_raw, torch.ones_like(t_think), t_think)
    h = entropy(z, t_h)
    h = torch.where(prm.entropy_norm, h / math.log(vocab), h)

    # S3: THINK-phase distribution, sorted and filtered
    top_z, idx = torch.topk(z, width, dim=-1, sorted=True)  # one sort serves both phases' temperatures
    vals = probs_at(z, top_z, prm.temperature)
    keep = filter_sorted(vals, prm.top_k, prm.top_p, prm.min_p, prm.sequential)
    kept = torch.where(keep, vals, torch.zeros_like(vals))

    # S4: Dirichlet noise on the support, then re-sort
    q_sorted, idx_q = kept, idx
    if dirichlet:
        dir_rows = concept_method & (prm.noise == NOISE_CODES["dirichlet"])
        q = dirichlet_perturb(normalise(kept), prm.dirichlet_alpha, keys)
        q = torch.where(dir_rows[:, None], q, kept)
        q_sorted, order = torch.sort(q, dim=-1, descending=True)
        idx_q = idx.gather(1, order)

    # S5: concept top-K
    w, ids = truncate(q_sorted, idx_q, q_sorted > 0, prm.max_topk, concept_width)

    # S6: Gumbel noise on the concept weights
    if gumbel:
        gum_rows = concept_method & (prm.noise == NOISE_CODES["gumbel"])
        w_g, ids_g = gumbel_perturb(w, ids, prm.gumbel_tau, rand(concept_width, SALT_GUMBEL))
        w = torch.where(gum_rows[:, None], w_g, w)
        ids = torch.where(gum_rows[:, None], ids_g, ids)
    # average-embedding ablation (§9.5): uniform weights over the non-zero top-K entries
    avg_rows = method == METHOD_CODES["avg_embedding"]
    w = torch.where(avg_rows[:, None], normalise((w > 0).to(w.dtype)), w)

    # S7: the visible THINK token: rank 1 of the concept, or a sample (CoT, MoI, SwiR, unconfident ThinkRouter)
    greedy_think = prm.temperature < THINK_EPS_T
    sampled = sample_sorted(vals, idx, keep, greedy_think, rand(width, SALT_SAMPLE_THINK))
    y_think = torch.where(concept_method, ids[:, 0], sampled)
    # ThinkRouter (§9.10): soft step when the top probability is confident, discrete step otherwise
    p_raw_max = torch.exp(top_z[:, 0] - torch.logsumexp(z, dim=-1))  # max softmax(z) without a second softmax
    conf = torch.where(prm.router_source == ROUTER_SOURCES["filtered"], normalise(kept)[:, 0],
                       torch.where(prm.router_source == ROUTER_SOURCES["tempered"], vals[:, 0], p_raw_max))
    routed_discrete = is_router & (conf < prm.router_threshold)
    y_think = torch.where(routed_discrete, torch.where(prm.router_argmax, idx[:, 0], sampled), y_think)

    # §3: the ANSWER-phase token
    vals_a, idx_a = probs_at(z, top_z, prm.answer_temperature), idx
    keep_a = filter_sorted(vals_a, prm.answer_top_k, prm.answer_top_p, prm.answer_min_p, prm.answer_sequential)
    greedy_a = prm.answer_temperature < THINK_EPS_T
    y_answer = sample_sorted(vals_a, idx_a, keep_a, greedy_a, rand(width, SALT_SAMPLE_ANSWER))
    y_answer = torch.where(concept_method & prm.answer_greedy_argmax, ids[:, 0], y_answer)

    # forced marker tokens (Cold Stop / budget / switch cap with a multi-token marker)
    m = prm.marker.shape[1]
    forced_tok = prm.marker.gather(1, state.force.clamp(max=m - 1)[:, None]).squeeze(1)
    raw = torch.where(think, y_think, y_answer)
    raw = torch.where(forcing, forced_tok, raw)
    recent_raw = torch.cat([state.recent[:, 1:], raw[:, None]], dim=1)
    natural_end = think & (recent_raw == prm.marker).all(-1)  # a marker the model produced wins over forcing

    # SwiReasoning (§9.9): entropy-driven switching between latent and explicit blocks, with a switch cap
    cap_hit = torch.zeros_like(think)
    entering = torch.zeros_like(think)
    if swir:
        first = state.step == 0
        sw_think = is_swir & think & ~forcing
        to_explicit = sw_think & ~first & state.latent & (h < state.ref_h)
        to_latent = sw_think & ~first & ~state.latent & (h > state.ref_h) & (state.block >= prm.swir_window)
        switched = to_explicit | to_latent
        latent = torch.where(switched, ~state.latent, state.latent)
        ref_h = torch.where((sw_think & first) | switched, h, state.ref_h)
        block = torch.where(switched, torch.zeros_like(state.block), state.block + sw_think.long())
        switches = state.switches + to_explicit.long()
        cap_hit = to_explicit & (prm.swir_cap > 0) & (switches >= prm.swir_cap) & ~natural_end
        entering = switched | (sw_think & first)

    # §5: Cold Stop counter; runs in THINK (and in ANSWER when the answer-phase abort is on)
    low = (prm.tau > 0) & (h < prm.tau)
    counting = (think & ~forcing) | (~think & prm.answer_abort)
    cnt = torch.where(counting, torch.where(low, state.cnt + 1, torch.zeros_like(state.cnt)), state.cnt)
    cold = think & ~forcing & ~natural_end & (prm.tau > 0) & (cnt >= prm.cold_len)
    n_think = state.n_think + think.long()
    budget_hit = think & ~forcing & ~natural_end & ~cold & (prm.budget > 0) & (n_think >= prm.budget)
    cap_hit = cap_hit & ~cold & ~budget_hit
    force_start = cold | budget_hit | cap_hit
    token = torch.where(force_start, prm.marker[:, 0], raw)

    # §4: think end = the last m recorded tokens equal the marker
    recent = torch.cat([state.recent[:, 1:], token[:, None]], dim=1)
    ended = think & (recent == prm.marker).all(-1)
    force = torch.where(force_start & (m > 1), torch.ones_like(state.force), state.force)
    force = torch.where(forcing, torch.where(state.force + 1 < m, state.force + 1, torch.zeros_like(force)), force)
    force = torch.where(ended, torch.zeros_like(force), force)
    think_next = think & ~ended
    cnt = torch.where(ended | cold, torch.zeros_like(cnt), cnt)
    abort_now = ~think & prm.answer_abort & (cnt >= prm.cold_len) & ~state.abort

    # S10: the next input. Concept rows still thinking (not about to be forced) feed the concept, the rest one-hot.
    steady = think_next & (force == 0) & ~force_start
    concept_next = concept_method & steady & ~routed_discrete
    in_ids, in_w = _pad(ids, concept_width), _pad(w, concept_width)
    onehot_w = torch.zeros_like(in_w)
    onehot_w[:, 0] = 1.0
    onehot_ids = torch.cat([token[:, None], in_ids[:, 1:]], dim=1)
    # Mixture of Inputs (§9.8), at every step: w = (H^ p + (beta + 1 - H^) onehot(y)) / (beta + 1) over the top-K_m
    moi_next = is_moi & (force == 0) & ~force_start
    moi_ids, moi_w = _moi_input(vals, idx, token, prm.moi_beta, prm.moi_k, concept_width)
    in_w = torch.where(concept_next[:, None], in_w, torch.where(moi_next[:, None], moi_w, onehot_w))
    in_ids = torch.where(concept_next[:, None], in_ids, torch.where(moi_next[:, None], moi_ids, onehot_ids))
    use_hidden = concept_next & (method == METHOD_CODES["coconut_tf"])

    out = StepOut(token=token, raw_token=raw, in_ids=in_ids, in_w=in_w, entropy=h, was_think=think, ended=ended,
                  cold=cold, budget_hit=budget_hit, abort_now=abort_now, abort_finish=state.abort,
                  use_hidden=use_hidden, soft_input=concept_next | moi_next)
    new_state = State(think=think_next, cnt=cnt, n_think=n_think, force=force, recent=recent,
                      abort=state.abort | abort_now, step=state.step + 1)
    if swir:
        dense = torch.zeros((bsz, vocab), dtype=in_w.dtype, device=z.device).scatter_add_(1, in_ids, in_w)
        p_full = torch.softmax(z, -1)  # latent input: the full, untempered, unfiltered distribution
        frac = (state.step + 1).float() / prm.max_new.float()
        alpha = prm.swir_alpha0 + (1 - prm.swir_alpha0) * frac
        beta = prm.swir_beta0 + (1 - prm.swir_beta0) * frac
        latent_in = torch.where(entering[:, None], alpha[:, None] * p_full, p_full)
        latent_in = _add_onehot(latent_in, prm.open_id, torch.where(entering, 1 - alpha, torch.zeros_like(alpha)))
        first_in = _add_onehot(0.9 * p_full, prm.newline_id, torch.full_like(alpha, 0.1))
        latent_in = torch.where((state.step == 0)[:, None], first_in, latent_in)
        explicit_in = _add_onehot(torch.zeros_like(p_full), token, torch.where(entering, beta, torch.ones_like(beta)))
        explicit_in = _add_onehot(explicit_in, prm.marker[:, -1],
                                  torch.where(entering, 1 - beta, torch.zeros_like(beta)))
        sw_in = torch.where(latent[:, None], latent_in, explicit_in)
        out.in_dense = torch.where((is_swir & steady)[:, None], sw_in.to(dense.dtype), dense)
        left = torch.where(cap_hit, torch.full_like(state.answer_left, -2), state.answer_left)  # -2: set at the end
        left = torch.where(ended & (left == -2), prm.swir_answer_tokens, left)
        left = torch.where(~think & (left > 0), left - 1, left)
        out.cap_hit, out.limit_finish = cap_hit, ~think & (state.answer_left == 1)
        new_state.latent, new_state.ref_h, new_state.block = latent, ref_h, block
        new_state.switches, new_state.answer_left = switches, left
    return out, new_state


def _pad(x: torch.Tensor, width: int) -> torch.Tensor:
    return x if x.shape[1] == width else torch.nn.functional.pad(x, (0, width - x.shape[1]))


def _add_onehot(dense: torch.Tensor, ids: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """dense[b, ids[b]] += amount[b] (rows with id < 0 unchanged)."""
    ok = ids >= 0
    return dense.scatter_add(1, ids.clamp_min(0)[:, None], torch.where(ok, amount, torch.zeros_like(amount))[:, None]
                             .to(dense.dtype))


def _moi_input(vals, idx, token, beta, k_m, width):
    """Mixture of Inputs weights (arXiv 2505.14827 Eq. 5) over [y, top-K_m candidates], padded to `width`.

    p = the top-K_m tempered probabilities renormalised, H^ = H(p) / ln K_m; candidates get H^ p / (beta + 1) and
    the sampled token y gets the rest, (beta + 1 - H^) / (beta + 1) + H^ p_y / (beta + 1) (y's candidate column is
    folded into column 0). beta -> inf gives the one-hot input of ordinary sampling.
    """
    kmax = min(int(vals.shape[1]), width - 1)
    cols = torch.arange(kmax, device=vals.device)[None, :]
    p = normalise(torch.where(cols < k_m[:, None], vals[:, :kmax], torch.zeros_like(vals[:, :kmax])))
    h_hat = -(p * torch.log(p.clamp_min(1e-12))).sum(-1) / torch.log(k_m.float().clamp_min(2.0))
    w_c = h_hat[:, None] * p / (beta[:, None] + 1)
    cand = idx[:, :kmax]
    w_c = torch.where(cand == token[:, None], torch.zeros_like(w_c), w_c)
    w_y = 1.0 - w_c.sum(-1, keepdim=True)
    return _pad(torch.cat([token[:, None], cand], 1), width), _pad(torch.cat([w_y, w_c], 1), width)


def concept_k(cfg) -> int:
    """K of a config's concept token: think.max_topk, avg_embedding.k for that ablation, 1 for discrete methods."""
    if not cfg.is_soft:
        return 1
    return cfg.avg_embedding.k if cfg.method == "avg_embedding" else cfg.think.max_topk


def static_widths(cfg, vocab_size: int) -> tuple[int, int]:
    """(width, concept_width) for `step` from a GenerationConfig."""
    k_concept = concept_k(cfg)
    ks = [cfg.think.top_k, cfg.answer.top_k]
    need = k_concept
    if cfg.method == "moi":  # sampled token + K_m candidates
        k_concept, need = cfg.moi.top_k + 1, cfg.moi.top_k
    width = vocab_size if any(k <= 0 for k in ks) else max(ks + [need])
    return min(width, vocab_size), min(k_concept, vocab_size + 1)


__all__ = ["Params", "State", "StepOut", "step", "entropy", "filter_sorted", "sorted_probs", "truncate",
           "gumbel_perturb", "dirichlet_perturb", "sample_sorted", "mix_embeddings", "row_keys", "counter_uniform",
           "static_widths"]
