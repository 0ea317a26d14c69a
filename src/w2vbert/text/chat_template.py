"""Chat templates: the jinja programs that turn a conversation into one prompt string, as transformers runs them.

Every transformers tokenizer carries `chat_template` (None, one template, or a dict name -> template) and
`apply_chat_template`; `Wav2Vec2CTCTokenizer` keeps the attribute and takes `apply_chat_template` from here as its
method.

In order: the file names; `as_templates`, a config's value as the attribute holds it; `select_template`, which
template a call renders; `apply_chat_template`, the tokenizer method; `render_chat`, the rendering (transformers'
sandboxed jinja environment and its `continue_final_message` trimming); `save_chat_templates` and
`read_chat_templates`, the files of transformers 5.23 (chat_template.jinja, additional_chat_templates/NAME.jinja,
or tokenizer_config.json's "chat_template"). jinja2 is imported only when a template is compiled, so importing
w2vbert does not pay for it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from w2vbert.loading.hub import HubOptions, resolve_optional_file

CHAT_TEMPLATE_FILE = "chat_template.jinja"  # the default template
CHAT_TEMPLATE_DIR = "additional_chat_templates"  # one NAME.jinja per other named template
DEFAULT_NAME = "default"  # the name of the template used when a dict of them gives no other choice
TOOL_USE_NAME = "tool_use"  # the name chosen from a dict when tools are passed
# A marker put after the text to continue; everything the template renders after it is cut (transformers' tag)
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "
# The names a message's reasoning comes under; templates read the first, gpt-oss ones read "thinking"
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")

ChatTemplates = str | dict[str, str] | None


def as_templates(value: Any) -> ChatTemplates:
    """A `chat_template` argument or config value as the tokenizer holds it: tokenizer_config.json stores a dict of
    templates as a list of `{"name", "template"}` entries, which becomes the dict again."""
    if isinstance(value, (list, tuple)):
        return {entry["name"]: entry["template"] for entry in value}
    if value is not None and not isinstance(value, (str, dict)):
        raise TypeError(f"chat_template must be a str, a dict name -> template or None, got {type(value).__name__}")
    return value


def select_template(own: ChatTemplates, chosen: str | None, tools: Any) -> str:
    """The template a call renders: `chosen` (a template, or a name in the tokenizer's dict), else the tokenizer's
    own (from a dict: "tool_use" when tools are passed and it has one, else "default")."""
    if isinstance(own, dict):
        if chosen is not None:
            return own.get(chosen, chosen)
        name = TOOL_USE_NAME if tools is not None and TOOL_USE_NAME in own else DEFAULT_NAME
        if name not in own:
            raise ValueError(
                f"this tokenizer has several chat templates ({sorted(own)}) and none named {DEFAULT_NAME!r}: pass "
                "chat_template=NAME (or a template) to choose one"
            )
        return own[name]
    if chosen is not None:
        return chosen
    if own is None:
        raise ValueError(
            "Cannot use chat template functions because tokenizer.chat_template is not set and no template argument "
            "was passed: set tokenizer.chat_template or pass chat_template=..."
        )
    return own


def apply_chat_template(
    tokenizer: Any,
    conversation: list[dict[str, Any]] | list[list[dict[str, Any]]],
    tools: list[dict[str, Any]] | None = None,
    documents: list[dict[str, str]] | None = None,
    chat_template: str | None = None,
    add_generation_prompt: bool = False,
    continue_final_message: bool | str = False,
    tokenize: bool = True,
    padding: bool | str = False,
    truncation: bool = False,
    max_length: int | None = None,
    return_tensors: str | None = None,
    return_dict: bool = True,
    return_assistant_tokens_mask: bool = False,
    tokenizer_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """transformers' `apply_chat_template` as a method of `tokenizer` (which has `chat_template`,
    `special_tokens_map`, and encodes text when called): a conversation (a list of {"role", "content"} messages),
    or a batch of them, rendered with a chat template (`chat_template`: a template or a name in the tokenizer's
    dict; else the tokenizer's own) into text, then encoded without special tokens. `kwargs` and the special
    tokens are the template's variables. Returns the text (a list for a batch), or with `tokenize` the encoding
    (its input_ids when `return_dict=False`)."""
    if return_assistant_tokens_mask:  # the mask maps characters to tokens, which needs a fast tokenizer
        raise ValueError("return_assistant_tokens_mask=True needs a fast tokenizer (char_to_token)")
    text = render_chat(
        select_template(tokenizer.chat_template, chat_template, tools), conversation, tools=tools,
        documents=documents, add_generation_prompt=add_generation_prompt,
        continue_final_message=continue_final_message, variables=tokenizer.special_tokens_map | kwargs,
    )  # fmt: skip
    if not tokenize:
        return text
    out = tokenizer(
        text, padding=padding, truncation=truncation, max_length=max_length, add_special_tokens=False,
        return_tensors=return_tensors, **(tokenizer_kwargs or {}),
    )  # fmt: skip
    return out if return_dict else out["input_ids"]


def render_chat(
    template: str,
    conversation: list[Any] | list[list[Any]],
    *,
    tools: Sequence[Any] | None,
    documents: Sequence[Any] | None,
    add_generation_prompt: bool,
    continue_final_message: bool | str,
    variables: dict[str, Any],
) -> str | list[str]:
    """A conversation (a list of messages) rendered as a string, or a batch of them (a list of such lists) as a list
    of strings, as transformers' `apply_chat_template` and `render_jinja_template`: messages with None values
    lose those keys, everything the template sees is rebuilt from plain JSON types (the sandbox cannot vet other
    objects' methods), and with `continue_final_message` (True: "content", or a field name) the string ends where
    the final message's text does, so a model continues it."""
    if continue_final_message and add_generation_prompt:
        raise ValueError(
            "continue_final_message and add_generation_prompt are not compatible: continue_final_message continues "
            "the final message, add_generation_prompt starts a new assistant message"
        )
    if isinstance(conversation, (list, tuple)) and not conversation:
        raise ValueError("Cannot apply chat template to an empty conversation. Provide at least one message.")
    batched = isinstance(conversation[0], (list, tuple))
    compiled = _compiled(template)
    if tools is not None:
        for tool in tools:
            if not isinstance(tool, dict):
                raise ValueError(f"tools must be JSON schemas (dicts), got {type(tool).__name__}: {tool!r:.80}")
    if documents is not None and not all(isinstance(document, dict) for document in documents):
        raise TypeError("Documents should be a list of dicts with 'title' and 'text' keys!")
    context = {"tools": _plain(tools), "documents": _plain(documents), **_plain(variables)}
    field = continue_final_message if isinstance(continue_final_message, str) else "content"
    rendered = []
    for messages in conversation if batched else [conversation]:
        chat = _alias_reasoning(_plain([{k: v for k, v in m.items() if v is not None} for m in messages]))
        final_text = _mark_final_message(chat, field, template) if continue_final_message else None
        text = compiled.render(messages=chat, add_generation_prompt=add_generation_prompt, **context)
        rendered.append(text if final_text is None else _cut_after_final_message(text, final_text))
    return rendered if batched else rendered[0]


def _mark_final_message(chat: list[dict[str, Any]], field: str, template: str) -> str:
    """Append the continue tag to the final message's `field` (its last text block, for a list of blocks); returns
    the text to continue."""
    final = chat[-1].get(field) if chat else None
    if final is None:
        raise ValueError(f'continue_final_message is set but the final message has no "{field}" to continue!')
    fields = [f for f in _REASONING_FIELDS if chat[-1].get(f) == final] if field in _REASONING_FIELDS else [field]
    if not any(f in template for f in fields):
        raise ValueError(
            f'continue_final_message is set to "{field}" but this is not an accepted field in the chat_template'
        )
    if isinstance(final, (list, tuple)):
        for block in reversed(final):
            if "text" in block:
                text, block["text"] = block["text"], block["text"] + _CONTINUE_TAG
                return text
        raise ValueError(
            "continue_final_message is set but we could not find any text to continue in the final message!"
        )
    for f in fields:
        chat[-1][f] = chat[-1][f] + _CONTINUE_TAG
    return final


def _cut_after_final_message(rendered: str, final_text: str) -> str:
    """The rendered chat up to the continue tag; a template that trims the message also trims the space before it."""
    tag = _CONTINUE_TAG.strip()
    if final_text.strip() not in rendered or tag not in rendered:
        raise ValueError(
            "continue_final_message is set but the final message does not appear in the chat after applying the "
            "chat template: the template may delete parts of the final message.\n"
            f"Final message to continue: {final_text.strip()}\nRendered chat:\n{rendered}"
        )
    at = rendered.rindex(tag)
    kept = rendered[:at]
    return kept if rendered[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG else kept.rstrip()


def _alias_reasoning(chat: list[Any]) -> list[Any]:
    """Each message's reasoning under every name templates read it by (older names fill "reasoning_content")."""
    for i, message in enumerate(chat):
        if isinstance(message, dict):
            reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
            if reasoning is not None:
                chat[i] = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        else:
            raise TypeError(f"Chat messages should be dicts, dataclasses or pydantic models, but got {message!r}.")
    return chat


def _plain(value: Any) -> Any:
    """`value` rebuilt from plain JSON types; any other object becomes "<TypeName>", as transformers does, since a
    template from the hub is untrusted code and arrays or images have methods that write files."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    for base in (bool, str, int, float):
        if isinstance(value, base):
            return base(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value) if type(value) in (list, tuple) else [_plain(v) for v in value]
    if callable(getattr(value, "item", None)) and getattr(value, "shape", None) == ():  # a numpy scalar
        return _plain(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):  # a pydantic model
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


@functools.lru_cache(maxsize=32)
def _compiled(template: str) -> Any:
    """`template` compiled in transformers' environment: sandboxed and immutable, blocks trimmed, `break` and
    `continue`, `raise_exception`, `strftime_now`, a `tojson` that does not escape HTML, and `{% generation %}`
    blocks (which mark assistant text for transformers' assistant masks) rendered as their body."""
    import jinja2  # here: importing w2vbert should not load jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = lambda format: datetime.now().strftime(format)
    return environment.from_string(template)


def save_chat_templates(directory: Path, templates: ChatTemplates, save_jinja_files: bool) -> tuple[Any, list[str]]:
    """Write the templates as transformers 5.23 does; returns (tokenizer_config.json's "chat_template" value, None
    when the templates went to files; the paths written). With `save_jinja_files` the default template goes to
    chat_template.jinja and each other one to additional_chat_templates/NAME.jinja; without, all go to the config
    (a dict as a list of {"name", "template"}). A name that is not a plain file name is a ValueError, checked
    before anything is written, so no name can write outside the folder."""
    if templates is None:
        return None, []
    if not save_jinja_files:
        if isinstance(templates, dict):
            return [{"name": name, "template": template} for name, template in templates.items()], []
        return templates, []
    named = {DEFAULT_NAME: templates} if isinstance(templates, str) else templates
    folder = directory / CHAT_TEMPLATE_DIR
    paths = {
        name: directory / CHAT_TEMPLATE_FILE if name == DEFAULT_NAME else folder / f"{name}.jinja" for name in named
    }
    for name, path in paths.items():
        if path.resolve().parent != (directory if name == DEFAULT_NAME else folder).resolve():
            raise ValueError(f"Invalid chat template name: {name!r} (a template name must be a plain file name)")
    written = []
    for name, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(named[name], encoding="utf-8")
        written.append(str(path))
    return None, written


def read_chat_templates(path_or_repo_id: str | os.PathLike, hub: HubOptions) -> ChatTemplates:
    """The templates of chat_template.jinja and additional_chat_templates/*.jinja (None when there are none): a
    str when there is only the default one, else a dict name -> template. These files win over the config's
    "chat_template", as in transformers."""
    templates = {}
    default = resolve_optional_file(path_or_repo_id, CHAT_TEMPLATE_FILE, hub)
    if default is not None:
        templates[DEFAULT_NAME] = default.read_text(encoding="utf-8")
    folder = Path(path_or_repo_id, hub.subfolder, CHAT_TEMPLATE_DIR)
    for path in sorted(folder.glob("*.jinja")) if folder.is_dir() else ():
        templates[path.name.removesuffix(".jinja")] = path.read_text(encoding="utf-8")
    if list(templates) == [DEFAULT_NAME]:
        return templates[DEFAULT_NAME]
    return templates or None
