"""TrainConfig: the one description of a run, from the page or a YAML file to the trainer.

Field names follow LLaMA-Factory's YAML keys so its users feel at home. Each field is declared once,
with its registry entry (`_f`): help in English and Chinese, the page's label and group, allowed
choices and bounds. Validation, YAML coercion, the page (webui), its translations and `--help`
all read that entry, so adding a field means writing it here and nowhere else.

This module imports no torch: `python -m core.train bad.yaml` reports config errors in a moment.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.cpu_allocator import CPU_ALLOCATORS, MIMALLOC
from core.errors import UserInputError
from core.freed_memory import TRIM_PEAK_STEP_BYTES

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
LR_SCALING_RULES = ("linear", "sqrt")
AUGMENT_GENERATORS = ("none", "rules", "openai", "local")
AUTO = "auto"  # a value that the engine sizes from the data (num_train_epochs, probes)
MAX_AUTO_EPOCHS = 50  # num_train_epochs: auto on a tiny FAQ; facts need many passes, this bounds the run
DATASET_FORMATS = ("auto", "alpaca", "sharegpt", "openai")
QUANTIZATION_BITS = ("none", "4", "8")
LAYERWISE_LR = ("none", "cosine")
# How several processes share a run (presets/accelerate/<strategy>.yaml, core.distributed).
DISTRIBUTED_STRATEGIES = ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3")

# Where a field is edited on the page. "top" and "data_tab" fields live outside the train form.
GROUPS = ("top", "data_tab", "optim", "data", "facts", "lora", "advanced")
# Fields the page sets itself (output_dir from the run name, resume from the Resume button).
HEADLESS_ONLY = frozenset({"output_dir", "resume"})
MAX_QUOTED_CHARS = 80  # a bad value is quoted up to this length in a message


@dataclass(frozen=True)
class FieldSpec:
    """A field's registry entry: what every reader of the config needs to know about it."""

    help: str
    help_zh: str
    label: str
    label_zh: str
    group: str
    choices: tuple[str, ...] = ()
    gt: float | None = None  # value must be > gt
    ge: float | None = None  # value must be >= ge
    lt: float | None = None  # value must be < lt
    le: float | None = None  # value must be <= le
    non_empty: bool = False
    auto: bool = False  # the string "auto" is accepted besides the field's number type


def _f(default: Any, help_en: str, help_zh: str, label: tuple[str, str], group: str, **rules: Any) -> Any:
    """A dataclass field with its registry entry; mutable defaults are not used in this config."""
    assert group in GROUPS, group
    return field(default=default, metadata={"spec": FieldSpec(help_en, help_zh, label[0], label[1], group, **rules)})


