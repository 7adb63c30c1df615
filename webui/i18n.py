"""Every label, help text and message of the page, in English and Simplified Chinese.

A TrainConfig field's label and help, in both languages, come from its registry entry in
core.config, so the page, the YAML docs and the CLI cannot drift apart. Validation problems stay
in English: they name config keys and values, which read the same in both languages. The
advisor's notes come in the page's language (core.advisor takes `lang`).
"""

from __future__ import annotations

from core import config

LANGUAGES = [("English", "en"), ("简体中文", "zh")]
DEFAULT_LANGUAGE = "en"

# key -> (English, 中文). Messages use str.format placeholders.
TEXT: dict[str, tuple[str, str]] = {
    # --- page and top bar
    "app.title": ("# LoRA Tailor", "# LoRA Tailor"),
    "app.subtitle": (
        "Fine-tune a chat model with LoRA: **1 Data** → **2 Train** → **3 Chat** → Export. "
        "The demo dataset and the *cpu-quick-demo* preset are ready: press **Start** on the Train tab.",
        "用 LoRA 微调对话模型：**1 数据** → **2 训练** → **3 对话** → 导出。"
        "示例数据集和 *cpu-quick-demo* 预设已选好：在「训练」页点击 **开始**。",
    ),
    "top.language": ("Language / 语言", "Language / 语言"),
    "top.preset": ("Preset", "预设"),
    "top.preset.info": ("Fills the Train tab with a tested recipe.", "用经过验证的配方填充「训练」页。"),
    "tab.data": ("1 · Data", "1 · 数据"),
    "tab.train": ("2 · Train", "2 · 训练"),
    "tab.chat": ("3 · Chat", "3 · 对话"),
    "tab.runs": ("Runs", "运行记录"),
    "tab.export": ("Export", "导出"),
    "status.done": ("done", "已完成"),
    "status.stopped": ("stopped", "已停止"),
    "status.error": ("error", "出错"),
    "status.running": ("running", "训练中"),
    "status.starting": ("starting", "启动中"),
    "status.interrupted": ("interrupted", "已中断"),
    "status.new": ("new", "未开始"),
    # --- data tab
    "data.upload": ("Upload .json / .jsonl", "上传 .json / .jsonl"),
    "data.preview": ("Conversation", "对话预览"),
    "data.example": ("Example", "示例编号"),
    "data.loaded": (
        "**{name}** · {format} format · {count} conversations · {turns} turns on average",
        "**{name}** · {format} 格式 · {count} 段对话 · 平均 {turns} 轮",
    ),
    "data.problems": (
        "The dataset cannot be used yet. Fix these problems and upload it again:",
        "该数据集暂时无法使用。请修正以下问题后重新上传：",
    ),
    "data.registered": ("Datasets registered in dataset_info.json", "dataset_info.json 中登记的数据集"),
    "data.registry_bad": (
        "The folder's dataset_info.json cannot be read:",
        "该文件夹的 dataset_info.json 无法读取：",
    ),
    "data.lengths": ("### Token lengths", "### Token 长度"),
    "data.analyze": ("Analyze token lengths", "分析 token 长度"),
    "data.use_suggested": ("Use suggested cutoff", "使用建议的 cutoff"),
    "data.use_suggested_n": ("Use suggested cutoff ({value})", "使用建议的 cutoff（{value}）"),
    "data.analysis_hint": (
        "Counts every conversation's tokens with the model's tokenizer and suggests a cutoff_len.",
        "用模型的分词器统计每段对话的 token 数，并给出建议的 cutoff_len。",
    ),
    "data.suggested_set": ("cutoff_len is now {value} on the Train tab.", "「训练」页的 cutoff_len 已设为 {value}。"),
    "data.no_suggestion": ("Analyze the token lengths first.", "请先分析 token 长度。"),
    "data.upload_saved": ("Uploaded to {path}", "已上传到 {path}"),
    "data.hist.current": ("current cutoff {value}", "当前 cutoff {value}"),
    "data.hist.suggested": ("suggested {value}", "建议 {value}"),
    "data.hist.axis": ("tokens per conversation", "每段对话的 token 数"),
    "data.stats.header": (
        "| {count} examples | mean | p50 | p90 | p99 | max |",
        "| {count} 个样本 | 平均 | p50 | p90 | p99 | 最大 |",
    ),
    "data.stats.total": ("total tokens", "总 token"),
    "data.stats.prompt": ("prompt tokens", "提示 token"),
    "data.stats.supervised": ("trained tokens", "训练 token"),
    "data.stats.interval": ("95% interval", "95% 置信区间"),
    "data.exact_running": (
        "Quick numbers from a sample, shown above. Counting every conversation exactly: {done:,} of {total:,}…",
        "上面是抽样得到的快速结果。正在精确统计每段对话：{done:,} / {total:,}…",
    ),
    "data.cand.header": (
        "| cutoff_len | truncated | dropped | answer tokens lost | padding |",
        "| cutoff_len | 被截断 | 被丢弃 | 丢失的回答 token | 填充占比 |",
    ),
    "data.suggestion": (
        "**Suggested cutoff_len: {value}** (now {current}). {reason}",
        "**建议 cutoff_len：{value}**（当前 {current}）。{reason}",
    ),
    # --- data tab: augmentation
    "aug.panel": ("Augment phrasings", "扩充问法"),
    "aug.help": (
        "A fact bot must give a fact however the customer asks for it: this writes new phrasings of every "
        "user turn (the answers stay as they are), keeps every number, name and code, drops copies and "
        "near-duplicates and balances the facts. **Preview** shows them per fact; **Write** saves "
        "`<name>.augmented.jsonl` (the original is never changed) and selects it. To make augmentation "
        "part of a run instead, set *augment* on the Train tab: the run then holds its probe questions out "
        "first, so none leaks into the phrasings (a file written here and trained with *probes: auto* can "
        "leak).",
        "事实型机器人要能回答客户各种问法的同一个事实：这里为每个用户问题写出新的问法（回答保持不变），保留所有数字、"
        "名称和编号，去掉重复和近似重复，并让各个事实的问法数量均衡。**预览** 按事实列出新问法；**写入** 保存为 "
        "`<名称>.augmented.jsonl`（原文件不会改动）并选中它。若想把扩充作为训练的一部分，请在「训练」页设置 "
        "*augment*：训练会先留出探针问题，新问法不会泄漏到探针里（这里写出的文件配合 *probes: auto* 训练可能泄漏）。",
    ),
    "aug.generator": ("Generator", "生成方式"),
    "aug.generator.info": (
        "rules: offline, English and Chinese · openai: an OpenAI-compatible endpoint "
        "(OpenAI, Ollama, vLLM, LM Studio) · local: a local instruct model (1-3B, on a GPU)",
        "rules：离线规则，支持中英文 · openai：OpenAI 兼容接口（OpenAI、Ollama、vLLM、LM Studio）"
        " · local：本地指令模型（1–3B，需要 GPU）",
    ),
    "aug.fact": ("Only the fact whose answer contains", "只看回答中包含以下内容的事实"),
    "aug.fact.info": (
        "Parts joined by ' + ' must all occur (numbers, amounts and times match in any "
        "writing). Empty = every fact. Filters the preview; Write augments every fact.",
        "用 ' + ' 连接的各部分都须出现（数字、金额、时间的不同写法都算）。留空 = 所有事实。"
        "只筛选预览；写入时扩充所有事实。",
    ),
    "aug.preview": ("Preview phrasings", "预览新问法"),
    "aug.write": ("Write augmented dataset", "写入扩充后的数据集"),
    "aug.table": ("New phrasings per fact", "每个事实的新问法"),
    "aug.col.fact": ("fact (the answer)", "事实（回答）"),
    "aug.col.originals": ("phrasings in the data", "数据中的问法"),
    "aug.col.new": ("new phrasings", "新问法"),
    "aug.counts": (
        "**{before} → {after} conversations** (+{kept} new phrasings of {turns} user turns) · removed "
        "{copies} copies, {near} near-duplicates, {lost} that lost a fact, {leaked} close to a probe question",
        "**{before} → {after} 段对话**（{turns} 个用户问题新增 {kept} 个问法）· 去掉 {copies} 个重复、"
        "{near} 个近似重复、{lost} 个丢失事实的、{leaked} 个与探针问题过于相近的",
    ),
    "aug.report": ("Report (phrasings per fact, before → after)", "报告（每个事实的问法数，扩充前 → 扩充后）"),
    "aug.progress": ("Writing phrasings, user turn by user turn", "正在逐个用户问题生成问法"),
    "aug.failed": ("Augmentation failed:", "扩充失败："),
    "aug.partial": ("Some user turns got no new phrasings:", "部分用户问题没有得到新问法："),
    "aug.no_fact": ("No answer in {dataset} contains {fact}.", "{dataset} 中没有回答包含 {fact}。"),
    "aug.written": ("Wrote **{path}** and selected it as the dataset.", "已写入 **{path}** 并选为数据集。"),
    # --- train tab
    "train.run_name": ("Run name", "运行名称"),
    "train.run_name.info": (
        "Folder under the runs directory; empty = date and time.",
        "runs 目录下的文件夹名；留空则使用日期时间。",
    ),
    "train.group.optim": ("### Optimisation", "### 优化"),
    "train.group.data": ("### Data and prompt", "### 数据与提示词"),
    "train.group.facts": ("### Fact probes", "### 事实探针"),
    "train.group.lora": ("### LoRA", "### LoRA"),
    "train.advanced": ("Advanced", "高级选项"),
    "train.start": ("▶ Start", "▶ 开始"),
    "train.stop": ("■ Stop", "■ 停止"),
    "train.resume": ("↻ Resume", "↻ 继续训练"),
    "train.preview": ("Preview config", "预览配置"),
    "train.why.running": ("A job is running ({run}): stop it first.", "已有任务在运行（{run}）：请先停止它。"),
    "train.why.invalid": ("Fix the values listed below first.", "请先修正下方列出的取值。"),
    "train.preview_code": ("The YAML that will run", "将要运行的 YAML 配置"),
    "train.preview_lf": (
        "The same run as a LLaMA-Factory YAML (docs/llamafactory.md)",
        "同一配置的 LLaMA-Factory YAML（见 docs/llamafactory.md）",
    ),
    "train.plan": (
        "**Effective batch {batch}** · {steps_per_epoch} steps per epoch · **{total} steps** in total "
        "({examples} examples)",
        "**有效批大小 {batch}** · 每轮 {steps_per_epoch} 步 · 共 **{total} 步**（{examples} 个样本）",
    ),
    "train.plan_no_data": (
        "**Effective batch {batch}** · load a dataset to see the step count",
        "**有效批大小 {batch}** · 加载数据集后显示步数",
    ),
    "train.invalid": ("Fix these values first:", "请先修正以下取值："),
    "train.chart": ("Loss", "损失曲线"),
    "train.apply": ("Apply: {changes}", "应用：{changes}"),
    "train.recall_chart": ("Fact recall (probes answered right)", "事实召回率（探针答对的比例）"),
    "train.misses": ("Probes the newest adapter missed", "最新适配器答错的探针"),
    "train.miss_fact": ("Missed fact", "答错的事实"),
    "train.miss_fact.info": (
        "Pick one and get more phrasings of it on the Data tab.",
        "选一个，到「数据」页为它生成更多问法。",
    ),
    "train.miss_augment": ("More phrasings for this fact", "为这个事实生成更多问法"),
    # --- train tab: the pre-flight estimate (core.estimate)
    "est.calibrate": ("Calibrate speed on this machine", "在本机校准速度"),
    "est.line": (
        "**Estimate** ({source}): ~{step} a step × {steps} steps ≈ **{total}** · peak {kind} "
        "**{peak}** of {available} free",
        "**预估**（{source}）：每步约 {step} × {steps} 步 ≈ **{total}** · {kind}峰值 **{peak}**，可用 {available}",
    ),
    "est.line_no_steps": (
        "**Estimate** ({source}): ~{step} a step · peak {kind} **{peak}** of {available} free",
        "**预估**（{source}）：每步约 {step} · {kind}峰值 **{peak}**，可用 {available}",
    ),
    "est.parts": (
        "weights {weights} · LoRA + optimizer {lora} · activations {activations} · logits {logits} · runtime {runtime}",
        "权重 {weights} · LoRA + 优化器 {lora} · 激活 {activations} · logits {logits} · 运行时 {runtime}",
    ),
    "est.loading": (
        " · the peak comes while loading: the checkpoint's {loading} are read whole while the weights are converted",
        " · 峰值出现在加载时：转换权重时会完整读入检查点的 {loading}",
    ),
    "est.per_process": (" (each of the {processes} processes)", "（{processes} 个进程各占这么多）"),
    "est.source.calibrated": ("speed calibrated on this machine", "速度已在本机校准"),
    "est.source.scaled": (
        "speed from this machine's calibration of other settings",
        "速度取自本机其他设置的校准",
    ),
    "est.source.rough": ("rough default speed: calibrate for a measured one", "粗略的默认速度：校准后更准确"),
    "est.no_data": (
        "Every example is taken at cutoff_len ({cutoff} tokens) until a dataset is loaded.",
        "加载数据集之前，每个样本按 cutoff_len（{cutoff} 个 token）计算。",
    ),
    "est.no_fit": (
        "⚠️ **Will not fit**: needs ~{peak}, {available} of {kind} free. Change one of these:",
        "⚠️ **放不下**：需要约 {peak}，{kind}可用 {available}。请修改以下之一：",
    ),
    "est.fix": ("- {change} → ~{peak}{fits}", "- {change} → 约 {peak}{fits}"),
    "est.fits": (" (fits)", "（可以放下）"),
    "est.tight": (
        "⚠️ Tight: ~{peak} of {available} {kind} free; other programs may push it over.",
        "⚠️ 内存紧张：约 {peak}，{kind}可用 {available}；其他程序可能导致不够用。",
    ),
    "est.unavailable": ("No estimate: {reason}", "无法预估：{reason}"),
    "est.calibrating": (
        "⏳ Calibrating (a few training steps in a separate process)… {line}",
        "⏳ 正在校准（在独立进程中跑几个训练步）…… {line}",
    ),
    "est.calibrated": ("Calibrated: {line}", "校准完成：{line}"),
    "est.calibration_failed": ("Calibration failed: {reason}", "校准失败：{reason}"),
    "est.busy_training": (
        "A training job is running ({run}): calibrate when it has ended, so neither slows the other.",
        "正在训练（{run}）：请在训练结束后再校准，以免互相拖慢。",
    ),
    "est.busy_calibrating": ("A calibration is already running.", "已有校准在运行。"),
    "mon.col.question": ("question", "问题"),
    "mon.col.expected": ("expected", "应包含"),
    "mon.col.answer": ("answer", "回答"),
    "mon.col.fact": ("fact", "事实"),
    "train.log": ("Last lines of train.log", "train.log 最后几行"),
    "msg.started": (
        "Started run **{run}**. The first step appears after the model has loaded.",
        "已开始运行 **{run}**。模型加载完成后会出现第一步。",
    ),
    "msg.resumed": ("Resuming run **{run}** from its last checkpoint.", "正在从最近的检查点继续运行 **{run}**。"),
    "msg.job_running": (
        "A job is already running (**{run}**): stop it, or wait for it to finish.",
        "已有任务在运行（**{run}**）：请先停止它，或等待它结束。",
    ),
    "msg.stop_requested": (
        "Stopping **{run}**: it finishes the current step, saves the adapter and stops.",
        "正在停止 **{run}**：完成当前步后保存适配器并停止。",
    ),
    "msg.nothing_running": ("Nothing is running.", "当前没有运行中的任务。"),
    "msg.nothing_to_resume": ("Nothing to resume: no stopped run.", "没有可继续的运行。"),
    "mon.no_run": ("No run yet: press **▶ Start**.", "还没有运行：点击 **▶ 开始**。"),
    "mon.starting": (
        "**{run}** · starting: loading the model and tokenizing the data…",
        "**{run}** · 启动中：正在加载模型并对数据分词……",
    ),
    "mon.progress": (
        "**{run}** · {status} · step **{step}/{total}** · epoch {epoch:.2f} · "
        "{tps:.0f} tokens/s · elapsed {elapsed} · ETA {eta}",
        "**{run}** · {status} · 第 **{step}/{total}** 步 · 第 {epoch:.2f} 轮 · "
        "{tps:.0f} token/秒 · 已用 {elapsed} · 预计剩余 {eta}",
    ),
    "mon.stopping": ("stop requested, finishing the step…", "已请求停止，正在完成当前步……"),
    "mon.failed": ("**Run {run} failed:**", "**运行 {run} 失败：**"),
    "mon.final": (
        "**{run}** · {status} at step {step}/{total} · final loss {loss} · eval loss {eval_loss}",
        "**{run}** · {status}，第 {step}/{total} 步 · 最终损失 {loss} · 验证损失 {eval_loss}",
    ),
    # --- chat tab
    "chat.run": ("Adapter", "适配器"),
    "chat.run.info": ("A finished or stopped run, or the base model alone.", "已完成或已停止的运行，或只用基础模型。"),
    "chat.base_only": ("(base model only)", "（仅基础模型）"),
    "chat.refresh": ("↻ Refresh", "↻ 刷新"),
    "chat.system": ("System prompt", "系统提示词"),
    "chat.system.info": (
        "Defaults to the run's system_prompt, so chat matches training.",
        "默认使用该运行的 system_prompt，与训练保持一致。",
    ),
    "chat.temperature": ("Temperature", "温度"),
    "chat.temperature.info": (
        "0 = greedy: the same question gets the same answer.",
        "0 表示贪心解码：同一问题得到同一回答。",
    ),
    "chat.max_new_tokens": ("Max new tokens", "最大生成 token 数"),
    "chat.compare": ("Also answer with the base model (side by side)", "同时用基础模型回答（并排对比）"),
    "chat.base": ("Base model", "基础模型"),
    "chat.tuned": ("Tuned", "微调后"),
    "chat.input": ("Message", "消息"),
    "chat.placeholder": (
        "Ask something the training data covers, or something it does not…",
        "问一个训练数据涵盖的问题，或一个不涵盖的问题……",
    ),
    "chat.send": ("Send", "发送"),
    "chat.clear": ("Clear", "清空"),
    "chat.error": ("Chat failed:", "对话失败："),
    # --- runs tab
    "runs.table": ("Runs", "运行记录"),
    "runs.refresh": ("↻ Refresh", "↻ 刷新"),
    "runs.overlay": ("Overlay loss curves", "叠加损失曲线"),
    "runs.chart": ("Loss of the selected runs", "所选运行的损失"),
    "runs.select": ("Run", "运行"),
    "runs.config": ("Its config.yaml", "它的 config.yaml"),
    "runs.resume": ("↻ Resume this run", "↻ 继续该运行"),
    "runs.delete": ("Delete this run", "删除该运行"),
    "runs.confirm": ("Yes, delete it", "确认删除"),
    "runs.cancel": ("Cancel", "取消"),
    "runs.confirm_question": (
        "Delete **{run}** and everything in its folder (adapter, checkpoints, log)?",
        "删除 **{run}** 及其文件夹中的所有内容（适配器、检查点、日志）？",
    ),
    "runs.deleted": ("Deleted **{run}**.", "已删除 **{run}**。"),
    "ph.found": (
        "This dataset holds placeholders ({placeholders}): fill them into a copy, which is then selected.",
        "该数据集含有占位符（{placeholders}）：填写后写入副本，并选中该副本。",
    ),
    "ph.name": ("Bot name → {{name}}", "机器人名称 → {{name}}"),
    "ph.author": ("Company / author → {{author}}", "公司 / 作者 → {{author}}"),
    "ph.other": ("Other placeholders: key = value, a line each", "其他占位符：每行一个 key = value"),
    "ph.fill": ("Fill into a copy", "填入副本"),
    "ph.written": ("Filled copy written and selected: {path}", "已写入并选中填好的副本：{path}"),
    "ph.failed": ("Cannot fill the placeholders", "无法填写占位符"),
    "runs.open_path": ("Open a LLaMA-Factory output folder", "打开 LLaMA-Factory 输出目录"),
    "runs.open_path.info": (
        "Its output_dir (trainer_log.jsonl, the adapter): listed as a run to plot, chat with and export. "
        "Open it again to refresh it.",
        "即其 output_dir（含 trainer_log.jsonl 与适配器）：作为一次运行列出，可画曲线、对话和导出。再次打开即刷新。",
    ),
    "runs.open": ("Open", "打开"),
    "runs.opened": ("Opened **{run}** from LLaMA-Factory.", "已从 LLaMA-Factory 打开 **{run}**。"),
    "runs.open_failed": ("Cannot open that folder", "无法打开该目录"),
    "runs.col.name": ("run", "运行"),
    "runs.col.status": ("status", "状态"),
    "runs.col.date": ("date", "日期"),
    "runs.col.steps": ("steps", "步数"),
    "runs.col.loss": ("final loss", "最终损失"),
    "runs.col.eval": ("eval loss", "验证损失"),
    "runs.col.model": ("model", "模型"),
    "runs.col.dataset": ("dataset", "数据集"),
    # --- export tab
    "export.run": ("Run", "运行"),
    "export.intro": (
        "The adapter is a standard PEFT folder: `PeftModel.from_pretrained(base, folder)` loads it "
        "anywhere. Merging writes a full model that needs no peft. GGUF writes the merged model for "
        "llama.cpp, Ollama and LM Studio, checks it against the merged model, and adds an Ollama Modelfile. "
        "Every export has a README.md model card.",
        "适配器是标准的 PEFT 文件夹：在任何地方用 `PeftModel.from_pretrained(base, folder)` 即可加载。"
        "合并会写出一个不再需要 peft 的完整模型。GGUF 把合并后的模型写成 llama.cpp、Ollama 和 LM Studio "
        "可用的文件，与合并模型逐一核对，并附上 Ollama Modelfile。每种导出都带有 README.md 模型卡。",
    ),
    "export.zip": ("Download adapter (.zip)", "下载适配器（.zip）"),
    "export.merge": ("Merge into the base model", "合并到基础模型"),
    "export.file": ("Adapter zip", "适配器压缩包"),
    "export.zip_done": ("Adapter zipped: `{path}`", "适配器已打包：`{path}`"),
    "export.merge_done": (
        'Merged model saved to `{path}`: load it with `AutoModelForCausalLM.from_pretrained("{path}")`.',
        '合并后的模型已保存到 `{path}`：用 `AutoModelForCausalLM.from_pretrained("{path}")` 加载。',
    ),
    "export.gguf": ("Export GGUF + Ollama Modelfile", "导出 GGUF + Ollama Modelfile"),
    "export.gguf_type": ("GGUF type", "GGUF 类型"),
    "export.gguf_done": (
        "GGUF saved to `{path}` with a `Modelfile` beside it: `cd {folder} && ollama create {name} -f Modelfile`."
        "\n\nCheck against the merged model: {check}{note}",
        "GGUF 已保存到 `{path}`，旁边附有 `Modelfile`：`cd {folder} && ollama create {name} -f Modelfile`。"
        "\n\n与合并模型的对比：{check}{note}",
    ),
    "export.gguf_no_template": (
        "\n\nThe chat template is not ChatML, so the Modelfile has no TEMPLATE (its comment says why).",
        "\n\n聊天模板不是 ChatML，因此 Modelfile 中没有 TEMPLATE（其注释说明了原因）。",
    ),
    "export.no_run": ("Pick a run with an adapter first.", "请先选择一个带适配器的运行。"),
    "export.failed": ("Export failed:", "导出失败："),
}


def lang_index(lang: str | None) -> int:
    return 1 if lang == "zh" else 0


def t(key: str, lang: str | None = DEFAULT_LANGUAGE, **values) -> str:
    text = TEXT[key][lang_index(lang)]
    return text.format(**values) if values else text


def has(key: str) -> bool:
    return key in TEXT


def field_label(name: str, lang: str | None = DEFAULT_LANGUAGE) -> str:
    return config.field_label(name, lang or DEFAULT_LANGUAGE)


def field_info(name: str, lang: str | None = DEFAULT_LANGUAGE) -> str:
    """The help line starts with the config key: validation messages and the YAML preview use it."""
    return f"{name} · {config.field_help(name, lang or DEFAULT_LANGUAGE)}"
