"""Output files of the inference commands, each written atomically (`files.atomic_output`): transcripts as txt,
json, srt, vtt or tsv (as the Whisper command line writes them), labels as json, embeddings as npy or safetensors.

Forced alignments (`w2vbert align`) also go to Praat's TextGrid (`to_textgrid`). Subtitles need segments, and CTC
gives words with times: words are grouped into a segment until a pause,
a length or a character budget ends it. A file's outputs are named after it: `<output_dir>/<stem>.<format>`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from w2vbert.utils.files import atomic_output, atomic_write_text

if TYPE_CHECKING:
    import numpy as np

FORMATS = ("txt", "json", "srt", "vtt", "tsv")
EMBEDDING_FORMATS = ("npy", "safetensors")
SEGMENT_PAUSE_S = 0.8  # a silence this long between words starts a new subtitle
SEGMENT_MAX_S = 7.0  # subtitles longer than this are split at the next word
SEGMENT_MAX_CHARS = 84  # two lines of 42 characters, the usual subtitle limit


def segments(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group `[{"text", "timestamp": (start, end)}]` words into `[{"text", "start", "end"}]` segments."""
    out: list[dict[str, Any]] = []
    for word in words:
        start, end = word["timestamp"]
        if out:
            last = out[-1]
            gap, length = start - last["end"], end - last["start"]
            if (
                gap < SEGMENT_PAUSE_S
                and length <= SEGMENT_MAX_S
                and len(last["text"]) + 1 + len(word["text"]) <= SEGMENT_MAX_CHARS
            ):
                last["text"] += " " + word["text"]
                last["end"] = end
                continue
        out.append({"text": word["text"], "start": start, "end": end})
    return out


def timestamp(seconds: float, separator: str) -> str:
    """`HH:MM:SS,mmm` (srt, separator ",") or `HH:MM:SS.mmm` (vtt, ".")."""
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_txt(result: dict[str, Any]) -> str:
    return result["text"] + "\n"


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False, indent=2) + "\n"


def to_srt(result: dict[str, Any]) -> str:
    blocks = [
        f"{i}\n{timestamp(s['start'], ',')} --> {timestamp(s['end'], ',')}\n{s['text']}\n"
        for i, s in enumerate(segments(_words(result)), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(result: dict[str, Any]) -> str:
    blocks = [
        f"{timestamp(s['start'], '.')} --> {timestamp(s['end'], '.')}\n{s['text']}\n" for s in segments(_words(result))
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_tsv(result: dict[str, Any]) -> str:
    """start, end (integer milliseconds, as Whisper's tsv) and text of each segment."""
    rows = [f"{round(s['start'] * 1000)}\t{round(s['end'] * 1000)}\t{s['text']}" for s in segments(_words(result))]
    return "start\tend\ttext\n" + "".join(row + "\n" for row in rows)


def _words(result: dict[str, Any]) -> list[dict[str, Any]]:
    if "chunks" not in result:
        raise ValueError("subtitle formats need word timestamps: transcribe with return_timestamps='word'")
    return result["chunks"]


def words_from_chars(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Character chunks (spaces included, as `return_timestamps="char"` gives them) -> word chunks."""
    words: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    for chunk in [*chunks, {"text": " ", "timestamp": (0.0, 0.0)}]:
        if chunk["text"].strip():
            current.append(chunk)
        elif current:
            words.append({"text": "".join(c["text"] for c in current),
                          "timestamp": (current[0]["timestamp"][0], current[-1]["timestamp"][1])})
            current = []
    return words


WRITERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "txt": to_txt,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
}


def output_path(audio_path: str | Path, output_dir: str | Path, extension: str) -> Path:
    """Where the output of `audio_path` goes: `<output_dir>/<stem>.<extension>`."""
    return Path(output_dir) / f"{Path(audio_path).stem}.{extension}"


def format_transcript(result: dict[str, Any], fmt: str) -> str:
    """A transcript result as the text of a `fmt` file."""
    if fmt not in WRITERS:
        raise ValueError(f"output format must be one of {FORMATS}, got {fmt!r}")
    return WRITERS[fmt](result)


def write_transcript(result: dict[str, Any], audio_path: str | Path, output_dir: str | Path, fmt: str) -> Path:
    """Write `<output_dir>/<audio stem>.<fmt>`; returns its path."""
    text = format_transcript(result, fmt)
    path = output_path(audio_path, output_dir, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)


def write_labels(labels: list[dict[str, Any]], audio_path: str | Path, output_dir: str | Path) -> Path:
    """Write a classification result (`[{"label", "score"}, ...]`, or a frame classifier's segments) as
    `<output_dir>/<audio stem>.json`."""
    return atomic_write_text(output_path(audio_path, output_dir, "json"), json.dumps(labels, indent=2) + "\n")


def write_embedding(
    embedding: np.ndarray, audio_path: str | Path, output_dir: str | Path, fmt: str, metadata: dict[str, str]
) -> Path:
    """Write an embedding as `<output_dir>/<audio stem>.npy` or `.safetensors` (tensor "embedding", `metadata`)."""
    import numpy as np  # here, not at the top: the command line's --help lists this module's formats without numpy
    from safetensors.numpy import save_file

    if fmt not in EMBEDDING_FORMATS:
        raise ValueError(f"embedding format must be one of {EMBEDDING_FORMATS}, got {fmt!r}")
    path = output_path(audio_path, output_dir, fmt)
    with atomic_output(path) as temporary:
        if fmt == "npy":
            with open(temporary, "wb") as f:  # a file object: np.save would add ".npy" to the temporary name
                np.save(f, embedding)
        else:
            save_file({"embedding": np.ascontiguousarray(embedding)}, temporary, metadata=metadata)
    return path


def to_textgrid(tiers: dict[str, list[dict[str, Any]]], duration: float) -> str:
    """Praat's long TextGrid format: one interval tier per entry of `tiers` ({"text", "start", "end"} items, in
    order); the gaps between items become empty intervals, so each tier covers [0, duration]."""
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {duration:.3f}",
             "tiers? <exists>", f"size = {len(tiers)}", "item []:"]
    for number, (name, items) in enumerate(tiers.items(), start=1):
        intervals, cursor = [], 0.0
        for item in items:
            if item["start"] > cursor:
                intervals.append((cursor, item["start"], ""))
            intervals.append((item["start"], item["end"], item["text"]))
            cursor = item["end"]
        if cursor < duration:
            intervals.append((cursor, duration, ""))
        lines += [f"    item [{number}]:", '        class = "IntervalTier"', f'        name = "{name}"',
                  "        xmin = 0", f"        xmax = {duration:.3f}", f"        intervals: size = {len(intervals)}"]
        for index, (start, end, text) in enumerate(intervals, start=1):
            escaped = text.replace('"', '""')
            lines += [f"        intervals [{index}]:", f"            xmin = {start:.3f}",
                      f"            xmax = {end:.3f}", f'            text = "{escaped}"']
    return "\n".join(lines) + "\n"
