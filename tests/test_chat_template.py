"""Chat templates of `Wav2Vec2CTCTokenizer` against transformers' tokenizer built from the same files (the oracle):
rendering, the generation prompt, continue_final_message, batches, named templates, the saved files both ways,
and the refusal of template names that would write outside the folder."""

from __future__ import annotations

import json

import pytest

from test_tokenizer_dropin import VOCAB, both, plain, write_vocab
from w2vbert import Wav2Vec2CTCTokenizer

# ChatML-like, with the generation prompt and a special token read from the tokenizer's variables
TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] | trim }}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CONVERSATION = [
    {"role": "system", "content": "BE BRIEF"},
    {"role": "user", "content": "HELLO", "tool_calls": None},
    {"role": "assistant", "content": "HI THERE "},
]


@pytest.fixture
def tokenizers(tmp_path):
    return both(write_vocab(tmp_path / "vocab", VOCAB), chat_template=TEMPLATE)


@pytest.mark.parametrize(
    "options",
    [
        {"tokenize": False},
        {"tokenize": False, "add_generation_prompt": True},
        {"tokenize": False, "continue_final_message": True},
        {},
        {"return_dict": False},
        {"return_tensors": "pt", "padding": True},
        {"chat_template": "{% for m in messages %}{{ m.role }}:{{ m.content }} {% endfor %}{{ strftime_now('%Y') }}"},
    ],
)
def test_apply_chat_template_equals_transformers(tokenizers, options):
    ours, theirs = tokenizers
    for conversation in (CONVERSATION, [CONVERSATION, CONVERSATION[:2]], [CONVERSATION[:1]]):
        expected = theirs.apply_chat_template(conversation, **options)
        assert plain(ours.apply_chat_template(conversation, **options)) == plain(expected)


def test_named_templates_are_chosen_as_in_transformers(tokenizers):
    for tokenizer in tokenizers:
        tokenizer.chat_template = {"default": "{{ 'D' }}", "tool_use": "{{ tools[0].name }}", "other": "{{ 'O' }}"}
    for options in ({}, {"chat_template": "other"}, {"tools": [{"name": "SEARCH"}]}):
        outputs = [t.apply_chat_template(CONVERSATION, tokenize=False, **options) for t in tokenizers]
        assert outputs[0] == outputs[1]


def test_errors_have_transformers_types(tokenizers):
    for tokenizer in tokenizers:
        with pytest.raises(ValueError):
            tokenizer.apply_chat_template([], tokenize=False)
        with pytest.raises(ValueError):
            tokenizer.apply_chat_template(CONVERSATION, continue_final_message=True, add_generation_prompt=True)
        tokenizer.chat_template = None
        with pytest.raises(ValueError):
            tokenizer.apply_chat_template(CONVERSATION)


@pytest.mark.parametrize("templates", [TEMPLATE, {"default": "a", "second": "b"}, {"first": "a", "second": "b"}])
@pytest.mark.parametrize("save_jinja_files", [True, False])
def test_saved_templates_load_in_both_directions(tmp_path, templates, save_jinja_files):
    import transformers

    directory = write_vocab(tmp_path / "vocab", VOCAB)
    classes = (Wav2Vec2CTCTokenizer, transformers.Wav2Vec2CTCTokenizer)
    written = {}
    for saver, loader in (classes, classes[::-1]):
        tokenizer = saver.from_pretrained(directory, chat_template=templates)
        saved = tmp_path / saver.__module__
        tokenizer.save_pretrained(saved, save_jinja_files=save_jinja_files)
        assert loader.from_pretrained(saved).chat_template == templates
        config = json.loads((saved / "tokenizer_config.json").read_text())
        written[saver] = (
            config.get("chat_template"),
            sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*.jinja")),
        )
    assert written[classes[0]] == written[classes[1]]


def test_template_files_win_over_the_config_as_in_transformers(tmp_path):
    directory = write_vocab(tmp_path / "vocab", VOCAB)
    Wav2Vec2CTCTokenizer.from_pretrained(directory, chat_template="a").save_pretrained(
        directory, save_jinja_files=False
    )
    (tmp_path / "vocab" / "chat_template.jinja").write_text("b")
    assert [t.chat_template for t in both(directory)] == ["b", "b"]


def test_template_names_that_leave_the_folder_are_refused_before_writing(tmp_path):
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(write_vocab(tmp_path / "vocab", VOCAB))
    tokenizer.chat_template = {"default": "a", "../../PWNED": "attacker content"}
    with pytest.raises(ValueError, match="PWNED"):
        tokenizer.save_pretrained(tmp_path / "out" / "save")
    assert not list(tmp_path.rglob("PWNED*")) and not (tmp_path / "out" / "save" / "chat_template.jinja").exists()


def test_the_processor_holds_its_tokenizers_chat_template_through_its_files(tmp_path):
    from w2vbert import SeamlessM4TFeatureExtractor, Wav2Vec2BertProcessor

    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(write_vocab(tmp_path / "vocab", VOCAB))
    processor = Wav2Vec2BertProcessor(SeamlessM4TFeatureExtractor(), tokenizer)
    assert processor.chat_template is None  # transformers' processor tests skip their chat tests on None
    processor.chat_template = {"default": "a", "second": "b"}
    processor.save_pretrained(tmp_path / "saved")
    reloaded = Wav2Vec2BertProcessor.from_pretrained(tmp_path / "saved")
    assert reloaded.chat_template == reloaded.tokenizer.chat_template == {"default": "a", "second": "b"}
