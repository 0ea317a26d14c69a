"""Every code block of README.md and docs/*.md runs, so that what the pages say cannot drift from the code.

In this file, in order:
- `PAGES`, `Block`, `code_blocks`: the fenced blocks of README.md and docs/*.md with their page and line. A block
  whose info string is "LANG notest: REASON" (```` ```bash notest: needs a GPU ````) cannot run here; it is
  collected as a skipped test whose reason names it, so `pytest -ra` lists every block that did not run, and why.
  "text" blocks are shown output, not code; every other block is "python" or "bash". A "bash server" block is one
  `w2vbert serve` line: its test starts it, checks that /health answers, and stops it; a "python client" block
  runs while the server of the nearest "bash server" block above it on its page runs (`serving`).
- `sandbox`: a folder holding every name the pages use: `my-model` (the demo model), `my-lid-model`,
  `my-vad-model`, `my-xvector-model` and `facebook/w2v-bert-2.0` (tiny random models, the last in an offline
  hub cache), `conformer_shaw.pt`, `a.wav`, `b.mp3`, `train.tsv`, ... (the example and test recordings).
- `run_python`, `run_shell`: a python block runs in a fresh namespace in this process; a bash block runs line by
  line, `w2vbert ...` through `w2vbert.cli.main` in this process and `python FILE ...` in a child process, each
  in an empty folder beside the sandbox's names. Any other command fails the test: mark its block notest.
  One substitution keeps blocks small: `w2vbert finetune` and `pretrain` run 2 optimizer steps (`--max-steps 2`).
- the tests: each block; the README's shape (a front door of at most 200 lines linking every page, the test
  command CI runs, extras that exist); the MkDocs nav (every page listed once); and every `w2vbert.x.y` name and
  repository path the pages and ARCHITECTURE.md mention exists (the old names of the moved-modules table aside).
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```+)(.*)$")
SMALL_RUN = ["--max-steps", "2"]  # what every `w2vbert finetune` and `pretrain` runs, whatever the page says
ROLES = ("server", "client")  # "bash server" / "python client" blocks (see `serving`)


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root: "README.md", "docs/cli.md"
    line: int  # of the opening fence
    language: str  # "python", "bash", "text"
    skip_reason: str | None  # the REASON of "notest: REASON"; None for a block that runs
    source: str
    role: str | None = None  # "server": one `w2vbert serve` line; "client": runs while the page's server above runs

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order (fences start at the line's first column)."""
    blocks, lines, index = [], page.read_text(encoding="utf-8").splitlines(), 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, info = opening.group(1), opening.group(2).strip()
        end = next((i for i in range(index + 1, len(lines)) if lines[i].strip() == fence), None)
        assert end is not None, f"{page.name}:{index + 1}: a code block that is never closed"
        language, _, rest = info.partition(" ")
        rest = rest.strip()
        reason = rest.removeprefix("notest").lstrip(":").strip() if rest.startswith("notest") else None
        role = rest if rest in ROLES else None
        assert not rest or reason or role, (f"{page.name}:{index + 1}: write `{language} notest: REASON` (or "
                                            f"`bash server`, `python client`), got {info!r}")
        blocks.append(Block(str(page.relative_to(ROOT)), index + 1, language, reason,
                            "\n".join(lines[index + 1:end]), role))
        index = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in code_blocks(page) if block.language != "text"]


# --- the sandbox: every name the pages use -----------------------------------------------------------------

