"""Hyperparameter advice: rules practitioners use, each a short note with its reason.

Shown live on the train tab and printed by the CLI before training, in English or Chinese: each
rule's text is written once per language in MESSAGES, and every function takes `lang`. The
thresholds are module constants so the tests can check each rule exactly at its edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from core.config import AUTO, MAX_AUTO_EPOCHS, TrainConfig
from core.events import TERMINAL_EVENTS, last_event

MIN_TOTAL_STEPS = 50  # fewer optimizer steps than this rarely move a LoRA adapter reliably
MAX_EPOCHS = 10
MAX_WARMUP_RATIO = 0.1
SMALL_DATASET = 1000  # examples
SMALL_DATA_MAX_BATCH = 16  # effective batch above this on small data leaves too few steps
SMALL_DATA_LR = (5e-5, 2e-4)  # the usual LoRA range on small data
HIGH_LR = 1e-3
LORAPLUS_RATIO = (8, 16)
HEALTHY_LOSS = (0.7, 1.4)  # the usual end-of-SFT band
MEMORISED_LOSS = 0.3
FLAT_LOSS_CHANGE = 0.05  # relative change between the first and last quarter of steps
MIN_STEPS_FOR_TREND = 8
OVERFIT_RISE = 0.05
GOOD_RECALL = 0.8  # probe recall a fact bot should reach before it is shipped  # eval loss this far (relative) above its best while train loss falls


LANGS = ("en", "zh")

# rule -> (English, 中文) templates, filled with str.format.
MESSAGES: dict[str, tuple[str, str]] = {
    "effective_batch": (
        "Effective batch = {per_device} per device x {accum} accumulation x {processes} process(es) = "
        "{batch} examples per step.",
        "有效批大小 = 单设备 {per_device} × 梯度累积 {accum} × {processes} 个进程 = 每步 {batch} 个样本。",
    ),
    "lr_scaled": (
        "learning_rate {lr:g} at reference batch {ref_batch} -> {scaled:.3g} at batch {batch} ({scaling} rule).",
        "learning_rate {lr:g}（参考批大小 {ref_batch}）-> 批大小 {batch} 时为 {scaled:.3g}（{scaling} 规则）。",
    ),
    "auto_epochs": (
        "num_train_epochs auto: {epochs:g} epochs, {total} steps (target {target}).",
        "num_train_epochs 自动：{epochs:g} 轮，{total} 步（目标 {target} 步）。",
    ),
    "steps": (
        "{examples} examples -> {steps_per_epoch} steps per epoch, {total} steps in total.",
        "{examples} 个样本 -> 每轮 {steps_per_epoch} 步，共 {total} 步。",
    ),
    "few_steps": (
        "Only {total} optimizer steps (under {min_steps}): the adapter may barely move. Use a smaller "
        "batch or more epochs.",
        "只有 {total} 个优化步（少于 {min_steps}）：适配器可能几乎学不到东西。请减小批大小或增加训练轮数。",
    ),
    "batch_small_data": (
        "Effective batch {batch} is large for {examples} examples: small data trains better with batches "
        "of 1-{max_batch} and more steps.",
        "对 {examples} 个样本来说，有效批大小 {batch} 偏大：小数据集用 1–{max_batch} 的批大小、更多步数效果更好。",
    ),
    "lr_small_data": (
        "learning_rate {lr:g}: LoRA on small data usually uses {low:g}-{high:g}; tiny models (~100M) "
        "tolerate more. Watch the loss curve rather than the epoch count.",
        "learning_rate {lr:g}：小数据集上的 LoRA 通常用 {low:g}–{high:g}；很小的模型（约 1 亿参数）能承受更高的值。"
        "看损失曲线，而不是训练轮数。",
    ),
    "lr_high": (
        "learning_rate {lr:g} is above {high:g}: expect loss spikes; lower it if the curve jumps.",
        "learning_rate {lr:g} 高于 {high:g}：损失可能出现尖峰；曲线跳动时请调低。",
    ),
    "epochs": (
        "{epochs:g} epochs (over {max_epochs}) will memorise the data: it forgets how to talk and parrots answers.",
        "{epochs:g} 轮（超过 {max_epochs} 轮）会死记数据：模型会忘记如何对话，只会照搬答案。",
    ),
    "warmup": (
        "warmup_ratio {warmup:g} spends over {share:.0%} of steps warming up; a long warmup is a recipe "
        "with constant_with_warmup, otherwise keep it under 10%.",
        "warmup_ratio {warmup:g} 把超过 {share:.0%} 的步数用于预热；长预热配合 constant_with_warmup 使用，"
        "否则请保持在 10% 以下。",
    ),
    "loraplus_lrs": (
        "LoRA+: lora_A learns at {lr:g}, lora_B at {lr_b:g} (x{ratio:g}).",
        "LoRA+：lora_A 的学习率为 {lr:g}，lora_B 为 {lr_b:g}（×{ratio:g}）。",
    ),
    "loraplus_ratio": (
        "loraplus_lr_ratio {ratio:g}: people use {low}-{high}.",
        "loraplus_lr_ratio {ratio:g}：常用值为 {low}–{high}。",
    ),
    "loraplus_halve_lr": (
        "With LoRA+ on, consider halving learning_rate (to {half:g}): lora_B already learns {ratio:g}x faster.",
        "开启 LoRA+ 时，可考虑把 learning_rate 减半（到 {half:g}）：lora_B 已经快 {ratio:g} 倍。",
    ),
    "lr_scaling_same": (
        "Same effective batch as the reference ({batch}): keep its learning rate {lr:g}.",
        "与参考配置的有效批大小相同（{batch}）：沿用其学习率 {lr:g}。",
    ),
    "lr_scaling": (
        "From {lr:g} at batch {ref_batch} to batch {batch}: linear rule {linear:.3g}, square-root rule "
        "{sqrt:.3g} (better founded for Adam).",
        "从批大小 {ref_batch} 时的 {lr:g} 换到批大小 {batch}：线性规则 {linear:.3g}，平方根规则 {sqrt:.3g}"
        "（对 Adam 更有依据）。",
    ),
    "template_system": (
        "The chat template injects its own default system prompt (e.g. 'You are SmolLM') into conversations "
        "without one, which fights a persona. Set system_prompt: training and chat then both use yours.",
        "对话模板会给没有系统提示词的对话注入自己的默认提示词（例如 'You are SmolLM'），与人设相冲突。"
        "请设置 system_prompt：训练和对话都会使用你的提示词。",
    ),
    "flat_loss": (
        "The loss is not moving ({first:.3f} -> {last:.3f}): the learning rate is probably too low.",
        "损失没有变化（{first:.3f} -> {last:.3f}）：学习率可能太低。",
    ),
    "memorising": (
        "Train loss {last:.3f} is far below the {low}-{high} band: the training answers are learnt word for "
        "word. A fact bot needs that (measured on a 42-chat FAQ: loss 0.001 answered 81% of unseen "
        "phrasings, loss 1.79 12%), so judge it by probe recall, not by the loss; for style or general "
        "skills it means over-fitting: fewer epochs.",
        "训练损失 {last:.3f} 远低于 {low}–{high} 区间：训练答案已被逐字学会。事实型机器人需要这样"
        "（在 42 条的 FAQ 上实测：损失 0.001 时答对 81% 的新问法，损失 1.79 时只有 12%），所以请用探针召回率而不是损失来判断；"
        "对风格或通用能力而言，这意味着过拟合：减少训练轮数。",
    ),
    "below_band": (
        "Train loss {last:.3f} is below the {low}-{high} band: fine for narrow persona data; a fact bot is "
        "judged by its probe recall.",
        "训练损失 {last:.3f} 低于 {low}–{high} 区间：对范围很窄的人设数据没问题；事实型机器人要看探针召回率。",
    ),
    "healthy": (
        "Train loss {last:.3f} sits in the usual band {low}-{high} for style and general skills; a fact bot "
        "at this loss usually does not know its facts yet (measured: 3 of 36 unseen phrasings at 1.03): "
        "probe it, and train more steps if recall is low.",
        "训练损失 {last:.3f} 处于风格和通用能力常见的 {low}–{high} 区间；事实型机器人在这个损失下通常还没记住事实"
        "（实测：损失 1.03 时 36 个新问法只答对 3 个）：请用探针检查，召回率低就增加训练步数。",
    ),
    "probe_recall": (
        "Fact probes: {hits}/{n} unseen phrasings answered with the right fact ({recall:.0%}; base model {base:.0%}).",
        "事实探针：{n} 个新问法中答对 {hits} 个（{recall:.0%}；基础模型 {base:.0%}）。",
    ),
    "under_trained": (
        "Train loss {last:.3f} is above the {low}-{high} band: under-trained. More steps or a higher learning rate.",
        "训练损失 {last:.3f} 高于 {low}–{high} 区间：训练不足。请增加步数或提高学习率。",
    ),
    "overfitting": (
        "Eval loss rose to {eval_last:.3f} from its best {eval_best:.3f} while the train loss falls: "
        "overfitting. Use the earlier checkpoint, fewer epochs or more data.",
        "验证损失从最佳的 {eval_best:.3f} 升到 {eval_last:.3f}，而训练损失仍在下降：过拟合。"
        "请使用更早的检查点、减少训练轮数或增加数据。",
    ),
    "card_progress": ("Run in progress.", "运行中。"),
    "card_failed": ("**Run failed:** {message}", "**运行失败：** {message}"),
    "card_final": (
        "**Run {status}** at step {step}/{total}: final train loss {loss}, eval loss {eval_loss}, "
        "{tps:.0f} tokens/s, {runtime:.0f} s.",
        "**运行{status}**，第 {step}/{total} 步：最终训练损失 {loss}，验证损失 {eval_loss}，"
        "{tps:.0f} token/秒，{runtime:.0f} 秒。",
    ),
    "card_next_overfitting": (
        "Next: fewer epochs or a lower learning rate, and more varied phrasings per fact.",
        "下一步：减少训练轮数或降低学习率，并为每个事实提供更多样的问法。",
    ),
    "card_next_probe": (
        "Next: check it on questions it never saw: set probes: auto (or a probe file) and train again.",
        "下一步：用它没见过的问题检查：设置 probes: auto（或探针文件）后重新训练。",
    ),
    "card_next_facts": (
        "Next: more phrasings for the missed facts (augment: rules, or your own), then train again.",
        "下一步：为答错的事实增加问法（augment: rules 或自己补充），然后重新训练。",
    ),
    "card_next_more": (
        "Next: raise the learning rate (x2) or train more steps.",
        "下一步：把学习率提高一倍，或训练更多步。",
    ),
    "card_next_chat": (
        "Next: chat with it on questions that are not in the training file.",
        "下一步：用训练文件里没有的问题和它对话。",
    ),
}
STATUS_WORDS = {"done": ("done", "完成"), "stopped": ("stopped", "已停止")}


def message(rule: str, lang: str = "en", **values: Any) -> str:
    return MESSAGES[rule][1 if lang == "zh" else 0].format(**values)


@dataclass(frozen=True)
class Note:
    level: str  # "info" | "warn"
    rule: str
    message: str
    fix: dict[str, Any] = field(default_factory=dict, compare=False)  # config changes that apply the advice

    def __str__(self) -> str:
        return f"[{self.level}] {self.message}"


def _note(level: str, rule: str, lang: str, fix: dict[str, Any] | None = None, **values: Any) -> Note:
    return Note(level, rule, message(rule, lang, **values), fix or {})


# ------------------------------------------------------------------------------ before training
def training_plan(config: TrainConfig, num_examples: int) -> dict[str, Any]:
    """Steps, epochs and learning rate of a run on `num_examples` training examples: what the trainer
    is given (core.engine), the page shows and the start event records.

    Steps are counted as transformers' Trainer counts them (steps_per_epoch). num_train_epochs: auto
    takes the whole number of epochs nearest to target_steps steps (auto_min_epochs..MAX_AUTO_EPOCHS),
    so each example is seen equally often. learning_rate is scaled from lr_reference_batch when one is set.
    """
    steps = steps_per_epoch(config, num_examples)
    epochs = config.num_train_epochs
    if epochs == AUTO:
        epochs = float(min(max(round(config.target_steps / steps), config.auto_min_epochs), MAX_AUTO_EPOCHS))
    total = config.max_steps if config.max_steps > 0 else math.ceil(epochs * steps)
    return {
        "effective_batch_size": config.effective_batch_size,
        "steps_per_epoch": steps,
        "total_steps": total,
        "num_train_epochs": epochs,
        "learning_rate": effective_lr(config),
    }


def steps_per_epoch(config: TrainConfig, num_examples: int) -> int:
    """Optimizer steps in one pass over `num_examples`, as Trainer counts them on each process.

    The epoch is cut into micro-batches of per_device_train_batch_size, dealt to the processes in turn
    (accelerate's BatchSamplerShard; the last round is topped up from the start so every process gets
    as many), and each process takes one optimizer step per gradient_accumulation_steps of its own,
    a shorter last one included: one step consumes the global batch (config.effective_batch_size)."""
    micro_batches = math.ceil(num_examples / config.per_device_train_batch_size)
    per_process = math.ceil(micro_batches / config.num_processes)
    return max(math.ceil(per_process / config.gradient_accumulation_steps), 1)


def effective_lr(config: TrainConfig) -> float:
    """learning_rate, scaled from lr_reference_batch to this run's effective batch when that is set."""
    if not config.lr_reference_batch:
        return config.learning_rate
    return lr_scaling(config.learning_rate, config.lr_reference_batch, config.effective_batch_size)[
        config.lr_scaling_rule
    ]


