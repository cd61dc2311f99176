#!/usr/bin/env python3
"""Hugging Face reference checkpoints for stoke's `bert`, `gpt2`, `timm-vit` and `timm-convnext` models.

    python3 scripts/hf_fixtures.py make   [--out tests/fixtures/hf]
    python3 scripts/hf_fixtures.py make-vision [--out tests/fixtures/hf]
    python3 scripts/hf_fixtures.py check-export DIR FIXTURE

`make` builds tiny random `BertForSequenceClassification`, `BertModel` and `GPT2LMHeadModel`
checkpoints with `transformers` (seeded; every weight redrawn so that biases and layer-norm
parameters matter), saves each as a Hugging Face folder, and writes `expected.json` beside it:
fixed inputs and the reference outputs on them. stoke's tests read these files and need no
torch (tests/pretrained.rs).

`make-vision` builds a tiny random `ViTForImageClassification` (2 layers of width 32, 8×8
patches of 32×32 images, layer norm ε 1e-12 as transformers' ViTs have) and a narrow
`ConvNextForImageClassification`, every weight redrawn (layer scales around 1, so the
residual branches matter), each with a `preprocessor_config.json` as the hub's folders have
one, and `expected.json` as the timm fixtures have it: a seeded input batch and the logits on
it (tests/vision.rs).

`check-export` loads a folder written by `stoke export --format hf` with `from_pretrained`,
runs it on the fixture's inputs and compares its outputs with the logits stoke wrote into the
folder's `stoke_logits.json` (the export test writes them), exiting non-zero on a difference;
and reads the folder's model card (`README.md`) with huggingface_hub's `ModelCard`, whose
metadata must name transformers, the pipeline, the stoke tag and parse as the Hub parses it.
"""

import argparse
import json
import pathlib
import sys

import torch
import transformers

ROOT = pathlib.Path(__file__).resolve().parent.parent

BERT = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    pad_token_id=0,
)
GPT2 = dict(
    vocab_size=99,
    n_positions=64,
    n_embd=32,
    n_layer=2,
    n_head=4,
    activation_function="gelu_new",
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    layer_norm_epsilon=1e-5,
    bos_token_id=98,
    eos_token_id=98,
)

# Two cases for BERT: one text alone, and a padded batch of two with token types.
BERT_CASES = [
    dict(
        input_ids=[[2, 17, 45, 8, 91, 33, 3]],
        attention_mask=[[1, 1, 1, 1, 1, 1, 1]],
        token_type_ids=[[0, 0, 0, 0, 0, 0, 0]],
    ),
    dict(
        input_ids=[[2, 5, 60, 12, 3, 71, 3, 0, 0], [2, 9, 9, 40, 88, 14, 27, 52, 3]],
        attention_mask=[[1, 1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1]],
        token_type_ids=[[0, 0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0]],
    ),
]
GPT2_CASES = [dict(input_ids=[[98, 4, 17, 56, 23, 90, 1, 64, 33, 7]])]


def redraw(model, seed):
    """Every parameter from N(0, 0.3) (layer-norm weights around 1), so nothing is trivially 0 or 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator) * 0.3
            if "LayerNorm.weight" in name or name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                noise = noise + 1.0
            param.copy_(noise)
    return model.eval()


def bert_tokenizer():
    """A 99-token WordPiece tokenizer in BERT's style ([CLS] text [SEP], lowercased), so that
    stoke can train the tiny BERTs on real text: every word falls into letters and digits."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, decoders

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    punctuation = list(".,!?:;'\"-()/$%&@*+=<>#_")
    words = ["the", "free", "you", "call", "win", "me", "and", "to", "of", "is"]
    vocab = specials + letters + digits + punctuation + ["##" + c for c in letters] + words
    vocab = vocab[:99]
    assert len(vocab) == 99, len(vocab)
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def save(model, out, name, cases, outputs):
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    if name.startswith("bert"):
        bert_tokenizer().save(str(folder / "tokenizer.json"))
    expected = {"transformers": transformers.__version__, "cases": []}
    for case in cases:
        with torch.no_grad():
            result = model(**{k: torch.tensor(v) for k, v in case.items()})
        expected["cases"].append(dict(case, **outputs(result)))
    (folder / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {folder}")


def rounded(tensor):
    return [[round(float(x), 7) for x in row] for row in tensor.reshape(-1, tensor.shape[-1])]


def make(out):
    torch.manual_seed(0)
    classifier = redraw(
        transformers.BertForSequenceClassification(
            transformers.BertConfig(num_labels=3, attn_implementation="eager", **BERT)
        ),
        1,
    )
    save(classifier, out, "bert-tiny", BERT_CASES, lambda r: {"logits": rounded(r.logits)})

    base = redraw(
        transformers.BertModel(transformers.BertConfig(attn_implementation="eager", **BERT)), 2
    )
    save(
        base,
        out,
        "bert-tiny-base",
        BERT_CASES,
        lambda r: {
            "last_hidden_state": rounded(r.last_hidden_state),
            "pooler_output": rounded(r.pooler_output),
        },
    )

    lm = redraw(
        transformers.GPT2LMHeadModel(transformers.GPT2Config(attn_implementation="eager", **GPT2)),
        3,
    )
    save(lm, out, "gpt2-tiny", GPT2_CASES, lambda r: {"logits": rounded(r.logits)})


VIT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=48,
    image_size=32,
    patch_size=8,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
CONVNEXT = dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1])
VISION_INPUT = (2, 3, 32, 32)


