"""Training the induction model, measuring it, saving it, and comparing two runs of it.

Part of ``core.induction`` (which re-exports it). Why a retrain is compared on behaviour and not
on bits is in :func:`_deterministic`.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.device import cpu_model, torch_threads
from core.induction_model import (
    EVAL_BATCH, EVAL_SEED, HEAD_SCORE_THRESHOLD, Batch, Config, InductionModel, eval_batch, head_label,
    induction_scores, losses, make_batch, prev_token_scores, run, token_losses,
)

__all__ = [
    "HERE", "WEIGHTS", "METRICS", "TrainResult", "train", "evaluate", "phase_change", "save",
    "this_machine", "weight_differences", "COMPARED_METRICS", "metric_differences", "is_shipped_config",
    "load", "curve_frame",
]

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "weights" / "induction.pt"
METRICS = HERE / "weights" / "induction.json"


# ---- training ----------------------------------------------------------------------------------


# Evaluation and ablation run under ``@torch_threads(1)`` (core.device): this model's products are
# tiny, and on a busy 2-core server two threads spend more time waiting for each other than
# computing (an ablation table took 9.3 s on two threads and 0.7 s on one, in one run on the project's
# 2-core development server: a reason, not a figure to expect elsewhere).


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """One thread and deterministic kernels: on one machine, the same seed gives the same weights
    bit for bit (tests/test_induction_core.py checks it).

    Not across machines. Another processor runs other vector kernels (AVX-512 or AVX2, another
    vendor's BLAS path), which add the same products in another order; each step rounds a little
    differently, and 2,000 steps of training carry the difference forward. Measured for the shipped
    seed: the weights land up to 5e-3 apart (about 1 % of a tensor's largest entry) while every
    metric agrees to four decimals and the same heads form the same circuit. :func:`this_machine`
    records where a run trained; :func:`weight_differences` and :func:`metric_differences` compare.
    """
    old_det = torch.are_deterministic_algorithms_enabled()
    with torch_threads(1):
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(old_det)


@dataclass
class TrainResult:
    model: InductionModel
    config: Config
    curve: pd.DataFrame  # step, train_loss, loss_repeat, loss_other, prev_token_score, induction_score
    seconds: float  # wall time of the training loop
    cpu_seconds: float  # CPU time of this thread's process (what an idle machine would take)


def _curve_point(model: InductionModel, batch: Batch) -> dict[str, float]:
    r = run(model, batch.tokens)
    prev, _ = prev_token_scores(r.traces[0].pattern)
    ind, _ = induction_scores(r.traces[1].pattern, batch)
    return {**losses(r.logits, batch.tokens, batch.repeat),
            "prev_token_score": float(prev.max()), "induction_score": float(ind.max())}


def train(cfg: Config = Config(), progress: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """Train from ``cfg.seed`` with AdamW and a cosine learning-rate decay: repeatable bit for bit
    on one machine, and in behaviour (not bit for bit) on another processor (see _deterministic).

    ``progress(step, steps, loss)`` is called at every curve point. The curve is measured on
    ``cfg.eval_batch`` fixed fresh sequences, every ``cfg.eval_every`` steps.
    """
    cfg.check()
    with _deterministic():
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model = InductionModel.init(cfg, gen)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / cfg.steps, 1.0))))
        probe = eval_batch(cfg, cfg.eval_batch, seed=EVAL_SEED + 1)
        rows, recent = [], []
        t0, c0 = time.perf_counter(), time.process_time()
        for step in range(cfg.steps + 1):
            if step % cfg.eval_every == 0 or step == cfg.steps:
                with torch.no_grad():
                    point = _curve_point(model, probe)
                train_loss = float(np.mean(recent)) if recent else float("nan")
                rows.append({"step": step, "train_loss": train_loss, **point})
                recent = []
                if progress is not None:
                    progress(step, cfg.steps, point["loss_repeat"])
            if step == cfg.steps:
                break
            batch = make_batch(cfg.batch, cfg, gen)
            r = run(model, batch.tokens)
            loss = token_losses(r.logits, batch.tokens).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            recent.append(loss.item())
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    trained = InductionModel.from_state_dict(model.state_dict())
    return TrainResult(trained, cfg, pd.DataFrame(rows), seconds, cpu)


# ---- evaluation ---------------------------------------------------------------------------------


@torch_threads(1)
def evaluate(model: InductionModel, cfg: Config | None = None, n: int = EVAL_BATCH, seed: int = EVAL_SEED) -> dict:
    """The metrics of the issue, on ``n`` fresh sequences: losses, head scores, ablation effects."""
    cfg = cfg or Config(d_vocab=model.d_vocab, n_ctx=model.n_ctx, d_model=model.d_model, n_heads=model.n_heads)
    batch = eval_batch(cfg, n, seed)
    with torch.no_grad():
        r = run(model, batch.tokens)
        prev, prev_base = prev_token_scores(r.traces[0].pattern)
        ind, ind_base = induction_scores(r.traces[1].pattern, batch)
        clean = losses(r.logits, batch.tokens, batch.repeat)
        per = token_losses(r.logits, batch.tokens)  # [B, S-1]
        S = batch.tokens.shape[1]
        earlier = torch.ones(S, S, dtype=torch.bool).tril(diagonal=-1)  # [S, S] k < i
        seen = ((batch.tokens[:, :, None] == batch.tokens[:, None, :]) & earlier).any(-1)[:, :-1]  # [B, S-1]
        other = ~batch.repeat
    prev_head = (0, int(prev.argmax()))
    ind_head = (1, int(ind.argmax()))
    induction_heads = [(1, h) for h in range(model.n_heads) if ind[h] >= HEAD_SCORE_THRESHOLD] or [ind_head]
    with torch.no_grad():
        no_ind = losses(run(model, batch.tokens, induction_heads).logits, batch.tokens, batch.repeat)
        no_prev = losses(run(model, batch.tokens, [prev_head]).logits, batch.tokens, batch.repeat)
    return {
        **clean,
        # Outside the copy: positions whose letter occurred earlier (an induction head can fire there,
        # copying a wrong guess) and positions whose letter is new.
        "loss_other_seen": float(per[other & seen].mean()),
        "loss_other_unseen": float(per[other & ~seen].mean()),
        "ln_vocab": math.log(model.d_vocab),
        "prev_token_scores": [float(x) for x in prev],
        "prev_token_baseline": prev_base,
        "induction_scores": [float(x) for x in ind],
        "induction_baseline": ind_base,
        "prev_token_head": head_label(*prev_head),
        "induction_head": head_label(*ind_head),
        "induction_heads": [head_label(*h) for h in induction_heads],
        "loss_repeat_without_induction_heads": no_ind["loss_repeat"],
        "loss_repeat_without_prev_token_head": no_prev["loss_repeat"],
        "eval_sequences": n,
        "eval_seed": seed,
    }


# ---- facts for the page's sentences ---------------------------------------------------------------


def phase_change(curve: pd.DataFrame) -> dict:
    """Where the repeated-position loss fell fastest: the step, and the loss 200 steps either side."""
    c = curve.dropna(subset=["loss_repeat"]).reset_index(drop=True)
    if len(c) < 3:
        return {}
    step_gap = float(c["step"].diff().median())
    w = max(1, int(round(200 / step_gap)))
    drop = c["loss_repeat"].shift(w) - c["loss_repeat"].shift(-w)  # loss w points before minus w after
    i = int(drop.idxmax()) if drop.notna().any() else int(c["loss_repeat"].diff().idxmin())
    lo, hi = max(0, i - w), min(len(c) - 1, i + w)
    return {"step": int(c.loc[i, "step"]), "from_step": int(c.loc[lo, "step"]), "to_step": int(c.loc[hi, "step"]),
            "loss_before": float(c.loc[lo, "loss_repeat"]), "loss_after": float(c.loc[hi, "loss_repeat"]),
            "induction_before": float(c.loc[lo, "induction_score"]), "induction_after": float(c.loc[hi, "induction_score"])}


# ---- saving and loading ---------------------------------------------------------------------------


def save(result: TrainResult, out: Path, metrics: dict) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result.model.state_dict(), out)
    meta = {
        "config": asdict(result.config),
        "metrics": metrics,
        "training": {"seconds": result.seconds, "cpu_seconds": result.cpu_seconds, "threads": 1,
                     "torch": torch.__version__},
        "curve": result.curve.to_dict(orient="list"),
        "command": f"python -m core.induction train --seed {result.config.seed} --out {out.as_posix()}",
    }
    meta["trained_on"] = this_machine()
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(meta, indent=1, allow_nan=True) + "\n")
    return json_path


def this_machine() -> dict[str, str]:
    """The processor a run trains on, as far as PyTorch's arithmetic is concerned.

    ``capability`` is the vector instruction set PyTorch's CPU kernels dispatch to (``AVX512``,
    ``AVX2``, ``DEFAULT``, or an ARM one); with the CPU's name and the PyTorch version it says
    whether two runs of one seed can be expected to match bit for bit (same kernels, same order of
    additions) or only in behaviour (see :func:`_deterministic`).
    """
    return {"cpu": cpu_model(), "capability": str(torch.backends.cpu.get_cpu_capability()),
            "torch": torch.__version__, "arch": platform.machine()}


def weight_differences(model: InductionModel, reference: InductionModel) -> pd.DataFrame:
    """Per tensor (TransformerLens names): the largest absolute difference from ``reference``, the
    reference's largest entry, and their ratio. Same sizes only."""
    mine, ref = model.state_dict(), reference.state_dict()
    if {k: tuple(v.shape) for k, v in mine.items()} != {k: tuple(v.shape) for k, v in ref.items()}:
        raise ValueError("the two models have different sizes: there are no weights to compare")
    rows = []
    for name, r in ref.items():
        diff = float((mine[name].double() - r.double()).abs().max())  # largest |Δ| in this tensor
        largest = float(r.double().abs().max())
        rows.append({"tensor": name, "largest difference": diff, "largest entry": largest,
                     "relative": diff / largest if largest else float("nan")})
    return pd.DataFrame(rows)


# The metrics a retrain is compared on: key in evaluate()'s dict → how the page names it.
COMPARED_METRICS = {
    "loss_repeat": "loss on repeated positions",
    "loss_other": "loss on other positions",
    "prev_token_scores": "best previous-token score",
    "induction_scores": "best induction score",
    "loss_repeat_without_induction_heads": "repeated loss without the induction heads",
    "loss_repeat_without_prev_token_head": "repeated loss without the previous-token head",
}


def metric_differences(metrics: dict, reference: dict) -> pd.DataFrame:
    """The metrics of two runs side by side (evaluate()'s dicts; a head score is the best head's),
    with each difference, this run minus the reference."""
    def value(m: dict, key: str) -> float:
        return float(max(m[key])) if isinstance(m[key], list) else float(m[key])

    rows = [{"measure": name, "this run": value(metrics, key), "reference": value(reference, key)}
            for key, name in COMPARED_METRICS.items()]
    frame = pd.DataFrame(rows)
    frame["difference"] = frame["this run"] - frame["reference"]
    return frame


def is_shipped_config(cfg: Config, meta: dict) -> bool:
    """Whether ``cfg`` is the configuration the shipped weights were trained with (same seed, sizes
    and schedule): only then do the weights of a retrain have a counterpart to compare with."""
    return asdict(cfg) == meta.get("config")


def load(path: Path = WEIGHTS) -> tuple[InductionModel, dict]:
    """The state dict (``torch.load(weights_only=True)``) and the JSON beside it."""
    path = Path(path)
    sd = torch.load(path, weights_only=True, map_location="cpu")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return InductionModel.from_state_dict(sd), meta


def curve_frame(meta: dict) -> pd.DataFrame:
    return pd.DataFrame(meta.get("curve", {}))