def lr_scaling(reference_lr: float, reference_batch: int, batch: int) -> dict[str, float]:
    """Learning rate for `batch` from a (reference_lr, reference_batch) that worked.

    linear: lr grows with the batch (Goyal et al.); sqrt: with its square root, the better-founded
    rule for Adam-family optimizers. Same batch -> same lr under both.
    """
    return {"linear": reference_lr * batch / reference_batch, "sqrt": reference_lr * math.sqrt(batch / reference_batch)}


def advise(
    config: TrainConfig,
    num_examples: int | None = None,
    template_injects_system: bool | None = None,
    reference: tuple[float, int] | None = None,
    lang: str = "en",
) -> list[Note]:
    """Notes on a config before training; `reference` is an (lr, effective batch) known to work."""
    batch = config.effective_batch_size
    lr = effective_lr(config)
    notes = [
        _note(
            "info",
            "effective_batch",
            lang,
            per_device=config.per_device_train_batch_size,
            accum=config.gradient_accumulation_steps,
            processes=config.num_processes,
            batch=batch,
        )
    ]
    if lr != config.learning_rate:
        notes.append(
            _note(
                "info",
                "lr_scaled",
                lang,
                lr=config.learning_rate,
                ref_batch=config.lr_reference_batch,
                batch=batch,
                scaling=config.lr_scaling_rule,
                scaled=lr,
            )
        )
    if num_examples:
        plan = training_plan(config, num_examples)
        notes.append(
            _note(
                "info",
                "steps",
                lang,
                examples=num_examples,
                steps_per_epoch=plan["steps_per_epoch"],
                total=plan["total_steps"],
            )
        )
        if config.num_train_epochs == AUTO and config.max_steps <= 0:
            notes.append(
                _note(
                    "info",
                    "auto_epochs",
                    lang,
                    epochs=plan["num_train_epochs"],
                    target=config.target_steps,
                    total=plan["total_steps"],
                )
            )
        if plan["total_steps"] < MIN_TOTAL_STEPS:
            # auto epochs size the run from the data; already auto (and capped): smaller batches
            fix = (
                {"num_train_epochs": AUTO, "max_steps": -1}
                if config.num_train_epochs != AUTO
                else {"per_device_train_batch_size": max(config.per_device_train_batch_size // 2, 1)}
            )
            notes.append(_note("warn", "few_steps", lang, fix, total=plan["total_steps"], min_steps=MIN_TOTAL_STEPS))
        if num_examples < SMALL_DATASET and batch > SMALL_DATA_MAX_BATCH:
            fix = {
                "gradient_accumulation_steps": 1,
                "per_device_train_batch_size": min(config.per_device_train_batch_size, SMALL_DATA_MAX_BATCH),
            }
            notes.append(
                _note(
                    "warn",
                    "batch_small_data",
                    lang,
                    fix,
                    batch=batch,
                    examples=num_examples,
                    max_batch=SMALL_DATA_MAX_BATCH,
                )
            )
        if num_examples < SMALL_DATASET and not SMALL_DATA_LR[0] <= lr <= SMALL_DATA_LR[1]:
            notes.append(_note("info", "lr_small_data", lang, lr=lr, low=SMALL_DATA_LR[0], high=SMALL_DATA_LR[1]))
    if lr > HIGH_LR:
        notes.append(_note("warn", "lr_high", lang, lr=lr, high=HIGH_LR))
    # auto epochs may exceed MAX_EPOCHS on purpose: a tiny FAQ needs many passes to learn its facts
    if config.max_steps <= 0 and config.num_train_epochs != AUTO and config.num_train_epochs > MAX_EPOCHS:
        notes.append(
            _note(
                "warn",
                "epochs",
                lang,
                {"num_train_epochs": MAX_EPOCHS},
                epochs=config.num_train_epochs,
                max_epochs=MAX_EPOCHS,
            )
        )
    if config.warmup_ratio > MAX_WARMUP_RATIO and config.lr_scheduler_type != "constant_with_warmup":
        notes.append(
            _note(
                "warn",
                "warmup",
                lang,
                {"warmup_ratio": MAX_WARMUP_RATIO},
                warmup=config.warmup_ratio,
                share=MAX_WARMUP_RATIO,
            )
        )
    ratio = config.loraplus_lr_ratio
    if ratio > 0:
        notes.append(_note("info", "loraplus_lrs", lang, lr=lr, lr_b=lr * ratio, ratio=ratio))
        if not LORAPLUS_RATIO[0] <= ratio <= LORAPLUS_RATIO[1]:
            notes.append(
                _note("warn", "loraplus_ratio", lang, ratio=ratio, low=LORAPLUS_RATIO[0], high=LORAPLUS_RATIO[1])
            )
        if lr >= SMALL_DATA_LR[1]:
            notes.append(_note("info", "loraplus_halve_lr", lang, {"learning_rate": lr / 2}, half=lr / 2, ratio=ratio))
    if reference is not None:
        ref_lr, ref_batch = reference
        if ref_batch == batch:
            # Its own text, under the same rule name: both answer "which lr for this batch?"
            notes.append(Note("info", "lr_scaling", message("lr_scaling_same", lang, batch=batch, lr=ref_lr)))
        else:
            scaled = lr_scaling(ref_lr, ref_batch, batch)
            notes.append(
                _note(
                    "info",
                    "lr_scaling",
                    lang,
                    {"learning_rate": scaled["sqrt"]},
                    lr=ref_lr,
                    ref_batch=ref_batch,
                    batch=batch,
                    linear=scaled["linear"],
                    sqrt=scaled["sqrt"],
                )
            )
    if template_injects_system and not config.system_prompt.strip():
        notes.append(_note("warn", "template_system", lang))
    return notes


def template_injects_system(encoder) -> bool:
    """Does the template add a system turn to a conversation that has none? (SmolLM2 and Qwen do.)"""
    rendered = encoder.render([{"role": "user", "content": "\x00"}])
    return "system" in rendered.split("\x00")[0].lower()


# ------------------------------------------------------------------ during and after training
def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def loss_notes(events: list[dict[str, Any]], lang: str = "en") -> list[Note]:
    """What the curve says so far: band, memorising, flat, overfitting."""
    losses = [e["loss"] for e in events if e.get("type") == "step" and e.get("loss") is not None]
    evals = [e["eval_loss"] for e in events if e.get("type") == "eval"]
    notes: list[Note] = []
    if len(losses) < MIN_STEPS_FOR_TREND:
        return probe_notes(events, lang)
    quarter = max(len(losses) // 4, 2)
    first, last = _mean(losses[:quarter]), _mean(losses[-quarter:])
    band = {"last": last, "low": HEALTHY_LOSS[0], "high": HEALTHY_LOSS[1]}
    if abs(first - last) / max(first, 1e-9) < FLAT_LOSS_CHANGE:
        notes.append(_note("warn", "flat_loss", lang, first=first, last=last))
    elif last < MEMORISED_LOSS:
        notes.append(_note("warn", "memorising", lang, **band))
    elif last < HEALTHY_LOSS[0]:
        notes.append(_note("info", "below_band", lang, **band))
    elif last <= HEALTHY_LOSS[1]:
        notes.append(_note("info", "healthy", lang, **band))
    else:
        notes.append(_note("warn", "under_trained", lang, **band))
    if len(evals) >= 2 and evals[-1] > min(evals) * (1 + OVERFIT_RISE) and last < first:
        notes.append(_note("warn", "overfitting", lang, eval_last=evals[-1], eval_best=min(evals)))
    return notes + probe_notes(events, lang)


def probe_notes(events: list[dict[str, Any]], lang: str = "en") -> list[Note]:
    """The newest probe recall of the adapter, next to the base model's."""
    tuned = next((e for e in reversed(events) if e.get("type") == "probe" and e.get("model") == "tuned"), None)
    if tuned is None:
        return []
    base = next((e for e in events if e.get("type") == "probe" and e.get("model") == "base"), {})
    level = "info" if tuned["recall"] >= GOOD_RECALL else "warn"
    return [
        _note(
            level,
            "probe_recall",
            lang,
            hits=tuned["hits"],
            n=tuned["n"],
            recall=tuned["recall"],
            base=base.get("recall", 0.0),
        )
    ]


def summary_card(events: list[dict[str, Any]], lang: str = "en") -> str:
    """A short markdown card for the end of a run: what happened, what the curve says, what next."""
    final = last_event(events, *TERMINAL_EVENTS)
    if final is None:
        return message("card_progress", lang)
    if final["type"] == "error":
        return message("card_failed", lang, message=final.get("message", "unknown error"))
    lines = [
        message(
            "card_final",
            lang,
            status=STATUS_WORDS[final["type"]][1 if lang == "zh" else 0],
            step=final.get("step"),
            total=final.get("total_steps"),
            loss=_fmt(final.get("final_loss")),
            eval_loss=_fmt(final.get("final_eval_loss")),
            tps=final.get("tokens_per_s", 0),
            runtime=final.get("train_runtime_s", 0),
        )
    ]
    notes = loss_notes(events, lang)
    lines += [f"- {note.message}" for note in notes]
    rules = {note.rule for note in notes}
    recall = next((n for n in notes if n.rule == "probe_recall"), None)
    if recall is not None and recall.level == "warn":
        lines.append("- " + message("card_next_facts", lang))
    elif "overfitting" in rules:
        lines.append("- " + message("card_next_overfitting", lang))
    elif "memorising" in rules and recall is None:
        lines.append("- " + message("card_next_probe", lang))
    elif "flat_loss" in rules or "under_trained" in rules:
        lines.append("- " + message("card_next_more", lang))
    else:
        lines.append("- " + message("card_next_chat", lang))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