def redraw_vision(model, seed):
    """Weights from N(0, 1/fan_in), biases N(0, 0.1), norms' and layer scales' weights U(0.5, 1.5)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
            elif param.dim() == 1 or name.endswith("layer_scale_parameter"):
                param.copy_(torch.rand(param.shape, generator=generator) + 0.5)
            else:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
    return model.eval()


def make_vision(out):
    cases = [
        (
            "vit-tiny",
            transformers.ViTForImageClassification(
                transformers.ViTConfig(num_labels=5, attn_implementation="eager", **VIT)
            ),
            dict(
                image_processor_type="ViTImageProcessor",
                do_resize=True,
                size=dict(height=32, width=32),
                resample=2,
                do_rescale=True,
                rescale_factor=1 / 255,
                do_normalize=True,
                image_mean=[0.5, 0.5, 0.5],
                image_std=[0.5, 0.5, 0.5],
            ),
        ),
        (
            "convnext-tiny",
            transformers.ConvNextForImageClassification(
                transformers.ConvNextConfig(num_labels=5, **CONVNEXT)
            ),
            dict(
                image_processor_type="ConvNextImageProcessor",
                do_resize=True,
                size=dict(shortest_edge=32),
                crop_pct=0.875,
                resample=3,
                do_rescale=True,
                rescale_factor=1 / 255,
                do_normalize=True,
                image_mean=[0.485, 0.456, 0.406],
                image_std=[0.229, 0.224, 0.225],
            ),
        ),
    ]
    for seed, (name, model, processor) in enumerate(cases, start=4):
        model = redraw_vision(model, seed)
        folder = out / name
        model.save_pretrained(folder, safe_serialization=True)
        (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
        images = torch.randn(VISION_INPUT, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            logits = model(pixel_values=images).logits
        expected = dict(
            transformers=transformers.__version__,
            input_shape=list(VISION_INPUT),
            input=images.flatten().tolist(),
            logits=logits.tolist(),
        )
        (folder / "expected.json").write_text(json.dumps(expected) + "\n")
        print(f"wrote {folder}")


def check_vision_export(folder, fixture):
    """An exported ViT or ConvNeXt: the model and its image processor load, and the logits on
    the fixture's input are stoke's."""
    expected = json.loads((fixture / "expected.json").read_text())
    model = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    images = torch.tensor(expected["input"]).reshape(expected["input_shape"])
    with torch.no_grad():
        got = model(pixel_values=images).logits
    want = torch.tensor(json.loads((folder / "stoke_logits.json").read_text()))
    if got.shape != want.shape:
        sys.exit(f"{folder}: transformers gives logits of shape {list(got.shape)}, stoke {list(want.shape)}")
    worst = float((got - want).abs().max())
    kind = model.config.architectures[0]
    print(
        f"{folder}: {kind} and {type(processor).__name__} load in transformers "
        f"{transformers.__version__}; largest logit difference {worst:.2e}"
    )
    if worst > 1e-4:
        sys.exit(1)


def check_card(folder):
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.library_name == "transformers", data
    assert data.pipeline_tag in ("image-classification", "text-classification", "text-generation"), data
    assert "stoke" in data.tags, data
    assert "config SHA-256" in card.text, card.text
    results = data.eval_results or []
    print(f"model card: {data.pipeline_tag}, {len(results)} evaluation results")


def check_export(folder, fixture):
    folder, fixture = pathlib.Path(folder), pathlib.Path(fixture)
    check_card(folder)
    if (folder / "preprocessor_config.json").is_file():
        return check_vision_export(folder, fixture)
    model = transformers.AutoModel.from_pretrained(folder)
    kind = model.config.architectures[0]
    model = getattr(transformers, kind).from_pretrained(folder, attn_implementation="eager").eval()
    stoke = json.loads((folder / "stoke_logits.json").read_text())
    cases = json.loads((fixture / "expected.json").read_text())["cases"]
    worst = 0.0
    for case, theirs in zip(cases, stoke):
        # stoke reads one text per example: every token of type 0.
        inputs = {k: torch.tensor(case[k]) for k in ("input_ids", "attention_mask") if k in case}
        with torch.no_grad():
            logits = model(**inputs).logits
        got = torch.tensor(rounded(logits))
        want = torch.tensor(theirs)
        if got.shape != want.shape:
            sys.exit(f"{folder}: transformers gives logits of shape {list(got.shape)}, stoke {list(want.shape)}")
        worst = max(worst, float((got - want).abs().max()))
    print(f"{folder}: {kind} loads in transformers {transformers.__version__}; largest logit difference {worst:.2e}")
    if worst > 1e-4:
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    make_parser = sub.add_parser("make")
    make_parser.add_argument("--out", default=ROOT / "tests/fixtures/hf", type=pathlib.Path)
    vision_parser = sub.add_parser("make-vision")
    vision_parser.add_argument("--out", default=ROOT / "tests/fixtures/hf", type=pathlib.Path)
    check = sub.add_parser("check-export")
    check.add_argument("folder")
    check.add_argument("fixture")
    args = parser.parse_args()
    if args.command == "make":
        make(args.out)
    elif args.command == "make-vision":
        make_vision(args.out)
    else:
        check_export(args.folder, args.fixture)


if __name__ == "__main__":
    main()
