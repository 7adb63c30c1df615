"""Generation for the chat tab: one base model kept loaded, a run's adapter put on it.

The prompt is rendered by core.template.ChatEncoder.prompt_for_reply, the code path training uses,
so the model sees in chat exactly the format it was trained on (system prompt included). With an
adapter loaded, the base model's answer comes from the same weights inside peft's
`disable_adapter()` context: one model in memory answers as both.

Runs in the web server's process (training never does). Generations are serialised by a lock: the
model object and its active adapter are shared state.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from core.data import Conversation
from core.errors import UserInputError
from core.models import load_model, load_tokenizer, resolve_model
from core.template import ChatEncoder


@dataclass(frozen=True)
class GenerationSettings:
    system_prompt: str = ""
    temperature: float = 0.0  # 0 = greedy: the same prompt gives the same answer
    max_new_tokens: int = 256
    top_p: float = 0.95  # only when sampling


class _Cancelled:
    """A stopping criterion that ends generate() when the reader goes away (page closed, Stop)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class ChatModels:
    """Caches one base model (by name and quantization) and the adapter currently on it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._base_key: tuple[str, str] | None = None
        self._model = None
        self._tokenizer = None
        self._adapter_key: tuple[str, float] | None = None  # (path, mtime of the weights)
        self._adapter_names = 0

    # ------------------------------------------------------------------------------- loading
    def _load_base(self, model_name_or_path: str, quantization_bit: str) -> None:
        key = (model_name_or_path, quantization_bit)
        if key == self._base_key:
            return
        self._model = self._tokenizer = self._base_key = self._adapter_key = None
        gc.collect()  # free the previous model before loading the next one
        source = resolve_model(model_name_or_path)
        self._tokenizer = load_tokenizer(source)
        self._model = load_model(source, quantization_bit).eval()
        self._base_key = key

    def _load_adapter(self, adapter: Path) -> None:
        from peft import PeftModel

        weights = next(iter(sorted(adapter.glob("adapter_model.*"))), None)
        if not (adapter / "adapter_config.json").is_file() or weights is None:
            raise UserInputError(f"No PEFT adapter in {adapter} (adapter_config.json and weights expected)")
        key = (str(adapter.resolve()), weights.stat().st_mtime)
        if key == self._adapter_key:
            return
        self._adapter_names += 1
        name = f"adapter{self._adapter_names}"  # peft names may not contain dots or slashes
        if isinstance(self._model, PeftModel):
            old = self._model.active_adapter
            self._model.load_adapter(str(adapter), adapter_name=name)
            self._model.set_adapter(name)
            self._model.delete_adapter(old)
        else:
            self._model = PeftModel.from_pretrained(self._model, str(adapter), adapter_name=name)
        self._model.eval()
        self._adapter_key = key

    def prepare(
        self, model_name_or_path: str, quantization_bit: str = "none", adapter: str | Path | None = None
    ) -> None:
        """Load (or reuse) the base model, and put `adapter` on it when given."""
        with self._lock:
            self._load_base(model_name_or_path, quantization_bit)
            if adapter is not None:
                self._load_adapter(Path(adapter))

    # ---------------------------------------------------------------------------- generating
    def stream(
        self,
        conversation: Conversation,
        settings: GenerationSettings,
        *,
        model_name_or_path: str = "default",
        quantization_bit: str = "none",
        adapter: str | Path | None = None,
        use_adapter: bool = True,
    ) -> Iterator[str]:
        """Yield the reply to the conversation's last user turn, growing, as tokens arrive.

        `adapter` is the run's adapter folder; with use_adapter=False the same model answers as its
        base (adapter disabled). Without `adapter`, the base model answers.
        """
        if not conversation or conversation[-1]["role"] != "user":
            raise UserInputError("The conversation must end with a user message.")
        from peft import PeftModel
        from transformers import GenerationConfig, StoppingCriteriaList, TextIteratorStreamer

        with self._lock:
            self._load_base(model_name_or_path, quantization_bit)
            if adapter is not None:
                self._load_adapter(Path(adapter))
            model, tokenizer = self._model, self._tokenizer
            prompt = ChatEncoder(tokenizer, settings.system_prompt).prompt_for_reply(conversation)
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
            eos = model.generation_config.eos_token_id
            eos = sorted({tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None})
            sampling = settings.temperature > 0
            generation = GenerationConfig(
                max_new_tokens=int(settings.max_new_tokens),
                do_sample=sampling,
                temperature=settings.temperature if sampling else 1.0,
                top_p=settings.top_p if sampling else 1.0,
                eos_token_id=eos,
                pad_token_id=tokenizer.pad_token_id,
            )
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            cancel, errors = threading.Event(), []
            as_base = isinstance(model, PeftModel) and (adapter is None or not use_adapter)

            def generate() -> None:
                try:
                    with model.disable_adapter() if as_base else contextlib.nullcontext(), torch.no_grad():
                        model.generate(
                            **inputs,
                            generation_config=generation,
                            streamer=streamer,
                            stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
                        )
                except Exception as err:  # noqa: BLE001 - handed to the reader below
                    errors.append(err)
                    streamer.end()  # unblock the reader

            thread = threading.Thread(target=generate, name="chat-generate", daemon=True)
            thread.start()
            text = ""
            try:
                for piece in streamer:
                    text += piece
                    yield text
            finally:
                cancel.set()
                thread.join()
            if errors:
                raise errors[0]

    def reply(self, conversation: Conversation, settings: GenerationSettings, **kwargs) -> str:
        """The whole reply at once (tests, scripts)."""
        text = ""
        for text in self.stream(conversation, settings, **kwargs):  # noqa: B007 - the last one is the whole reply
            pass
        return text