EXAMPLES, TEST_DATA = ROOT / "examples" / "audio", ROOT / "tests" / "data"
CLIPS = ("dog_cat.wav", "seven_birds.wav")  # examples/audio, each with its reference text beside it
RECORDINGS = {  # the names the pages use -> the file copied there
    "a.wav": EXAMPLES / "dog_cat.wav", "b.mp3": TEST_DATA / "quick_22k.mp3", "clip.wav": EXAMPLES / "dog_cat.wav",
    "meeting.wav": EXAMPLES / "seven_birds.wav", "talk.m4a": TEST_DATA / "quick_24k.m4a",
    "two-hours.flac": TEST_DATA / "quick_44k.flac", "enroll.wav": EXAMPLES / "dog_cat.wav",
    "test.wav": EXAMPLES / "seven_birds.wav",
    **{f"{folder}/{clip}": EXAMPLES / clip for folder in ("audio", "clips", "unlabeled") for clip in CLIPS},
}
TINY_MODELS = {  # folder -> (class, config overrides): random weights, the demo model's feature extractor
    "my-lid-model": ("Wav2Vec2BertForSequenceClassification", {"id2label": {0: "en", 1: "fr", 2: "de"}}),
    "my-vad-model": ("Wav2Vec2BertForAudioFrameClassification", {"id2label": {0: "background", 1: "speech"}}),
    "my-xvector-model": ("Wav2Vec2BertForXVector", {"verification_threshold": 0.5}),
}
HUB_MODEL = ("facebook/w2v-bert-2.0", {"num_hidden_layers": 24})  # in the offline hub cache; 24 blocks for --layer 17


def tiny_random_model(cls_name: str, path: Path, **overrides) -> None:
    """A tiny random model of class `cls_name` with the demo model's feature extractor, saved to `path`."""
    import w2vbert
    from conftest import tiny_config_kwargs

    if "id2label" in overrides:
        overrides["num_labels"] = len(overrides["id2label"])
    torch.manual_seed(0)
    config = w2vbert.Wav2Vec2BertConfig(**tiny_config_kwargs(**overrides))
    getattr(w2vbert, cls_name)(config).save_pretrained(path)
    shutil.copy(ROOT / "examples" / "demo-model" / "preprocessor_config.json", path)


def words_arpa(words: list[str], path: Path) -> None:
    """A KenLM bigram model (its least order) over `words`: every word once, one bigram of the first two."""
    entries = ["<s>", "</s>", "<unk>", *sorted(set(words))]
    lines = ["\\data\\", f"ngram 1={len(entries)}", "ngram 2=1", "", "\\1-grams:"]
    lines += [f"{-1.0 if word.startswith('<') else -1.5}\t{word}\t0" for word in entries]
    lines += ["", "\\2-grams:", f"-0.2\t{words[0]} {words[1]}"]
    path.write_text("\n".join([*lines, "", "\\end\\", ""]))


def write_manifests(box: Path) -> None:
    """train.tsv and dev.tsv (audio, text), labels.tsv (audio, label), corpus.tsv, clips.jsonl, words.arpa."""
    texts = {f"audio/{clip}": (EXAMPLES / clip).with_suffix(".txt").read_text().strip() for clip in CLIPS}
    for manifest in ("train.tsv", "dev.tsv"):
        (box / manifest).write_text("audio\ttext\n" + "".join(f"{a}\t{t}\n" for a, t in texts.items()))
    labels = dict(zip(texts, ("a", "b"), strict=True))
    (box / "labels.tsv").write_text("audio\tlabel\n" + "".join(f"{a}\t{label}\n" for a, label in labels.items()))
    (box / "corpus.tsv").write_text("id\taudio\n" + "".join(f"{Path(a).stem}\t{a}\n" for a in texts))
    (box / "clips.jsonl").write_text("".join(f'{{"audio": "{a}"}}\n' for a in texts))
    words_arpa(" ".join(texts.values()).split(), box / "words.arpa")


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Path:
    from test_convert import SMALL, fairseq2_state
    from test_loading import fake_hub_cache

    box = tmp_path_factory.mktemp("docs-sandbox")
    for name, source in RECORDINGS.items():
        (box / name).parent.mkdir(exist_ok=True)
        shutil.copy(source, box / name)
    write_manifests(box)
    shutil.copytree(ROOT / "examples" / "demo-model", box / "my-model")  # a copy: no block writes into examples/
    (box / "my-ctc-model").symlink_to("my-model")
    for folder, (cls_name, overrides) in TINY_MODELS.items():
        tiny_random_model(cls_name, box / folder, **overrides)
    repo_id, overrides = HUB_MODEL
    tiny_random_model("Wav2Vec2BertModel", saved := tmp_path_factory.mktemp("hub-model"), **overrides)
    fake_hub_cache(box / "hub", repo_id, {path.name: path.read_bytes() for path in saved.iterdir()})
    torch.save({"model": fairseq2_state(**SMALL), "step_nr": 0}, box / "conformer_shaw.pt")
    scikit_learn_kmeans(box / "km.pkl", json.loads((saved / "config.json").read_text())["hidden_size"])
    return box