def _show(value: Any) -> str:
    """A number as the user wrote it (-1 rather than the coerced -1.0); long text cut to a readable length."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_QUOTED_CHARS else f"{text[:MAX_QUOTED_CHARS]}... ({len(text)} characters)"


@dataclass
class TrainConfig:
    # --- model (top bar) and dataset (data tab) ---
    model_name_or_path: str = _f(
        "default",
        "'default' (embedded SmolLM2-135M-Instruct), a local HF folder, a .gguf file, or a hub id.",
        "'default'（内置 SmolLM2-135M-Instruct）、本地 HF 文件夹、.gguf 文件或 Hub 模型 ID。",
        ("Model", "模型"),
        "top",
        non_empty=True,
    )
    dataset: str = _f(
        "datasets_demo/persona_en.jsonl",
        "A .json or .jsonl file of chat examples.",
        ".json 或 .jsonl 对话样本文件。",
        ("Dataset", "数据集"),
        "data_tab",
        non_empty=True,
    )
    dataset_format: str = _f(
        "auto",
        "'auto' (detect), 'alpaca', 'sharegpt' or 'openai' (messages).",
        "'auto'（自动识别）、'alpaca'、'sharegpt' 或 'openai'（messages）。",
        ("Format", "格式"),
        "data_tab",
        choices=DATASET_FORMATS,
    )
    dataset_dir: str = _f(
        "",
        "A folder holding a LLaMA-Factory dataset_info.json: `dataset` may then name its registered datasets, "
        "comma-separated (a .json/.jsonl path stays a file). Empty: `dataset` is one file.",
        "存放 LLaMA-Factory dataset_info.json 的文件夹：此时 `dataset` 可填其中登记的数据集名（逗号分隔；"
        ".json/.jsonl 路径仍按文件读取）。留空：`dataset` 是一个文件。",
        ("Dataset folder (dataset_info.json)", "数据集文件夹（dataset_info.json）"),
        "data_tab",
    )
    # --- optimisation ---
    learning_rate: float = _f(
        2e-4,
        "Peak learning rate of the LoRA weights (lora_A). Above 1 can only be a typo.",
        "LoRA 权重（lora_A）的峰值学习率。大于 1 只可能是笔误。",
        ("Learning rate", "学习率"),
        "optim",
        gt=0,
        le=1,
    )
    lr_reference_batch: int = _f(
        0,
        "The effective batch learning_rate was tuned for: it is then scaled to this run's effective "
        "batch by lr_scaling_rule (0 = use learning_rate as is).",
        "learning_rate 所对应的有效批大小：按 lr_scaling_rule 缩放到本次运行的有效批大小（0 表示直接使用 learning_rate）。",
        ("LR reference batch", "学习率参考批大小"),
        "optim",
        ge=0,
        le=1_000_000,
    )
    lr_scaling_rule: str = _f(
        "linear",
        "How lr_reference_batch scales the lr: 'linear' (lr x batch / reference) or 'sqrt' (x its "
        "square root, the better-founded rule for Adam).",
        "lr_reference_batch 的缩放方式：'linear'（lr × 批大小 / 参考值）或 'sqrt'（乘以其平方根，对 Adam 更有依据）。",
        ("LR scaling rule", "学习率缩放规则"),
        "optim",
        choices=LR_SCALING_RULES,
    )
    num_train_epochs: float | str = _f(
        3.0,
        "Passes over the training data; 'auto': whole epochs that make about target_steps optimizer "
        "steps, so a 50-chat FAQ and a 5,000-chat set both get a sensible run.",
        "遍历训练数据的轮数；'auto'：取整数轮，使优化步数约为 target_steps，这样 50 条的 FAQ 和 5000 条的数据集都能得到合适的训练。",
        ("Epochs", "训练轮数"),
        "optim",
        ge=0,
        le=10_000,
        auto=True,
    )
    target_steps: int = _f(
        200,
        f"With num_train_epochs: auto, about this many optimizer steps (at least auto_min_epochs, at most "
        f"{MAX_AUTO_EPOCHS} epochs).",
        f"num_train_epochs 为 auto 时的目标优化步数（至少 auto_min_epochs 轮，至多 {MAX_AUTO_EPOCHS} 轮）。",
        ("Target steps (auto epochs)", "目标步数（自动轮数）"),
        "optim",
        gt=0,
        le=10_000_000,
    )
    auto_min_epochs: int = _f(
        1,
        "With num_train_epochs: auto, at least this many epochs even when target_steps is reached sooner: "
        "a fact has to be seen several times in each phrasing, however many phrasings there are.",
        "num_train_epochs 为 auto 时至少训练的轮数（即使更早达到 target_steps）：每个事实的每种问法都要被看到多次，"
        "无论问法有多少。",
        ("Min epochs (auto)", "最少轮数（自动）"),
        "optim",
        ge=1,
        le=MAX_AUTO_EPOCHS,
    )
    max_steps: int = _f(
        -1,
        "Stop after this many optimizer steps (-1 = use num_train_epochs).",
        "训练到这么多优化步后停止（-1 表示按训练轮数）。",
        ("Max steps", "最大步数"),
        "optim",
        ge=-1,
        le=10_000_000,
    )
    per_device_train_batch_size: int = _f(
        2,
        "Examples per forward pass on one device.",
        "单个设备每次前向计算的样本数。",
        ("Batch per device", "单设备批大小"),
        "optim",
        gt=0,
        le=65_536,
    )
    gradient_accumulation_steps: int = _f(
        4,
        "Forward passes summed into one optimizer step.",
        "累积多少次前向计算的梯度后更新一次参数。",
        ("Gradient accumulation", "梯度累积步数"),
        "optim",
        gt=0,
        le=65_536,
    )
    lr_scheduler_type: str = _f(
        "cosine",
        "cosine, linear, constant or constant_with_warmup.",
        "cosine、linear、constant 或 constant_with_warmup。",
        ("LR scheduler", "学习率调度器"),
        "optim",
        choices=SCHEDULERS,
    )
    warmup_ratio: float = _f(
        0.1,
        "Share of total steps spent warming the lr up linearly from 0.",
        "学习率从 0 线性预热所占总步数的比例。",
        ("Warmup ratio", "预热比例"),
        "optim",
        ge=0,
        lt=1,
    )
    loraplus_lr_ratio: float = _f(
        0.0,
        "LoRA+: lora_B learns at learning_rate x this ratio (0 = off; people use 8-16).",
        "LoRA+：lora_B 的学习率为 learning_rate × 该倍数（0 表示关闭；常用 8–16）。",
        ("LoRA+ lr ratio", "LoRA+ 学习率倍数"),
        "optim",
        ge=0,
        le=10_000,
    )
    seed: int = _f(
        42,
        "Random seed for data order, split and LoRA init (0 to 2^32 - 1, what torch accepts).",
        "数据顺序、划分和 LoRA 初始化的随机种子（0 到 2^32 - 1，torch 接受的范围）。",
        ("Seed", "随机种子"),
        "optim",
        ge=0,
        le=2**32 - 1,
    )
    # --- data and prompt ---
    cutoff_len: int = _f(
        1024,
        "Maximum tokens per example; longer examples are truncated.",
        "每个样本的最大 token 数；更长的样本会被截断。",
        ("Cutoff length", "截断长度"),
        "data",
        gt=0,
        le=1_048_576,
    )
    max_samples: int = _f(
        0,
        "Use only the first this many examples of each dataset (0 = all), as LLaMA-Factory's max_samples.",
        "每个数据集只用前这么多条样本（0 表示全部），同 LLaMA-Factory 的 max_samples。",
        ("Max examples per dataset", "每个数据集的最大样本数"),
        "data",
        ge=0,
        le=1_000_000_000,
    )
    val_size: float = _f(
        0.0,
        "Share of examples held out for eval loss (0 = none, e.g. 0.1).",
        "留作验证集（计算 eval loss）的样本比例（0 表示不留，例如 0.1）。",
        ("Validation share", "验证集比例"),
        "data",
        ge=0,
        lt=1,
    )
    system_prompt: str = _f(
        "",
        "System prompt put in front of every conversation that has none, in training AND chat. "
        "Empty: the chat template's own default (SmolLM2 and Qwen inject one).",
        "放在每段没有系统提示词的对话前，训练和对话时都使用。留空：使用对话模板自带的默认提示词"
        "（SmolLM2 和 Qwen 会注入一个）。",
        ("System prompt", "系统提示词"),
        "data",
    )
    template: str = _f(
        "",
        "Empty: the tokenizer's own chat template. A LLaMA-Factory template name (qwen, llama3, ...): "
        "checked when the run starts against the tokenizer's template, which is always the one used.",
        "留空：使用分词器自带的对话模板。填 LLaMA-Factory 模板名（qwen、llama3 等）：开始训练时检查它与分词器"
        "模板是否一致（训练始终使用分词器的模板）。",
        ("LLaMA-Factory template (checked)", "LLaMA-Factory 模板（仅检查）"),
        "data",
    )
    # --- facts: probes and augmentation ---
    probes: str = _f(
        "none",
        "Fact probes scored during training: 'auto' (hold out about a fifth of the phrasings of "
        "each answer that has 3 or more, by seed), a JSONL file of {question, expect}, or 'none'.",
        "训练中评测的事实探针：'auto'（对有 3 个及以上问法的回答，按随机种子留出约五分之一的问法）、"
        "{question, expect} 格式的 JSONL 文件，或 'none'。",
        ("Fact probes", "事实探针"),
        "facts",
        non_empty=True,
    )
    probe_steps: int = _f(
        0,
        "Score the probes every this many optimizer steps (0 = only before and after training).",
        "每隔多少优化步评测一次探针（0 表示只在训练前后评测）。",
        ("Probe every (steps)", "探针评测间隔（步）"),
        "facts",
        ge=0,
        le=10_000_000,
    )
    probe_best_adapter: bool = _f(
        True,
        "Keep the adapter of the probe scoring with the best recall as the run's adapter.",
        "把探针召回率最高的那次评测时的适配器作为本次运行的适配器。",
        ("Keep best-recall adapter", "保留召回率最佳的适配器"),
        "facts",
    )
    probe_patience: int = _f(
        0,
        "Stop early when probe recall has not improved for this many scorings (0 = never).",
        "探针召回率连续这么多次评测没有提高时提前停止（0 表示从不）。",
        ("Early-stop patience", "提前停止耐心值"),
        "facts",
        ge=0,
        le=10_000,
    )
    augment: str = _f(
        "none",
        "Add new phrasings of every user turn before training: 'rules' (offline, English and Chinese), "
        "'openai' (an OpenAI-compatible endpoint: augment_base_url, augment_model) or 'local' (a local "
        "instruct model: augment_model). Probe questions never leak into them.",
        "训练前为每个用户问题生成新的问法：'rules'（离线规则，中英文）、'openai'（OpenAI 兼容接口：augment_base_url、"
        "augment_model）或 'local'（本地指令模型：augment_model）。探针问题不会泄漏进去。",
        ("Augment phrasings", "问法扩充"),
        "facts",
        choices=AUGMENT_GENERATORS,
    )
    augment_per_turn: int = _f(
        8,
        "New phrasings per user turn at most (facts with few phrasings get the most).",
        "每个用户问题最多生成的新问法数（问法少的事实得到最多）。",
        ("Phrasings per turn", "每个问题的新问法数"),
        "facts",
        gt=0,
        le=64,
    )
    augment_model: str = _f(
        "",
        "augment: openai: the endpoint's model name; augment: local: a model folder or hub id.",
        "augment 为 openai 时：接口的模型名；为 local 时：模型文件夹或 Hub ID。",
        ("Paraphrase model", "改写模型"),
        "facts",
    )
    augment_base_url: str = _f(
        "",
        "augment: openai: the endpoint, e.g. http://127.0.0.1:11434/v1 (Ollama).",
        "augment 为 openai 时的接口地址，例如 http://127.0.0.1:11434/v1（Ollama）。",
        ("Endpoint URL", "接口地址"),
        "facts",
    )
    augment_api_key_env: str = _f(
        "OPENAI_API_KEY",
        "augment: openai: the environment variable holding the API key (local servers need none).",
        "augment 为 openai 时存放 API 密钥的环境变量名（本地服务不需要）。",
        ("API key variable", "API 密钥环境变量"),
        "facts",
        non_empty=True,
    )
    # --- LoRA ---
    lora_rank: int = _f(
        8,
        "Rank r of the LoRA update matrices.",
        "LoRA 更新矩阵的秩 r。",
        ("LoRA rank", "LoRA 秩"),
        "lora",
        gt=0,
        le=65_536,
    )
    lora_alpha: int = _f(
        16,
        "LoRA scaling numerator: the update is scaled by alpha / r.",
        "LoRA 缩放分子：更新量乘以 alpha / r。",
        ("LoRA alpha", "LoRA alpha"),
        "lora",
        gt=0,
        le=1_000_000,
    )
    lora_dropout: float = _f(
        0.05,
        "Dropout on the LoRA input.",
        "LoRA 输入上的 dropout。",
        ("LoRA dropout", "LoRA dropout"),
        "lora",
        ge=0,
        lt=1,
    )
    lora_target: str = _f(
        "all",
        "'all' (every linear layer but the head) or comma-separated module names (q_proj,v_proj).",
        "'all'（除输出头外的所有线性层）或逗号分隔的模块名（q_proj,v_proj）。",
        ("LoRA target modules", "LoRA 目标模块"),
        "lora",
        non_empty=True,
    )
    quantization_bit: str = _f(
        "none",
        "Load the base model quantized: 'none', '4' (QLoRA nf4, double quant) or '8' (LLM.int8).",
        "以量化方式加载基础模型：'none'、'4'（QLoRA nf4，双重量化）或 '8'（LLM.int8）。",
        ("Quantization", "量化"),
        "lora",
        choices=QUANTIZATION_BITS,
    )
    # --- advanced ---
    train_on_prompt: bool = _f(
        False,
        "Train on every token, not only the assistant replies.",
        "在所有 token 上计算损失，而不仅是助手的回复。",
        ("Train on prompt", "在提示词上也训练"),
        "advanced",
    )
    weight_decay: float = _f(
        0.0, "AdamW weight decay.", "AdamW 权重衰减。", ("Weight decay", "权重衰减"), "advanced", ge=0, le=100
    )
    max_grad_norm: float = _f(
        1.0,
        "Clip the gradient norm to this value (0 = no clipping).",
        "把梯度范数裁剪到该值（0 表示不裁剪）。",
        ("Max grad norm", "梯度裁剪阈值"),
        "advanced",
        ge=0,
    )
    layerwise_lr: str = _f(
        "none",
        "'cosine': scale each LoRA layer's lr by a cosine of its depth (bottom smallest).",
        "'cosine'：按层深用余弦曲线缩放每层 LoRA 的学习率（底层最小）。",
        ("Layer-wise lr", "分层学习率"),
        "advanced",
        choices=LAYERWISE_LR,
    )
    gradient_checkpointing: bool = _f(
        False,
        "Recompute activations in backward: less memory, slower.",
        "反向传播时重新计算激活：省显存，但更慢。",
        ("Gradient checkpointing", "梯度检查点"),
        "advanced",
    )
    packing: bool = _f(
        True,
        "Concatenate each batch's examples into one row without padding, with per-example causal "
        "attention: faster, same loss. Turn off for a model whose own code ignores position_ids.",
        "把每个批次的样本拼接成一行、不做填充，每个样本只关注自身：更快，损失相同。"
        "若模型自身代码忽略 position_ids，请关闭。",
        ("Packing", "样本拼接（packing）"),
        "advanced",
    )
    trained_tokens_loss: bool = _f(
        True,
        "Project onto the vocabulary only the positions that predict a trained token, a chunk at a "
        "time: same loss and gradients, less memory and time. Off: the model's own full-logits loss.",
        "只把预测训练 token 的位置分块投影到词表上：损失和梯度相同，更省内存和时间。关闭：使用模型自带的全量 logits 损失。",
        ("Trained-tokens loss", "仅训练 token 的损失"),
        "advanced",
    )
    fused_lora_dropout: bool = _f(
        True,
        "On the CPU, apply LoRA dropout inside lora_A as a bool mask: same maths, less memory. "
        "Off: peft's own dropout module.",
        "在 CPU 上把 LoRA dropout 以布尔掩码融合进 lora_A：计算相同，更省内存。关闭：使用 peft 自带的 dropout。",
        ("Fused LoRA dropout", "融合 LoRA dropout"),
        "advanced",
    )
    fused_swiglu: bool = _f(
        True,
        "Compute the MLP's silu(gate) * up as one step that keeps only gate and up for backward "
        "(Llama, Mistral, Qwen2/3 and similar): same maths, a third less MLP activation memory. "
        "Off: the model's own MLP.",
        "把 MLP 的 silu(gate) * up 合为一步，反向只保留 gate 与 up（Llama、Mistral、Qwen2/3 等）："
        "计算相同，MLP 激活内存少三分之一。关闭：使用模型自带的 MLP。",
        ("Fused SwiGLU", "融合 SwiGLU"),
        "advanced",
    )
    shared_lora_input: bool = _f(
        True,
        "Compute the LoRA A products of q/k/v, and of gate/up, which read the same input, as one product "
        "with one dropout draw per group: faster steps, the same weights and gradient formulas (the "
        "group's members drop the same inputs). Off: one product and draw per layer, as peft does.",
        "q/k/v 以及 gate/up 读取同一输入，将它们的 LoRA A 乘积合为一次计算、每组一次 dropout 采样："
        "每步更快，权重与梯度公式不变（同组成员丢弃相同的输入）。关闭：按 peft 的做法每层单独计算与采样。",
        ("Shared LoRA input", "共享 LoRA 输入"),
        "advanced",
    )
    lora_addmm: bool = _f(
        True,
        "Add each LoRA update to the base layer's output in one addmm instead of peft's multiply and "
        "add: the same sum, fewer passes over the output. Off: peft's own forward.",
        "用一次 addmm 把 LoRA 更新加到基础层输出上，代替 peft 的乘法加加法：结果相同，对输出的遍历更少。"
        "关闭：使用 peft 自带的前向计算。",
        ("LoRA update in one addmm", "LoRA 更新合并为 addmm"),
        "advanced",
    )
    fused_adamw: bool = _f(
        True,
        "Update all the LoRA weights with torch's fused AdamW kernel, one call a step, on a CPU, CUDA or "
        "MPS device: the same update, less per-step overhead (it shows at batch 1). Off: torch's default "
        "AdamW (on the CPU a loop over the weights).",
        "在 CPU、CUDA 或 MPS 设备上用 torch 的融合 AdamW 内核更新全部 LoRA 权重，每步一次调用：更新相同，"
        "每步开销更小（批大小为 1 时明显）。关闭：使用 torch 默认的 AdamW（在 CPU 上逐个权重循环）。",
        ("Fused AdamW", "融合 AdamW"),
        "advanced",
    )
    cpu_allocator: str = _f(
        MIMALLOC,
        "The C allocator of the training process on a Linux machine without a GPU: 'mimalloc' (the "
        "process restarts itself with it preloaded; freed memory kept for reuse) or 'system' (glibc's "
        "malloc). On long rows mimalloc held the peak RAM near half of glibc's and the steps were "
        "faster (measured). Where mimalloc is not installed (it ships for x86_64), the system's.",
        "在没有 GPU 的 Linux 机器上训练进程使用的 C 内存分配器：'mimalloc'（进程预加载它后自行重启；"
        "释放的内存留作复用）或 'system'（glibc 的 malloc）。长序列时 mimalloc 的峰值内存约为 glibc 的一半，"
        "且每步更快（实测）。未安装 mimalloc 时（它只提供 x86_64 版本）使用系统分配器。",
        ("CPU memory allocator", "CPU 内存分配器"),
        "advanced",
        choices=CPU_ALLOCATORS,
    )
    release_freed_memory: bool = _f(
        True,
        "With the system allocator on the CPU (glibc), hand the heap's free pages back to the system after a decoder layer whenever "
        f"the process's peak RAM has grown by another {TRIM_PEAK_STEP_BYTES >> 20} MiB: on long rows the peak stays near what training "
        "holds (about half) instead of growing with the heap's holes, and long steps can be slower (by up "
        "to a fifth, measured); once the peak is set, nothing more is done. Off: the C library's default.",
        f"使用系统分配器在 CPU（glibc）上时，每当进程的峰值内存又增长 {TRIM_PEAK_STEP_BYTES >> 20} MiB，就在解码层之后把堆中的空闲页归还系统："
        "长序列时峰值内存接近训练实际占用（约减半），而不随堆碎片增长，长序列的每步可能变慢（实测最多约五分之一）；峰值稳定后不再处理。关闭：使用 C 库默认行为。",
        ("Return freed memory", "归还释放的内存"),
        "advanced",
    )
    cpu_bf16: bool = _f(
        True,
        "On a CPU with native bf16 (AMX or AVX512-BF16): frozen base weights in bf16, and the base "
        "layers' matrix products in bf16; LoRA weights, their update, the residual stream, attention "
        "and the optimizer stay float32. Faster products and less weight memory, with the loss within "
        "bf16 rounding of float32's. No effect on other CPUs (there bf16 is emulated, slower than "
        "float32), on GPUs, or with quantization. Off: float32 throughout.",
        "在支持原生 bf16 的 CPU（AMX 或 AVX512-BF16）上：冻结的基座权重用 bf16，基座层的矩阵乘用 bf16 计算；"
        "LoRA 权重及其增量、残差流、注意力和优化器仍为 float32。矩阵乘更快、权重更省内存，损失与 float32 "
        "仅差 bf16 舍入。在其他 CPU（bf16 为模拟，比 float32 慢）、GPU 上或量化时不起作用。关闭：全程 float32。",
        ("bf16 on the CPU", "CPU 上使用 bf16"),
        "advanced",
    )
    logging_steps: int = _f(
        1,
        "Write a step event every this many optimizer steps.",
        "每隔多少优化步记录一次 step 事件。",
        ("Logging steps", "日志间隔步数"),
        "advanced",
        gt=0,
        le=10_000_000,
    )
    eval_steps: int = _f(
        20,
        "Evaluate on the held-out split every this many steps.",
        "每隔多少步在验证集上评估一次。",
        ("Eval steps", "评估间隔步数"),
        "advanced",
        gt=0,
        le=10_000_000,
    )
    save_steps: int = _f(
        50,
        "Save a resumable checkpoint every this many steps.",
        "每隔多少步保存一次可继续训练的检查点。",
        ("Save steps", "保存间隔步数"),
        "advanced",
        gt=0,
        le=10_000_000,
    )
    save_total_limit: int = _f(
        2,
        "Keep at most this many checkpoints.",
        "最多保留多少个检查点。",
        ("Checkpoints kept", "保留检查点数"),
        "advanced",
        gt=0,
        le=10_000,
    )
    num_processes: int = _f(
        1,
        "Training processes, one per GPU (gloo processes on a CPU): each takes its own batches, so the "
        "effective batch is per-device batch x accumulation x processes. Above 1, core.train relaunches "
        "itself through `accelerate launch`.",
        "训练进程数，每块 GPU 一个（CPU 上为 gloo 进程）：每个进程各取自己的批次，所以有效批大小 = 单设备批大小 × "
        "梯度累积 × 进程数。大于 1 时 core.train 通过 `accelerate launch` 重新启动自身。",
        ("Processes (devices)", "进程数（设备数）"),
        "advanced",
        ge=1,
        le=1024,
    )
    distributed: str = _f(
        "ddp",
        "With num_processes > 1: 'ddp' (a full copy per device; also on a CPU), 'fsdp' (weights sharded, "
        "QLoRA works; GPUs), 'deepspeed_zero2' or 'deepspeed_zero3' (GPUs, `pip install deepspeed`, no "
        "quantization).",
        "num_processes 大于 1 时的并行方式：'ddp'（每个设备一份完整模型；CPU 上也可用）、'fsdp'（权重分片，"
        "支持 QLoRA；需要 GPU）、'deepspeed_zero2' 或 'deepspeed_zero3'（需要 GPU 和 `pip install deepspeed`，不支持量化）。",
        ("Multi-device strategy", "多设备策略"),
        "advanced",
        choices=DISTRIBUTED_STRATEGIES,
    )
    # --- run folder (set by the page itself) ---
    output_dir: str = _f(
        "runs/run",
        "The run folder: config, events, log, checkpoints, adapter.",
        "运行文件夹：配置、事件、日志、检查点和适配器。",
        ("Run folder", "运行文件夹"),
        "advanced",
        non_empty=True,
    )
    resume: bool = _f(
        False,
        "Continue from the newest complete checkpoint in output_dir.",
        "从 output_dir 中最新的完整检查点继续训练。",
        ("Resume", "继续训练"),
        "advanced",
    )

    def validate(self) -> None:
        """Raise UserInputError listing every problem, or return."""
        problems = [p for name in FIELDS for p in _field_problems(name, getattr(self, name))]
        if self.max_steps <= 0 and self.num_train_epochs != AUTO and not self.num_train_epochs > 0:
            problems.append(
                f"num_train_epochs must be > 0 when max_steps is not set, got {_show(self.num_train_epochs)}"
            )
        needs = {"openai": ("augment_base_url", "augment_model"), "local": ("augment_model",)}
        problems += [
            f"{name} must be set when augment is {self.augment}"
            for name in needs.get(self.augment, ())
            if not getattr(self, name).strip()
        ]
        if self.max_steps == 0 or self.max_steps < -1:
            problems.append(f"max_steps must be -1 (use epochs) or >= 1, got {self.max_steps}")
        if problems:
            raise UserInputError("Invalid training config:", problems)

    # --- derived numbers the advisor, the UI and the trainer agree on ---
    @property
    def effective_batch_size(self) -> int:
        """Examples per optimizer step, over every process: the global batch."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.num_processes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}
