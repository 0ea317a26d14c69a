"""What an evaluation measures, one scorer per kind of task, and which checkpoint is best by it.

In order: `error_rates` (corpus WER and CER), the `Scorer` interface, then `CTCScorer` (WER/CER of greedy
decodes), `AccuracyScorer` (one label per clip), `FrameScorer` (frame accuracy and per-label F1),
`VerificationScorer` (EER and minDCF of trial pairs, the threshold kept in the checkpoint) and `PretrainingScorer`
(the objective's parts). Contract: `add` sees this rank's batches only; `result` is a collective (every rank
calls it, and every rank gets the figures over all ranks); `score` is lower-is-better.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import jiwer
import torch

from w2vbert.data.verification import all_pairs, cosine_scores, equal_error_rate, min_dcf, read_trials
from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.text.encoding import LABEL_PAD
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
from w2vbert.training.distributed import Distributed, all_gather, all_reduce
from w2vbert.utils.padding import lengths_to_mask

PRETRAINING_LOG_VALUES = ("contrastive_loss", "diversity_loss", "masked_prediction_loss", "contrastive_accuracy",
                          "codevector_perplexity", "gumbel_temperature")


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus WER and CER (jiwer): errors over all words / characters of the set, not averaged per clip."""
    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    if not pairs:
        return {"wer": float("nan"), "cer": float("nan")}
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}


class Scorer:
    """What a task's evaluation measures: `add` each batch's output, `result` over all ranks, `score` it (lower is
    better; the best checkpoint has the lowest), and `keep` what a checkpoint should carry of it."""

    reads_trials: ClassVar[bool] = False  # evaluates pairs of clips from a trial file (`TrainingConfig.trials`)

    def __init__(
        self, model: Wav2Vec2BertPreTrainedModel, tokenizer: Wav2Vec2CTCTokenizer | None = None,
        trials: str | None = None,
    ) -> None:
        """A scorer of `model` (decoding with `tokenizer`; xvector: pairs from the `trials` file, or every pair)."""

    @staticmethod
    def check(tokenizer: Wav2Vec2CTCTokenizer | None) -> None:
        """Refuse, before training starts, a run whose evaluation could not be scored (nothing, mostly)."""

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        raise NotImplementedError

    @staticmethod
    def score(result: dict[str, float]) -> float:
        raise NotImplementedError

    @staticmethod
    def keep(model: Wav2Vec2BertPreTrainedModel, result: dict[str, float]) -> None:
        """Record in the model's config what its checkpoint should carry of this evaluation (nothing, mostly)."""


class CTCScorer(Scorer):
    """Evaluation of a CTC model: corpus WER and CER of greedy decodes; the best checkpoint has the lowest WER."""

    def __init__(
        self, model: Wav2Vec2BertPreTrainedModel, tokenizer: Wav2Vec2CTCTokenizer | None = None,
        trials: str | None = None,
    ) -> None:
        self.check(tokenizer)
        self.model, self.tokenizer = model, tokenizer
        self.references: list[str] = []
        self.hypotheses: list[str] = []

    @staticmethod
    def check(tokenizer: Wav2Vec2CTCTokenizer | None) -> None:
        if tokenizer is None:
            raise ValueError("CTC evaluation decodes with the tokenizer: pass tokenizer=...")

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        ids = output.logits.argmax(-1)
        mask = inputs["attention_mask"]
        lengths = self.model.get_feat_extract_output_lengths(mask.sum(-1).long()).to(ids.device)
        ids = ids.masked_fill(~lengths_to_mask(lengths, ids.shape[1]), self.tokenizer.pad_token_id).cpu()
        self.hypotheses += self.tokenizer.batch_decode(ids.tolist())
        self.references += list(batch["texts"])

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        gathered = all_gather((self.references, self.hypotheses), env)
        references = [r for refs, _ in gathered for r in refs]
        hypotheses = [h for _, hyps in gathered for h in hyps]
        return error_rates(references, hypotheses)

    @staticmethod
    def score(result: dict[str, float]) -> float:
        """Lower is better."""
        return result["wer"]


class AccuracyScorer(Scorer):
    """Evaluation of a classifier: accuracy; the best checkpoint has the highest."""

    def __init__(
        self, model: Wav2Vec2BertPreTrainedModel, tokenizer: Wav2Vec2CTCTokenizer | None = None,
        trials: str | None = None,
    ) -> None:
        self.correct = 0.0

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        self.correct += float((output.logits.argmax(-1).cpu() == batch["labels"]).sum())

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        (correct,) = all_reduce([self.correct], env, device)
        return {"accuracy": correct / max(count, 1)}

    @staticmethod
    def score(result: dict[str, float]) -> float:
        return -result["accuracy"]


