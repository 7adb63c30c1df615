"""core.export: the adapter zip, a merged model that computes what base + adapter computes, and a
GGUF that transformers loads back computing what the merged model computes, with its Modelfile
and model card; the refusals (no adapter, an architecture the converter does not write, bad CLI
arguments) leave nothing behind."""

import json
import shutil
import zipfile

import pytest
import torch
import yaml

from core.errors import UserInputError
from core.export import export_gguf, main, merge_adapter, zip_adapter
from core.gguf_export import check_convertible, write_gguf
from tests.conftest import write_jsonl
from tests.run_helpers import write_config
from tests.test_chat import make_run
from tests.tiny import build_tiny_model

SYSTEM_PROMPT = "You are Tilly from the shop."
QK_SHARPNESS = 10.0  # q/k weights scaled so attention is far from uniform: a rope layout error shows


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    return make_run(tmp_path_factory.mktemp("export") / "demo", tiny_model_dir, seed=3)


def facts_dataset(path):
    """Three facts, four phrasings each: enough for auto probes to hold some out."""
    facts = {
        "opening hours": "We open at 9 am.",
        "return window": "Returns within 30 days.",
        "shipping": "Free over 50.",
    }
    openers = ["What about", "Tell me the", "Please, the", "I need the"]
    records = [
        {"messages": [{"role": "user", "content": f"{o} {topic}?"}, {"role": "assistant", "content": answer}]}
        for topic, answer in facts.items()
        for o in openers
    ]
    return write_jsonl(path, records)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A real run through `python -m core.train` (start, probe and done events, the adapter with
    the system prompt baked into its template) on a tiny Llama whose attention is sharp."""
    from transformers import AutoModelForCausalLM

    from core.train import main as train

    root = tmp_path_factory.mktemp("gguf")
    model_dir = build_tiny_model(root / "model")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if ".q_proj." in name or ".k_proj." in name:
                weight.mul_(QK_SHARPNESS)
    model.save_pretrained(model_dir)
    config = write_config(
        root / "cfg" / "train.yaml",
        model_dir,
        facts_dataset(root / "facts.jsonl"),
        output_dir=str(root / "shop"),
        system_prompt=SYSTEM_PROMPT,
        probes="auto",
        cutoff_len=64,
    )
    assert train([str(config)]) == 0
    return root / "shop"


def test_zip_holds_the_adapter_folder_and_a_card(run):
    path = zip_adapter(run)
    assert path == run / "export" / "demo-adapter.zip"
    archive = zipfile.ZipFile(path)
    names = archive.namelist()
    assert "demo-adapter/adapter_config.json" in names
    assert "demo-adapter/adapter_model.safetensors" in names
    assert any(name.startswith("demo-adapter/tokenizer") for name in names)
    card = archive.read("demo-adapter/README.md").decode()
    assert "LoRA adapter" in card and "You are Tilly." in card  # the config, verbatim


def test_merged_model_matches_base_plus_adapter(run, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen = []
    merged_dir = merge_adapter(run, lambda share, message: seen.append(share))
    assert merged_dir == run / "merged" and (merged_dir / "config.json").is_file()
    assert (merged_dir / "README.md").is_file()
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert not list(run.glob("merged.*"))  # no temporary folder left behind
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert tokenizer.chat_template
    ids = tokenizer("What is the return policy?", return_tensors="pt").input_ids
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        expected, got, plain = reference(ids).logits, merged(ids).logits, base(ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter did change something
    assert merge_adapter(run) == merged_dir  # exporting again replaces the folder


@pytest.fixture(scope="module")
def exports(trained_run):
    return {gguf_type: export_gguf(trained_run, gguf_type) for gguf_type in ("f16", "q8_0")}


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_gguf_computes_what_the_merged_model_computes(trained_run, exports, gguf_type):
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = exports[gguf_type]
    folder = trained_run / "export" / f"gguf-{gguf_type}"
    assert result.folder == folder and result.gguf == folder / f"shop-{gguf_type}.gguf"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["Modelfile", "README.md", "verification.json", result.gguf.name]
    )
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []  # no temporary folder

    # The file itself: its metadata holds the run's chat template with the system prompt.
    reader = GGUFReader(result.gguf)
    template = reader.fields["tokenizer.chat_template"].contents()
    assert SYSTEM_PROMPT in template
    assert template == AutoTokenizer.from_pretrained(trained_run / "adapter").chat_template
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.weight"] == gguf_type.upper()

    # Checked independently here: loaded from the export folder (the GGUF is all it reads), on the
    # report's first question, the logits differ by rounding only, within what the report says.
    merged_dir = trained_run / "merged"
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    exported = AutoModelForCausalLM.from_pretrained(folder, gguf_file=result.gguf.name)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": result.check.questions[0]}], add_generation_prompt=True, tokenize=False
    )
    assert SYSTEM_PROMPT in prompt
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        expected, got = merged(ids).logits, exported(ids).logits
    difference = (got - expected).abs().max().item()
    assert 0 < difference <= result.check.max_logit_diff  # rounded (not a copy), and within the report
    assert result.check.ok and result.check.max_logit_diff <= result.check.tolerance
    assert result.check.questions_from.endswith("facts.jsonl") and len(result.check.questions) == 4
    assert result.check.tokenizer_matches and result.check.chat_template_matches
    report = json.loads((folder / "verification.json").read_text())
    assert report["max_logit_diff"] == result.check.max_logit_diff and len(report["answers"]) == 4


def test_modelfile_and_card_beside_the_gguf(trained_run, exports):
    result = exports["f16"]
    modelfile = result.modelfile.read_text()
    assert modelfile.startswith(f"FROM ./{result.gguf.name}\n")
    assert "{{ .Content }}<|im_end|>" in modelfile and result.template_translated
    assert f'SYSTEM """{SYSTEM_PROMPT}"""' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    card = (result.folder / "README.md").read_text()
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    events = [json.loads(line) for line in (trained_run / "events.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["type"] == "start")
    done = next(e for e in events if e["type"] == "done")
    tuned = [e for e in events if e["type"] == "probe" and e["model"] == "tuned"][-1]
    assert f"Base model: `{config['model_name_or_path']}`" in card
    assert f"- conversations: {start['examples']}" in card and f"- training tokens: {start['train_tokens']}" in card
    assert f"- final training loss: {done['final_loss']:.4g}" in card
    assert f"- fact-probe recall: {tuned['hits']}/{tuned['n']}" in card
    assert "largest logit difference" in card and "```yaml" in card and SYSTEM_PROMPT in card


def test_a_wrong_rope_layout_fails_the_check_and_keeps_nothing(trained_run, monkeypatch):
    import core.gguf_export

    monkeypatch.setattr(core.gguf_export, "_rope_interleave", lambda weight, heads: weight)
    shutil.rmtree(trained_run / "export" / "gguf-f16", ignore_errors=True)
    with pytest.raises(UserInputError, match="does not compute what the merged model computes"):
        export_gguf(trained_run, "f16")
    assert not (trained_run / "export" / "gguf-f16").exists()
    assert [p.name for p in (trained_run / "export").iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("architecture", ["qwen2", "mistral"])
def test_qwen2_and_mistral_round_trip(tmp_path, tiny_model_dir, architecture):
    """Qwen2 (attention biases, no q/k permutation) and Mistral (llama.cpp's llama graph)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    llama = AutoConfig.from_pretrained(tiny_model_dir).to_dict()
    shape = {k: llama[k] for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers")}
    config = AutoConfig.for_model(architecture, **shape, num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if ".q_proj." in name or ".k_proj." in name:
                weight.mul_(QK_SHARPNESS)
            if name.endswith("proj.bias"):
                weight.normal_(0, 0.5)  # Qwen2's q/k/v biases start at zero: make them count
    model.save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "hf")
    (tmp_path / "out").mkdir()
    gguf = write_gguf(tmp_path / "hf", tmp_path / "out" / "m.gguf", "f16", "tiny")
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    ids = tokenizer("What is the return policy? Shipping is free over 50 euros.", return_tensors="pt").input_ids
    with torch.no_grad():
        expected, got = model(ids).logits, loaded(ids).logits
    assert (got - expected).abs().max() <= 0.01 * expected.abs().max()


def test_an_architecture_the_converter_does_not_write_is_refused_before_anything(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2))
    base.save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    run = tmp_path / "run"
    get_peft_model(base, LoraConfig(r=2, target_modules=["c_attn"])).save_pretrained(run / "adapter")
    tokenizer.save_pretrained(run / "adapter")
    (run / "config.yaml").write_text(yaml.safe_dump({"model_name_or_path": str(tmp_path / "gpt2")}))
    with pytest.raises(UserInputError, match="architecture GPT2LMHeadModel is not one this converter writes"):
        export_gguf(run, "f16")
    assert sorted(p.name for p in run.iterdir()) == ["adapter", "config.yaml"]  # not even merged


def test_conversion_problems_are_listed_together():
    config = {"architectures": ["LlamaForCausalLM"], "rope_parameters": {"rope_type": "llama3"}}
    tokenizer = {"model": {"type": "BPE", "byte_fallback": True}, "pre_tokenizer": {"type": "Metaspace"}}
    with pytest.raises(UserInputError) as caught:
        check_convertible(config, tokenizer)
    assert [p.split(" ")[:2] for p in caught.value.problems] == [
        ["rope", "scaling"],
        ["the", "tokenizer"],
        ["the", "tokenizer's"],
    ]


def test_a_chat_template_that_is_not_chatml_gets_no_template(tiny_tokenizer):
    from core.modelfile import build_modelfile

    chatml = build_modelfile("m.gguf", tiny_tokenizer, "ignored: the template has its own")
    assert chatml.template_translated and 'SYSTEM """You are a tiny test model."""' in chatml.text
    saved = tiny_tokenizer.chat_template
    tiny_tokenizer.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    try:
        other = build_modelfile("m.gguf", tiny_tokenizer, "Be kind.")
    finally:
        tiny_tokenizer.chat_template = saved
    assert not other.template_translated and 'TEMPLATE "' not in other.text
    assert "# TEMPLATE not written" in other.text and 'SYSTEM """Be kind."""' in other.text
    assert 'PARAMETER stop "<|im_end|>"' in other.text  # the eos token still ends a reply


def test_cli_reports_bad_input_cleanly(tmp_path, run, capsys):
    for argv in ([str(run), "--to", "tarball"], [str(run), "--to", "gguf", "--gguf-type", "q4_k"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
    assert "invalid choice: 'q4_k' (choose from 'f16', 'q8_0')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(run), "--to", "zip", "--gguf-type", "f16"])
    assert main([str(tmp_path / "nowhere"), "--to", "zip"]) == 2
    assert "Run folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text("model_name_or_path: default\n")
    assert main([str(tmp_path / "empty"), "--to", "gguf"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Run empty has no adapter yet") and "Traceback" not in err
    assert main([str(run), "--to", "zip"]) == 0
    assert capsys.readouterr().out.strip() == f"adapter zip: {run / 'export' / 'demo-adapter.zip'}"


def test_a_run_without_adapter_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("model_name_or_path: default\n")
    for export in (zip_adapter, merge_adapter, export_gguf):
        with pytest.raises(UserInputError, match="no adapter yet"):
            export(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_export_tab_writes_the_gguf_with_progress(trained_run):
    """The tab's handler calls core.export and draws its stages on the progress bar."""
    from types import SimpleNamespace

    from webui.tabs import export

    ctx = SimpleNamespace(runs_dir=trained_run.parent)  # the handler reads only the runs folder
    stages = []
    out = export.export_gguf_files(ctx, "shop", "q8_0", "en", progress=lambda share, desc: stages.append((share, desc)))
    assert out["export_error"] == ""
    assert "shop-q8_0.gguf" in out["export_msg"] and "ollama create shop -f Modelfile" in out["export_msg"]
    assert stages[-1] == (1.0, "done") and [s for s, _ in stages] == sorted(s for s, _ in stages)
    assert any("loading the GGUF back" in desc for _, desc in stages)
    missing = export.export_gguf_files(ctx, None, "f16", "en", progress=lambda share, desc: None)
    assert "Pick a run" in missing["export_error"]