SPECS: dict[str, FieldSpec] = {name: f.metadata["spec"] for name, f in FIELDS.items()}
# A field's value type; for a field that also takes "auto" (`float | str`), the number type.
TYPES: dict[str, type] = {
    name: typing.get_args(hint)[0] if typing.get_args(hint) else hint
    for name, hint in typing.get_type_hints(TrainConfig).items()
}


def field_help(name: str, lang: str = "en") -> str:
    spec = SPECS[name]
    return spec.help_zh if lang == "zh" else spec.help


def field_label(name: str, lang: str = "en") -> str:
    spec = SPECS[name]
    return spec.label_zh if lang == "zh" else spec.label


def fields_in_group(group: str) -> list[str]:
    """The group's fields in declaration order (the page lays them out in this order)."""
    return [name for name, spec in SPECS.items() if spec.group == group and name not in HEADLESS_ONLY]


def _field_problems(name: str, value: Any) -> list[str]:
    """What is wrong with one field's value, from its registry entry."""
    spec = SPECS[name]
    if spec.auto and value == AUTO:
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{name} must be a finite number, got {value}"]
    if spec.choices and value not in spec.choices:
        return [f"{name} must be one of {', '.join(spec.choices)}; got {_show(value)}"]
    if spec.non_empty and not str(value).strip():
        return [f"{name} must not be empty"]
    if spec.ge is not None and spec.lt is not None and not spec.ge <= value < spec.lt:
        return [f"{name} must be in [{_show(spec.ge)}, {_show(spec.lt)}), got {_show(value)}"]
    for bound, ok, word in (
        (spec.gt, lambda b: value > b, ">"),
        (spec.ge, lambda b: value >= b, ">="),
        (spec.lt, lambda b: value < b, "<"),
        (spec.le, lambda b: value <= b, "<="),
    ):
        if bound is not None and not ok(bound):
            why = " (a larger value can only be a typo)" if word in ("<", "<=") and bound > 1 else ""
            return [f"{name} must be {word} {_show(bound)}, got {_show(value)}{why}"]
    return []