class FrameScorer(Scorer):
    """Evaluation of a frame classifier: frame accuracy and each label's F1 over the valid frames (padding left
    out); the best checkpoint has the highest macro F1 (the mean over labels, so a rare label counts as much as
    the background)."""

    def __init__(
        self, model: Wav2Vec2BertPreTrainedModel, tokenizer: Wav2Vec2CTCTokenizer | None = None,
        trials: str | None = None,
    ) -> None:
        config = model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.confusion = torch.zeros(len(self.labels), len(self.labels), dtype=torch.float64)  # (true, predicted)

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        truth = batch["labels"].flatten()
        predicted = output.logits.argmax(-1).cpu().flatten()
        valid = truth != LABEL_PAD
        n = len(self.labels)
        self.confusion += torch.bincount(truth[valid] * n + predicted[valid], minlength=n * n).view(n, n)

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        n = len(self.labels)
        confusion = torch.tensor(all_reduce(self.confusion.flatten().tolist(), env, device)).view(n, n)
        hits = confusion.diagonal()
        f1 = 2 * hits / (confusion.sum(0) + confusion.sum(1)).clamp(min=1)
        return {"frame_accuracy": float(hits.sum() / confusion.sum().clamp(min=1)), "macro_f1": float(f1.mean()),
                **{f"f1_{label}": float(value) for label, value in zip(self.labels, f1, strict=True)}}

    @staticmethod
    def score(result: dict[str, float]) -> float:
        return -result["macro_f1"]


class VerificationScorer(Scorer):
    """Evaluation of a speaker-embedding model: cosine scores of trial pairs of held-out clips (the trial file of
    `TrainingConfig.trials`, or every pair), equal error rate, minimum detection cost, and the threshold at the
    equal-error point, which the checkpoint keeps (`verification_threshold` in its config); the best checkpoint has
    the lowest EER."""

    reads_trials = True

    def __init__(
        self, model: Wav2Vec2BertPreTrainedModel, tokenizer: Wav2Vec2CTCTokenizer | None = None,
        trials: str | None = None,
    ) -> None:
        self.trials = trials
        self.embeddings: dict[str, torch.Tensor] = {}
        self.speakers: dict[str, str] = {}

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        for clip, speaker, embedding in zip(batch["clips"], batch["texts"], output.embeddings.float().cpu(),
                                            strict=True):
            self.embeddings[clip], self.speakers[clip] = embedding, speaker

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        gathered = all_gather((self.embeddings, self.speakers), env)
        embeddings = {k: v for rank_embeddings, _ in gathered for k, v in rank_embeddings.items()}
        speakers = {k: v for _, rank_speakers in gathered for k, v in rank_speakers.items()}
        trials = read_trials(self.trials) if self.trials else all_pairs(speakers)
        scores = cosine_scores(embeddings, trials)
        if not bool(torch.isfinite(scores).all()):  # a diverged model: no best checkpoint, no threshold from it
            return {"eer": math.nan, "min_dcf": math.nan, "threshold": math.nan, "trials": len(trials)}
        targets = torch.tensor([target for _, _, target in trials], dtype=torch.bool)
        eer, threshold = equal_error_rate(scores, targets)
        return {"eer": eer, "min_dcf": min_dcf(scores, targets), "threshold": threshold, "trials": len(trials)}

    @staticmethod
    def score(result: dict[str, float]) -> float:
        return result["eer"]

    @staticmethod
    def keep(model: Wav2Vec2BertPreTrainedModel, result: dict[str, float]) -> None:
        if math.isfinite(result["threshold"]):
            model.config.verification_threshold = result["threshold"]


class PretrainingScorer(Scorer):
    """Evaluation of pre-training: the objective's parts per masked frame; the best checkpoint has the lowest loss."""

    def __init__(
        self, model: Wav2Vec2BertPreTrainedModel, tokenizer: Wav2Vec2CTCTokenizer | None = None,
        trials: str | None = None,
    ) -> None:
        self.sums: Counter = Counter()

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        frames = float(output.masked_frames)
        for name, value in output.log_values().items():
            self.sums[name] += value * frames

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        names = sorted(PRETRAINING_LOG_VALUES)
        sums = all_reduce([self.sums[name] for name in names], env, device)
        return {name: total / max(count, 1) for name, total in zip(names, sums, strict=True)}

    @staticmethod
    def score(result: dict[str, float]) -> float:
        return result["loss"]

