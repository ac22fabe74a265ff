#!/usr/bin/env python3
"""make_tokenizer_fixtures.py — trains four small BPE tokenizers with Hugging Face `tokenizers`
(the two families real checkpoints use) and records the ids HF gives for tricky strings;
tests/test_tokenizer.c must reproduce them exactly, encoding and decoding.

    python3 tools/make_tokenizer_fixtures.py tests/data/tokenizers

Needs `tokenizers` (made with 0.23.2; `transformers` 5.17 is used for a cross-check when
present). CPU only, no network. Writes, per tokenizer, NAME/tokenizer.json (saved by HF itself),
NAME/tokenizer_config.json and NAME/cases.jsonl: one JSON object per line with "text", "ids"
(add_special_tokens=False), "ids_special" (add_special_tokens=True), "decoded"
(decode(ids, skip_special_tokens=False)) and "tokens".

  bytelevel-gpt2    ByteLevel pre-tokenizer (GPT-2 regex), ByteLevel decoder / post-processor
  bytelevel-llama3  Split(Llama 3 regex, Isolated) + ByteLevel(use_regex=False), ignore_merges,
                    TemplateProcessing "<|begin_of_text|> $A"
  bytelevel-qwen2   Qwen2: NFC normalizer, Split(Qwen2 regex: single digits) + ByteLevel
  sp-llama2         Llama 2: Prepend("▁") + Replace(" ", "▁") normalizers, no pre-tokenizer,
                    byte_fallback, fuse_unk, decoders Replace / ByteFallback / Fuse / Strip,
                    TemplateProcessing "<s> $A"
  sp-metaspace      the same model behind a Metaspace(prepend_scheme="first", split=false)
                    pre-tokenizer and Metaspace / ByteFallback / Fuse decoders

Training text (all freely licensed): the prose and multilingual sentences below, written for
this script and dedicated to the public domain (CC0); the docstrings of some Python standard
library modules and the Zen of Python (`import this`), under the PSF License.
"""
import contextlib
import importlib
import io
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPM = "\u2581"

PROSE = """\
A tokenizer turns text into numbers and numbers back into text. It should do both without
losing a single byte: spaces, tabs, new lines, accents, emoji and scripts from all over the world.
Byte-level BPE starts from the 256 possible bytes, so every string can be encoded; SentencePiece-
style BPE starts from characters and falls back to bytes for the rare ones it has never seen.
The model learns merges from a corpus: the most frequent pair of symbols becomes a new symbol,
again and again, until the vocabulary is full. Encoding replays the merges in the order they
were learned. Decoding glues the pieces back together and repairs the spaces.
We'll test contractions like don't, can't, it's, you're, they've, I'm and she'd, numbers like
1, 12, 123, 1234, 12345, 3.14159, 2,718 and 1e-9, dates such as 2024-05-17, times like 12:30,
and code: def main(argv): return 0 if argv else 1; x = y + z * 2; printf("%d\\n", n);
Long context models read whole books; quantized caches keep keys at two bits and values at one.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
Un café crème, s'il vous plaît. Où est la bibliothèque? Élève, naïve, Noël, garçon, cœur.
Grüße aus München! Die Straße ist schön, aber die Größe der Äpfel überrascht.
¿Dónde está el baño? El niño comió piñata en España. Canción, corazón, pingüino.
Привет, как дела? Москва — столица России. Съешь же ещё этих мягких французских булок.
Γειά σου κόσμε. Η γλώσσα είναι όμορφη. Καλημέρα!
你好，世界。我们正在测试分词器。中文字符很多。今天天气很好。
こんにちは世界。日本語のテキストをトークン化します。ひらがなとカタカナと漢字。
안녕하세요 세계. 한국어 문장을 토큰화합니다.
שלום עולם. مرحبا بالعالم. नमस्ते दुनिया. สวัสดีชาวโลก.
Emoji: 😀 😃 😄 😁 👍 👍🏽 ❤️ 🍕 🎉 🚀 👨‍👩‍👧‍👦 🏳️‍🌈
Tabs\tand\tnew\nlines, Windows\r\nline endings, and    runs   of   spaces.
"""

STDLIB = ["json", "collections", "itertools", "functools", "re", "string", "textwrap",
          "pathlib", "argparse", "unittest", "datetime", "decimal", "fractions", "statistics",
          "random", "heapq", "bisect", "csv", "html", "email", "shutil", "tempfile"]


