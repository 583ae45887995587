"""Local weights through Hugging Face transformers.

Loading
-------
``kind="vlm"``: ``AutoProcessor`` + ``AutoModelForImageTextToText``; ``kind="text"`` (critics,
rewriters): ``AutoTokenizer`` + ``AutoModelForCausalLM``. Always ``local_files_only=True``: an
endpoint names a directory, and a typo must fail here rather than start a download on a worker.
``trust_remote_code`` only when the endpoint sets it. Device "auto" is the first GPU when there
is one; dtype "auto" is bfloat16 on a GPU that supports it (else float16), float32 on the CPU.

Generation
----------
Each conversation goes through the model's own chat template (images as ``{"type": "image"}``
parts of the turn that carries them, normally the first user turn; earlier turns are history),
then through the processor with the PIL images. Batches of ``batch_size`` are left-padded (the
only padding under which a decoder-only model's new tokens line up) and generated together;
greedy when temperature is 0. Only the new tokens are decoded. A bad item (unreadable image, a
template that refuses the turns) fails alone; if a whole batch fails (say out of memory), its
items are tried one at a time so that one poisonous item cannot take its neighbours down.

Score probabilities (``score_probs=True``, for critics)
-------------------------------------------------------
We want P(rating = k), k = 1..10, at the point where the critic writes its rating:

1. Find the rating in the decoded reply: the first digit after ``"Rating"`` / ``Rating`` /
   ``评分`` and a colon (``:`` or ``：``) with optional quotes and spaces. Map that character
   offset to the generated token that contains it: the first token j such that decoding
   tokens[:j+1] reproduces the reply up to and including the digit (comparing decoded prefixes,
   not lengths, so a multi-byte character split over byte tokens cannot fool us).
2. If the reply has no rating, teacher-force instead: the prompt followed by ``{"Rating": `` as
   the start of the reply (the trailing space is dropped for tokenizers that glue a space to the
   digit, as GPT-2-style byte-level BPE does, so the prefix ends where such a tokenizer would).
3. One forward pass (per item, unpadded, so positions and any per-token inputs stay exactly as
   the model expects) over prompt + prefix + the token "1". The logits before the "1" give the
   next-token distribution at the rating position; the logits after it give P("0" | prefix "1").
4. Tokens are grouped by the rating they spell: "8", " 8", "\\"8" all count for 8 (see
   ``base.classify_rating_token``). If the tokenizer has a single "10" token, "1" means 1. If
   not, a bare "1" is split: P(10) = P("1") * P("0" | "1"), P(1) = P("1") * (1 - P("0" | "1")).
5. Normalised over 1..10. So every successful item of a ``score_probs`` call has a distribution,
   whether or not its reply parses.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .base import (
    BackendConfig,
    Message,
    Result,
    classify_rating_token,
    find_rating_offset,
    is_zero_continuation,
    rating_distribution,
)

FORCED_RATING_PREFIX = '{"Rating": '


@dataclass
class _Prepared:
    """One conversation, rendered and with its images loaded, ready to be batched."""

    prompt: str
    images: list[Image.Image]


@dataclass(frozen=True)
class _RatingVocab:
    """The tokens that can start a rating, found once per model."""

    ids: torch.Tensor  # token ids that spell a rating (see base.classify_rating_token)
    texts: list[str]  # their decoded text, same order
    zero_ids: torch.Tensor  # tokens that continue "1" into "10"
    one_id: int  # the plain "1" token, appended for the P("0" | "1") step
    has_single_ten: bool  # "10" is one token: a bare "1" means 1
    forced_prefix: str


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype != "auto":
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _load_image(path: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")  # convert() loads the pixels, so the file can be closed


class TransformersBackend:
    def __init__(self, config: BackendConfig) -> None:
        from transformers import (
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )

        if config.kind not in ("vlm", "text"):
            raise ValueError(f"unknown model kind {config.kind!r}: expected 'vlm' or 'text'")
        path = Path(config.path)
        if not path.is_dir():
            raise FileNotFoundError(f"model directory not found: {config.path!r}")
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        load = dict(trust_remote_code=config.trust_remote_code, local_files_only=True)

        if config.kind == "vlm":
            self.processor: Any = AutoProcessor.from_pretrained(path, **load)
            self.tokenizer: Any = self.processor.tokenizer
            model_class: Any = AutoModelForImageTextToText
        else:
            self.processor = None
            self.tokenizer = AutoTokenizer.from_pretrained(path, **load)
            model_class = AutoModelForCausalLM
        self.model: Any = model_class.from_pretrained(path, dtype=self.dtype, **load).to(self.device).eval()
        if config.adapter_path:
            # A fine-tuned critic: the base weights from ``path`` (never copied), the LoRA layers on top.
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, config.adapter_path, local_files_only=True).eval()

        # Left padding: generated tokens then start at the same column for every row.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self._eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos]) - {None}
        self._rating_vocab: _RatingVocab | None = None
        self._lock = threading.Lock()
        self._active = 0  # generate() calls in progress
        self._closing = False

    # -- public ---------------------------------------------------------------------------------

    def generate(self, conversations: list[list[Message]], *, score_probs: bool = False) -> list[Result]:
        with self._lock:
            if self.model is None:
                raise RuntimeError("this backend was closed; get a fresh one from get_backend()")
            self._active += 1
        try:
            results = [Result() for _ in conversations]
            prepared: list[tuple[int, _Prepared]] = []
            for index, conversation in enumerate(conversations):
                try:
                    prepared.append((index, self._prepare(conversation)))
                except Exception as exc:  # one bad item (image, template) fails alone
                    results[index].error = _describe(exc)
            size = max(1, self.config.batch_size)
            for start in range(0, len(prepared), size):
                self._run_batch(prepared[start:start + size], results, score_probs)
            return results
        finally:
            with self._lock:
                self._active -= 1
                free_now = self._closing and self._active == 0
            if free_now:
                self._free()

    def close(self) -> None:
        """Free the weights (the cache calls this when it evicts us), at once or, if another thread
        is generating, when it finishes."""
        with self._lock:
            self._closing = True
            free_now = self._active == 0
        if free_now:
            self._free()

    def _free(self) -> None:
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- preparing ------------------------------------------------------------------------------

    def _prepare(self, conversation: list[Message]) -> _Prepared:
        if not conversation:
            raise ValueError("empty conversation")
        images: list[Image.Image] = []
        messages: list[dict[str, Any]] = []
        for message in conversation:
            if message.role not in ("system", "user", "assistant"):
                raise ValueError(f"unknown role {message.role!r}")
            if self.processor is None:
                if message.images:
                    raise ValueError("this endpoint is a text model (kind 'text'); it cannot take images")
                # Text models' templates expect plain string content.
                messages.append({"role": message.role, "content": message.text})
                continue
            parts: list[dict[str, Any]] = []
            for path in message.images:
                images.append(_load_image(path))
                parts.append({"type": "image"})
            parts.append({"type": "text", "text": message.text})
            messages.append({"role": message.role, "content": parts})
        template_owner = self.processor if self.processor is not None else self.tokenizer
        prompt = template_owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return _Prepared(prompt=prompt, images=images)

    def _encode(self, items: list[_Prepared]) -> Any:
        texts = [item.prompt for item in items]
        # Chat templates usually write the BOS token themselves; adding another would change the prompt.
        bos = self.tokenizer.bos_token
        add_special_tokens = not (bos and all(text.startswith(bos) for text in texts))
        if self.processor is not None:
            images = [image for item in items for image in item.images]
            inputs = self.processor(
                text=texts, images=images or None, padding=True, return_tensors="pt",
                add_special_tokens=add_special_tokens,
            )
        else:
            inputs = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=add_special_tokens)
        return {
            key: value.to(self.device, dtype=self.dtype) if value.is_floating_point() else value.to(self.device)
            for key, value in inputs.items() if isinstance(value, torch.Tensor)
        }

    # -- generating -----------------------------------------------------------------------------

    def _run_batch(self, batch: list[tuple[int, _Prepared]], results: list[Result], score_probs: bool) -> None:
        try:
            self._generate_batch(batch, results, score_probs)
        except Exception as exc:
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            if len(batch) == 1:
                results[batch[0][0]] = Result(error=_describe(exc))
                return
            for item in batch:  # find the item that failed; the others still get answers
                self._run_batch([item], results, score_probs)

    def _generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.config.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if self.config.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.config.temperature, top_p=self.config.top_p)
        else:
            # Greedy; neutralise any sampling defaults the model's generation_config ships with.
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    @torch.inference_mode()
    def _generate_batch(self, batch: list[tuple[int, _Prepared]], results: list[Result], score_probs: bool) -> None:
        items = [item for _, item in batch]
        started = time.perf_counter()
        inputs = self._encode(items)
        output = self.model.generate(**inputs, **self._generate_kwargs())
        prompt_length = inputs["input_ids"].shape[1]
        completions = [self._until_eos(row) for row in output[:, prompt_length:].tolist()]
        texts = [self.tokenizer.decode(ids, skip_special_tokens=True) for ids, _ in completions]
        distributions = (
            [self._score_probs(item, ids, text) for item, (ids, _), text in zip(items, completions, texts, strict=True)]
            if score_probs else [None] * len(items)
        )
        latency = (time.perf_counter() - started) / len(batch)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        for row, (index, _) in enumerate(batch):
            ids, counted = completions[row]
            results[index] = Result(
                text=texts[row], latency_s=latency, prompt_tokens=int(prompt_tokens[row]),
                completion_tokens=counted, score_probs=distributions[row],
            )

    def _until_eos(self, ids: list[int]) -> tuple[list[int], int]:
        """The reply's tokens before the first stop token, and the number of tokens generated
        (counting the stop token, as serving engines do; the padding after it is not counted)."""
        for position, token in enumerate(ids):
            if token in self._eos_ids:
                return ids[:position], position + 1
        return ids, len(ids)

    # -- score probabilities --------------------------------------------------------------------

    def _score_probs(self, item: _Prepared, reply_ids: list[int], reply: str) -> dict[int, float] | None:
        vocab = self._rating_vocabulary()
        position = self._rating_token_index(reply_ids, reply)
        if position is not None:
            prefix = reply_ids[:position]
        else:
            prefix = self.tokenizer.encode(vocab.forced_prefix, add_special_tokens=False)
        # Teacher-forced pass over prompt + prefix + "1", one item at a time: no padding, so the
        # positions (and any per-token inputs a processor adds) are exactly those of generation.
        inputs = self._encode([item])
        extra = torch.tensor([[*prefix, vocab.one_id]], dtype=inputs["input_ids"].dtype, device=self.device)
        length = inputs["input_ids"].shape[1]
        for key, value in list(inputs.items()):
            if key == "input_ids":
                inputs[key] = torch.cat([value, extra], dim=1)
            elif value.dim() == 2 and value.shape == (1, length):
                # attention_mask -> ones; per-token type ids (text) -> zeros.
                fill = torch.ones_like(extra) if key == "attention_mask" else torch.zeros_like(extra)
                inputs[key] = torch.cat([value, fill.to(value.dtype)], dim=1)
        logits = self._last_logits(inputs)
        at_rating = torch.softmax(logits[0, -2].float(), dim=-1)
        after_one = torch.softmax(logits[0, -1].float(), dim=-1)
        p_zero = None if vocab.has_single_ten else float(after_one[vocab.zero_ids].sum())
        candidates = zip(vocab.texts, at_rating[vocab.ids].tolist(), strict=True)
        return rating_distribution(candidates, p_zero_after_one=p_zero)

    def _last_logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        try:
            # Only the last two positions: full logits of a long critic prompt would be gigabytes.
            return self.model(**inputs, logits_to_keep=2).logits
        except TypeError:  # remote-code models that predate logits_to_keep
            return self.model(**inputs).logits

    def _rating_token_index(self, reply_ids: list[int], reply: str) -> int | None:
        offset = find_rating_offset(reply)
        if offset is None:
            return None
        wanted = reply[: offset + 1]
        for position in range(len(reply_ids)):
            if self.tokenizer.decode(reply_ids[: position + 1], skip_special_tokens=True).startswith(wanted):
                return position
        return None

    def _rating_vocabulary(self) -> _RatingVocab:
        if self._rating_vocab is not None:
            return self._rating_vocab
        size = len(self.tokenizer)
        decoded = self.tokenizer.batch_decode([[token] for token in range(size)])
        ids, texts, zero_ids = [], [], []
        for token, text in enumerate(decoded):
            if classify_rating_token(text) is not None:
                ids.append(token)
                texts.append(text)
            if is_zero_continuation(text):
                zero_ids.append(token)
        ones = self.tokenizer.encode("1", add_special_tokens=False)
        # Does the tokenizer glue a space to a digit (" 7" one token)? Then a forced prefix ending
        # in a space would put the model somewhere it never is.
        probe = self.tokenizer.encode(FORCED_RATING_PREFIX + "7", add_special_tokens=False)
        glued = self.tokenizer.decode(probe[-1:]) != "7"
        self._rating_vocab = _RatingVocab(
            ids=torch.tensor(ids, dtype=torch.long, device=self.device),
            texts=texts,
            zero_ids=torch.tensor(zero_ids, dtype=torch.long, device=self.device),
            one_id=ones[-1],
            has_single_ten=any(classify_rating_token(text).value == 10 for text in texts),
            forced_prefix=FORCED_RATING_PREFIX.rstrip() if glued else FORCED_RATING_PREFIX,
        )
        return self._rating_vocab


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]