def scikit_learn_kmeans(path: Path, dimension: int) -> None:
    """A k-means model as scikit-learn users keep theirs (joblib's pickle), fitted here on random frames."""
    import joblib
    import numpy as np
    from sklearn.cluster import KMeans

    frames = np.random.default_rng(0).standard_normal((200, dimension)).astype(np.float32)
    joblib.dump(KMeans(n_clusters=8, n_init=1, random_state=0).fit(frames), path)


@pytest.fixture
def workdir(sandbox, tmp_path, monkeypatch) -> Path:
    """An empty folder (this test's outputs) in which every name of the sandbox, and examples/, can be read."""
    import huggingface_hub.constants

    for entry in sandbox.iterdir():
        (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(sandbox / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(sandbox / "hub"))
    return tmp_path


# --- running a block ---------------------------------------------------------------------------------------


def run_python(block: Block) -> None:
    exec(compile(block.source, block.name, "exec"), {"__name__": "__main__"})


def shell_commands(source: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments dropped, `a && b` as two commands."""
    commands = []
    for line in source.replace("\\\n", " ").splitlines():
        command: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word != "&&":
                command.append(word)
            elif command:
                commands.append(command)
                command = []
    return commands


def small(words: list[str]) -> list[str]:
    """A `w2vbert finetune` / `pretrain` command line with `--max-steps 2`; any other unchanged."""
    if words[0] != "w2vbert" or words[1:2] not in (["finetune"], ["pretrain"]):
        return words
    if "--max-steps" in words:
        at = words.index("--max-steps")
        words = [*words[:at], *words[at + 2:]]
    return [*words, *SMALL_RUN]


def expand(words: list[str]) -> list[str]:
    """Shell globs (`clips/*.wav`), sorted, in the current folder."""
    return [match for word in words for match in (sorted(glob.glob(word)) if "*" in word else [word])]


def run_shell(block: Block, monkeypatch) -> None:
    from w2vbert.cli import main

    for words in shell_commands(block.source):
        environment = {}
        while re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
            key, _, value = words.pop(0).partition("=")
            environment[key] = value
        if words[0] == "python" or words[0].endswith("/bin/python"):  # .venv/bin/python: the python running this
            words = ["python", *words[1:]]
        if words[:3] == ["python", "-m", "w2vbert"]:
            words = ["w2vbert", *words[3:]]
        words = expand(small(words))
        if words[0] == "w2vbert":
            for key, value in environment.items():
                monkeypatch.setenv(key, value)
            assert main(words[1:]) == 0, f"{block.name}: `{shlex.join(words)}` failed"
        elif words[0] == "python":
            env = os.environ | environment | {"PYTHONPATH": str(ROOT / "src")}
            done = subprocess.run([sys.executable, *words[1:]], env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{block.name}: `{shlex.join(words)}` failed:\n{done.stderr[-3000:]}"
        else:
            pytest.fail(f"{block.name}: this test runs `w2vbert ...` and `python ...` lines, not `{words[0]}`: "
                        "mark the block `bash notest: REASON` if it cannot run here")


@contextlib.contextmanager
def serving(block: Block):
    """The server of a "bash server" block running (in a child process, in the current folder) until the end."""
    import httpx

    words = shell_commands(block.source)
    assert len(words) == 1 and words[0][:2] == ["w2vbert", "serve"], f"{block.name}: one `w2vbert serve` line"
    port = int(words[0][words[0].index("--port") + 1]) if "--port" in words[0] else 8000
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen([sys.executable, "-m", "w2vbert", *words[0][1:]], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"{block.name}: the server exited: {process.stdout.read()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"{block.name}: /health did not answer within 120 s"
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        process.wait(60)


def server_above(block: Block) -> Block:
    page = [other for other in BLOCKS if other.page == block.page and other.line < block.line]
    servers = [other for other in page if other.role == "server"]
    assert servers, f"{block.name}: a client block needs a `bash server` block above it on its page"
    return servers[-1]


# --- the tests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.name)
def test_the_code_block_runs(block, request, monkeypatch):
    if block.skip_reason is not None:
        pytest.skip(f"notest {block.name}: {block.skip_reason}")
    assert block.language in ("python", "bash"), f"{block.name}: a block is python, bash or text (shown output)"
    request.getfixturevalue("workdir")
    if block.role == "server":
        with serving(block):
            return
    with serving(server_above(block)) if block.role == "client" else contextlib.nullcontext():
        if block.language == "python":
            run_python(block)
        else:
            run_shell(block, monkeypatch)


def test_most_blocks_run_and_each_that_does_not_says_why():
    skipped = [block for block in BLOCKS if block.skip_reason is not None]
    assert all(len(block.skip_reason) >= 10 for block in skipped), [b.name for b in skipped]
    assert len(skipped) <= 0.4 * len(BLOCKS), "\n".join(f"{b.name}: {b.skip_reason}" for b in skipped)


def test_the_readme_is_a_front_door_of_at_most_200_lines():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


def test_the_readme_names_the_test_command_ci_runs():
    command = ".venv/bin/python -m pytest -q"
    assert command in (ROOT / "README.md").read_text(encoding="utf-8")
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()[-1]


def test_every_extra_the_readme_names_exists():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = set(re.findall(r"w2vbert\[(\w[\w,-]*)\]", (ROOT / "README.md").read_text(encoding="utf-8")))
    assert named and {extra for group in named for extra in group.split(",")} <= set(extras)


def test_the_docs_nav_lists_every_page_once():
    def pages(nav) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        items = nav.values() if isinstance(nav, dict) else nav
        return [page for item in items for page in pages(item)]

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = pages(config["nav"])
    assert sorted(listed) == sorted(page.name for page in (ROOT / "docs").glob("*.md"))


def resolves(dotted: str) -> bool:
    """Whether `w2vbert.a.b.c` names a module, or an attribute of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def named_in_prose(pattern: str) -> set[str]:
    """What `pattern` matches in the pages and ARCHITECTURE.md, but for the old names of the moved-modules table."""
    found = set()
    for page in [*PAGES, ROOT / "ARCHITECTURE.md"]:
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("| `w2vbert."):  # | `old module` | `new module` |
                line = line.split("|", 2)[2]
            found |= {match.rstrip(".") for match in re.findall(pattern, line)}
    return found


def test_every_module_and_name_the_pages_mention_exists():
    missing = sorted(name for name in named_in_prose(r"\bw2vbert(?:\.[A-Za-z_]\w*)+") if not resolves(name))
    assert not missing, f"named in the docs but not in the code: {missing}"


def test_every_file_the_pages_mention_exists():
    paths = named_in_prose(r"\b(?:src|benchmarks|scripts|examples|tests)/[\w/.*-]+")
    missing = sorted(path for path in paths if not glob.glob(str(ROOT / path)))
    assert not missing, f"named in the docs but not in the repository: {missing}"