def _type_name(kind: type) -> str:
    return {bool: "a bool", int: "an int", float: "a float", str: "a str"}[kind]


def _coerce(name: str, raw: Any, problems: list[str]) -> Any:
    """Turn a YAML or command-line value into the field's type, or record why not."""
    kind = TYPES[name]
    if SPECS[name].auto and isinstance(raw, str) and raw.strip().lower() == AUTO:
        return AUTO
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if kind is int:
            if raw is None or isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        if kind is float:
            if isinstance(raw, bool) or raw is None:
                raise ValueError
            return float(raw)
        assert kind is str, f"TrainConfig.{name}: no coercion for {kind}"  # a new field type needs a rule here
        # str fields: YAML may read `quantization_bit: 4` as an int, `none` as a string, `null` as None.
        if raw is None:
            return "none" if "none" in SPECS[name].choices else ""
        if name == "lora_target" and isinstance(raw, list) and all(isinstance(t, str) for t in raw):
            return ",".join(raw)  # `lora_target: [q_proj, v_proj]` means the same as "q_proj,v_proj"
        if isinstance(raw, (list, dict)):  # str() would turn a list into "['a', 'b']" silently
            raise ValueError
        return str(raw)
    except (ValueError, TypeError, OverflowError):  # TypeError: float([1]), int({})
        problems.append(f"{name} must be {_type_name(kind)}, got {_show(raw)}")
        return FIELDS[name].default