def training_text():
    """The training corpus: our prose, stdlib docstrings (sorted, so the run is repeatable)
    and the Zen of Python."""
    parts = [PROSE] * 4
    for name in STDLIB:
        mod = importlib.import_module(name)
        parts.append(mod.__doc__ or "")
        for attr in sorted(dir(mod)):
            doc = getattr(getattr(mod, attr, None), "__doc__", None)
            if not attr.startswith("_") and isinstance(doc, str):
                parts.append(doc)
    with contextlib.redirect_stdout(io.StringIO()):
        import this  # noqa: F401  (prints the Zen)
    import codecs
    parts.append(codecs.decode(this.s, "rot13"))
    text = "\n".join(parts)
    return text[:400_000]


CASES = [
    "", " ", "  ", "   ", "\n", "\n\n", "\n\n\n", " \n ", "\t", "\t\t", "a\tb", "\r\n",
    "line one\r\nline two\r\n", "Hello world", "Hello  world", "   leading", "trailing   ",
    "Hello, world!", "12345", "3.14159", "1,000,000 and 42", "x = 42 + 1337;",
    "don't", "I'm we're they've you'll he'd it's", "DON'T SHOUT, IT'S LATE", "O'Reilly's",
    "café naïve résumé", "Ünïcödé Ça Œuvre", "e\u0301 (decomposed)", "日本語のテキスト",
    "中文字符测试", "한국어", "Привет, мир!", "Ελληνικά", "שלום עולם", "مرحبا",
    "😀", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "I ❤️ 🍕!", "non\u00a0breaking\u00a0space",
    "narrow\u202fno-break", "zero\u200bwidth", "ideographic\u3000space", "next\u0085line",
    "<|eot_id|>", "Hello<|eot_id|>world", "a <|eot_id|> b", "<s>hello</s>",
    "<|begin_of_text|>Hi there<|eot_id|>", "<|eot_id", "<|", "a <mask> b", "<mask>x",
    "I like asymkv a lot", "asymkv", "xasymkv",
    'fn main() {\n    println!("hi");\n}\n', "   \n\t  mixed\n \n", "snake_case_identifier",
    "https://example.com/path?q=1&r=2", "The quick brown fox jumps over the lazy dog. " * 3,
    "\u212b ngstr\u00f6m", "\u1100\u1161\u11a8 jamo", "\u1e0b\u0323 q\u0307\u0323", "<|im_start|>user\nhi<|im_end|>",
]


def bpe_model(vocab, merges, **opts):
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
             "ignore_merges": False, "vocab": vocab, "merges": merges}
    model.update(opts)
    return model


def added(content, id_, special=True, normalized=False, lstrip=False, rstrip=False):
    return {"id": id_, "content": content, "single_word": False, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}


def template(token, id_):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": token, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": token, "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": token, "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {token: {"id": token, "ids": [id_], "tokens": [token]}}}


def train(text, pre_tokenizer, vocab_size, specials, **trainer_opts):
    """Trains a BPE on text; returns (vocab, merges) as tokenizer.json has them."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=specials, **trainer_opts)
    tok.train_from_iterator(text.splitlines(keepends=True), trainer)
    model = json.loads(tok.to_str())["model"]
    return model["vocab"], model["merges"]


def byte_level_json(text, split, qwen=False):
    """GPT-2 (split=False: the ByteLevel regex), Llama 3 (split=True: Split + ByteLevel) or
    Qwen2 (qwen=True: NFC, Split with Qwen2's regex + ByteLevel)."""
    pattern = QWEN2_PATTERN if qwen else LLAMA3_PATTERN
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not split)
    pre = (pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), "isolated"), bl])
           if split else bl)
    specials = (["<|endoftext|>", "<|im_start|>", "<|im_end|>"] if qwen
                else ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"] if split
                else ["<|endoftext|>", "<|eot_id|>", "<|begin_of_text|>"])
    vocab, merges = train(text, pre, 1500 if split else 1200, specials,
                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    toks = [added(s, vocab[s]) for s in specials]
    if not split:  # RoBERTa's <mask>: swallows the spaces before it
        toks.append(added("<mask>", len(vocab), lstrip=True))
    bl_json = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
               "use_regex": not split}
    pre_json = ({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
         "invert": False}, bl_json]} if split else bl_json)
    post = ({"type": "Sequence", "processors": [dict(bl_json, use_regex=True),
                                                template("<|begin_of_text|>", vocab["<|begin_of_text|>"])]}
            if split and not qwen else dict(bl_json, use_regex=True))
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": toks,
            "normalizer": {"type": "NFC"} if qwen else None, "pre_tokenizer": pre_json,
            "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": bpe_model(vocab, merges, ignore_merges=split and not qwen)}


