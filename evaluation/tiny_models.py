"""Tiny random-weight models built on disk, for the demo and the tests: nothing is downloaded.

Both builders train a small byte-level BPE tokenizer in-process on a mixed Chinese / English /
JSON corpus, build a model with random weights from a tiny config, and ``save_pretrained`` it so
that it reloads through exactly the same ``from_pretrained`` path as a real model:

- ``build_tiny_llava``: CLIP vision tower + Llama text model (LLaVA layout), saved with a
  ``LlavaProcessor`` (slow, PIL-based ``CLIPImageProcessorPil``: there is no torchvision here).
  Reloads with ``AutoProcessor`` / ``AutoModelForImageTextToText``.
- ``build_tiny_causal_lm``: a tiny Llama. Reloads with ``AutoTokenizer`` / ``AutoModelForCausalLM``.

The digits "0".."9" are single tokens (they are in the byte-level alphabet) and "10" is learned
as one merge, so a critic's rating 1..10 is always one token and expected scores are well
defined. ``split_digits=True`` builds a tokenizer that splits every number into single digits
(as Qwen's and LLaMA-2's do) so the two-step "1" + "0" path of the backends can be tested too.

Answers are gibberish: the weights are random. Builds are deterministic (fixed seed) and take
well under a second or two on a laptop CPU.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_TOKEN = "<image>"
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
IMAGE_SIZE = 32
PATCH_SIZE = 8

# One template for both models. Content is either a string (text models) or a list of parts
# (processors): {"type": "image"} becomes the image placeholder the LlavaProcessor expands.
# Every turn ends with EOS, so generation stops where a turn would end.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

_CORPUS = [
    "请描述这张图片中的内容。图中有一只猫坐在窗台上，阳光照在它的身上。",
    "这张表情包表达了什么情绪？它在讽刺加班文化，配文是“我太难了”。",
    "图表显示2023年的销售额比2022年增长了百分之十五，第三季度最高。",
    "请识别图片中的文字：北京欢迎你，营业时间上午9点到下午6点。",
    "回答：这是一张风景照片，远处是山，近处是湖水和树木。",
    "评分：8，理由：回答准确，描述完整，但缺少细节。评分：10 分",
    "你是一个公正的评委，请根据参考答案对模型的回答进行打分，分数为1到10分。",
    "问题：图中有几个人？参考答案：三个人。模型回答：图中有两个人。",
    "多轮对话：用户先问了图片的主题，然后追问细节，助手需要结合上下文回答。",
    "改写下面的问题，保持意思不变：这张图片里的动物是什么？",
    '{"Rating": 8, "Reason": "回答基本正确，但遗漏了部分信息。"}',
    '{"Rating": 10, "Reason": "完全正确。"} {"Rating": 1, "Reason": "答非所问。"}',
    '{"Rating": 3, "Reason": "事实错误。"} {"Rating": 5} {"Rating": 7} {"Rating": 9}',
    '{"Rating": 2} {"Rating": 4} {"Rating": 6} ["改写一", "改写二", "改写三"]',
    "Rating: 10/10. 8/10, 7/10, 10 out of 10, [[10]], [[9]], 评分：10，满分10分。",
    "The image shows a cat sitting on a windowsill. The answer is correct and complete.",
    "Describe the chart: revenue grew by 15 percent in 2023, with the third quarter the highest.",
    "Please rate the response on a scale of 1 to 10 and explain your reasoning in JSON.",
    "0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14 12:30 ，。！？；：“”‘’（）【】《》、",
]


def _train_tokenizer(*, split_digits: bool = False):
    """A byte-level BPE trained here, wrapped for transformers (vocab ~1,000)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if split_digits else byte_level
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=[PAD, BOS, EOS, IMAGE_TOKEN, *ROLE_TOKENS],
        # The whole byte alphabet, so any text (all of Chinese included) can be encoded, and every
        # digit is a token of its own.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat the corpus so frequent pairs such as "10" become merges.
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=[IMAGE_TOKEN, *ROLE_TOKENS], padding_side="left",
    )
    wrapped.chat_template = CHAT_TEMPLATE
    for digit in "123456789":
        assert len(wrapped.encode(digit, add_special_tokens=False)) == 1, digit
    if not split_digits:
        assert len(wrapped.encode("10", add_special_tokens=False)) == 1, "'10' should be one token"
    return wrapped


def _llama_config(tokenizer, **overrides):
    from transformers import LlamaConfig

    fields = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    fields.update(overrides)
    return LlamaConfig(**fields)


def _set_generation_defaults(model, tokenizer) -> None:
    config = model.generation_config
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.do_sample = False


def build_tiny_llava(directory: Path, *, seed: int = 0) -> Path:
    """Build a tiny LLaVA-style VLM with random weights in ``directory`` and return it."""
    return build_llava(directory, seed=seed)


def build_llava(
    directory: Path, *, seed: int = 0, vision: dict | None = None, text: dict | None = None,
    dtype=None, device=None,
) -> Path:
    """A LLaVA-layout VLM with random weights, saved with its processor in ``directory``.

    Tiny by default; ``vision`` (``CLIPVisionConfig`` fields) and ``text`` (``LlamaConfig``
    fields) override the dimensions, so the GPU benchmark builds real-size models (say the
    dimensions of a 7B VLM) through the same code. ``dtype`` / ``device`` choose where the random
    weights are made (a 7B model is initialised in seconds on a GPU, in minutes on a CPU). A text
    vocabulary larger than the tokenizer's is allowed: ids past the tokenizer decode to nothing.
    """
    import torch
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    try:  # the PIL processor (no torchvision needed); older releases call it CLIPImageProcessor
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # pragma: no cover - depends on the installed transformers
        from transformers import CLIPImageProcessor as ImageProcessor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    vision_fields = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=32,
    )
    vision_fields.update(vision or {})
    image_size, patch_size = vision_fields["image_size"], vision_fields["patch_size"]
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision_fields), text_config=_llama_config(tokenizer, **(text or {})),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        # "default" drops CLIP's CLS token: (32 / 8) ** 2 = 16 image tokens per image when tiny,
        # (336 / 14) ** 2 = 576 at LLaVA-1.5's size.
        vision_feature_select_strategy="default", vision_feature_layer=-1,
        image_seq_length=(image_size // patch_size) ** 2,
    )
    torch.manual_seed(seed)
    previous_dtype = torch.get_default_dtype()
    try:
        if dtype is not None:
            torch.set_default_dtype(dtype)
        with torch.device(device or "cpu"):
            model = LlavaForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous_dtype)
    _set_generation_defaults(model, tokenizer)

    image_processor = ImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE, image_token=IMAGE_TOKEN,
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    del model
    return directory


def build_tiny_causal_lm(directory: Path, *, seed: int = 0, split_digits: bool = False) -> Path:
    """Build a tiny Llama causal LM (critic / rewriter) with random weights in ``directory``."""
    import torch
    from transformers import LlamaForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(split_digits=split_digits)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_llama_config(tokenizer)).eval()
    _set_generation_defaults(model, tokenizer)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