def config_from_dict(values: dict[str, Any], source: str = "config", notes: list[str] | None = None) -> TrainConfig:
    """Build and validate a TrainConfig; unknown keys are errors that name the nearest valid key.
    A LLaMA-Factory file's keys are read in our terms first (core.lf_compat); what that leaves out
    is said in `notes` (the CLI prints them)."""
    from core.lf_compat import from_lf  # it reads this module's field registry

    problems: list[str] = []
    values = from_lf(values, problems, notes if notes is not None else [])
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key)[:MAX_QUOTED_CHARS], list(FIELDS), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"unknown key {_show(str(key))}{hint}")
            continue
        kwargs[key] = _coerce(key, raw, problems)
    # Validate even when keys or types were wrong (those fields hold their defaults), so one
    # message lists every problem in the file, not only the first kind found.
    config = TrainConfig(**kwargs)
    try:
        config.validate()
    except UserInputError as err:
        problems += err.problems
    if problems:
        raise UserInputError(f"Invalid training config in {source}:", problems)
    return config


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` command-line overrides; values are parsed as YAML scalars (3e-4, true, 8)."""
    values: dict[str, Any] = {}
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise UserInputError("Overrides must look like key=value:", [f"got {p!r}" for p in bad])
    for pair in pairs:
        key, _, text = pair.partition("=")
        values[key.strip()] = _scalar(text)
    return values


def _scalar(text: str) -> Any:
    """A YAML scalar (3e-4, true, 8, null, 'quoted'); any other text is kept as typed, since a
    free-text value like `system_prompt=Note: be brief` (a YAML mapping), `#1 rule` (a YAML
    comment) or `[x` (a YAML error) means the text itself."""
    if not text.strip():
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None:
        return None if text.strip() in ("null", "Null", "NULL", "~") else text
    return value if isinstance(value, (bool, int, float, str)) else text


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"Config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path} is not valid YAML:", [str(err).splitlines()[0]]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserInputError(f"{path} must hold a mapping of key: value, got a {type(data).__name__}")
    return data


def load_config(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    ignore_keys: tuple[str, ...] = ("description",),
    notes: list[str] | None = None,
) -> TrainConfig:
    """Load a YAML config (ours or LLaMA-Factory's). A preset file is a valid config too: its
    `description` is for people."""
    values = {k: v for k, v in read_yaml_mapping(path).items() if k not in ignore_keys}
    values.update(overrides or {})
    return config_from_dict(values, source=str(path), notes=notes)


def config_to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(config_to_yaml(config), encoding="utf-8")