def sentencepiece_model(text):
    """Llama 2's layout: <unk> <s> </s>, the 256 <0xNN> byte tokens, then the learned pieces."""
    pre = pre_tokenizers.Metaspace(replacement=SPM, prepend_scheme="always", split=True)
    learned, merges = train(text, pre, 1000, ["<unk>", "<s>", "</s>"], limit_alphabet=150)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for tok, _ in sorted(learned.items(), key=lambda kv: kv[1]):
        if tok not in vocab:
            vocab[tok] = len(vocab)
    return bpe_model(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)


def sentencepiece_json(model, metaspace):
    n = len(model["vocab"])
    toks = [added("<unk>", 0), added("<s>", 1), added("</s>", 2), added("<|eot_id|>", n),
            added("<|begin_of_text|>", n + 1), added("asymkv", n + 2, special=False, normalized=True)]
    strip = [{"type": "ByteFallback"}, {"type": "Fuse"},
             {"type": "Strip", "content": " ", "start": 1, "stop": 0}]
    if metaspace:
        meta = {"type": "Metaspace", "replacement": SPM, "prepend_scheme": "first", "split": False}
        norm, pre = None, meta
        dec = {"type": "Sequence", "decoders": [meta, {"type": "ByteFallback"}, {"type": "Fuse"}]}
    else:
        norm = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPM},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPM}]}
        pre = None
        dec = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPM}, "content": " "}] + strip}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": toks,
            "normalizer": norm, "pre_tokenizer": pre, "post_processor": template("<s>", 1),
            "decoder": dec, "model": model}


def cross_check(folder, tok, cases):
    """Compares with transformers' fast tokenizer when transformers is installed."""
    try:
        from transformers import PreTrainedTokenizerFast
        hf = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"))
    except Exception as e:  # noqa: BLE001 — optional
        print(f"  (transformers cross-check skipped: {e})")
        return
    bad = [c for c in cases if hf(c, add_special_tokens=False)["input_ids"] != tok.encode(
        c, add_special_tokens=False).ids]
    print(f"  transformers agrees on {len(cases) - len(bad)}/{len(cases)} cases")


def write_fixture(out_dir, name, tj, config):
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    tok = Tokenizer.from_str(json.dumps(tj))  # HF validates it ...
    tok.save(os.path.join(folder, "tokenizer.json"))  # ... and writes it its own way
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(folder, "cases.jsonl"), "w", encoding="utf-8") as f:
        for text in CASES:
            enc = tok.encode(text, add_special_tokens=False)
            rec = {"text": text, "ids": enc.ids,
                   "ids_special": tok.encode(text, add_special_tokens=True).ids,
                   "decoded": tok.decode(enc.ids, skip_special_tokens=False),
                   "tokens": enc.tokens}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"{folder}: vocab {tok.get_vocab_size()}, {len(CASES)} cases")
    cross_check(folder, tok, CASES)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/data/tokenizers"
    import tokenizers
    print(f"tokenizers {tokenizers.__version__}")
    text = training_text()
    print(f"training text: {len(text)} characters")
    gpt2 = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    llama3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    llama2 = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
              "eos_token": "</s>", "unk_token": "<unk>"}
    write_fixture(out_dir, "bytelevel-gpt2", byte_level_json(text, split=False), gpt2)
    write_fixture(out_dir, "bytelevel-llama3", byte_level_json(text, split=True), llama3)
    qwen2 = {"bos_token": None, "eos_token": "<|im_end|>"}
    write_fixture(out_dir, "bytelevel-qwen2", byte_level_json(text, split=True, qwen=True), qwen2)
    sp = sentencepiece_model(text)
    write_fixture(out_dir, "sp-llama2", sentencepiece_json(sp, metaspace=False), llama2)
    write_fixture(out_dir, "sp-metaspace", sentencepiece_json(sp, metaspace=True), llama2)


if __name__ == "__main__":
    main()
