"""Continued pre-training: `Wav2Vec2BertForPreTraining`, the w2v-BERT objective on top of the encoder.

The recipe (w2v-BERT, Chung et al. 2021; as fairseq2 v0.2's wav2vec2 and w2vbert models compute it, with the
sizes of conformer_shaw.pt, W2v-BERT 2.0's release):

    input_features (B, T, 160) -> feature_projection.layer_norm -> x          (the quantizer's input, unmasked)
    x -> feature_projection.projection -> masked spans replaced by masked_spec_embed -> the Conformer blocks
    block `config.contrastive_layer` (8 of 24) -> project_hid -> c            (the contrastive part, wav2vec 2.0)
    x at the masked frames -> quantizer (Gumbel, 2 codebooks x 320) -> project_q -> q
        contrastive loss: c against its q and 100 distractors (other masked frames of its clip), cosine / 0.1
        diversity loss:   (codebook entries - perplexity of the mean softmax) / codebook entries
    last block -> masked_prediction_head -> each masked frame's codebook indices (the BERT part), cross-entropy
    loss = masked_prediction_weight * L_bert + contrastive_weight * (L_contrastive + diversity_weight * L_div)

Each loss term is summed over the masked frames (the diversity loss counted once per masked frame), and `loss` is
their weighted sum divided by the number of masked frames.

What is random (the masked spans, the distractors, the Gumbel noise) is drawn for each clip from its own seed
(`sample_masks`, `gumbel_seeds`), so a clip's draws do not depend on the batch it is in, and a resumed run draws
what an uninterrupted one did. The codebook perplexity is of the mean softmax over the whole global batch: under
torchrun the processes' sums meet in a differentiable all-reduce, so N processes compute what one does. The two
deliberate differences from fairseq2, which trims every clip of a batch to the batch's smallest masked count and
takes the perplexity over each process's share.

In order: the output, `sample_masks`, the Gumbel vector quantizer, the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as distributed_functional
import torch.nn.functional as F
from torch import nn

from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.encoder import Wav2Vec2BertModel
from w2vbert.model.heads import _HeadModel
from w2vbert.model.outputs import ModelOutput


@dataclass
class Wav2Vec2BertForPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None  # the weighted sum of the three terms per masked frame
    projected_states: torch.Tensor | None = None  # (masked frames, proj_codevector_dim): c
    projected_quantized_states: torch.Tensor | None = None  # (masked frames, proj_codevector_dim): q
    codevector_perplexity: torch.Tensor | None = None  # summed over codebooks, of the mean softmax
    contrastive_loss: torch.Tensor | None = None  # summed over masked frames
    diversity_loss: torch.Tensor | None = None  # (entries - perplexity) / entries, once
    masked_prediction_loss: torch.Tensor | None = None  # summed over masked frames and target codebooks
    contrastive_accuracy: torch.Tensor | None = None  # share of masked frames whose own q scores highest
    gumbel_temperature: torch.Tensor | None = None
    masked_frames: torch.Tensor | None = None  # how many frames the sums run over
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None

    def log_values(self) -> dict[str, float]:
        """The figures a training log records, per masked frame where they are sums."""
        frames = max(int(self.masked_frames), 1)
        return {
            "contrastive_loss": float(self.contrastive_loss.detach()) / frames,
            "diversity_loss": float(self.diversity_loss.detach()),
            "masked_prediction_loss": float(self.masked_prediction_loss.detach()) / frames,
            "contrastive_accuracy": float(self.contrastive_accuracy),
            "codevector_perplexity": float(self.codevector_perplexity),
            "gumbel_temperature": float(self.gumbel_temperature),
        }


def example_seeds(seed: int, epoch: int, indices: list[int]) -> torch.Tensor:
    """One seed per example from (run seed, epoch, example index): the same draw in any batch, on any rank."""
    return torch.tensor([(seed * 1_000_003 + epoch) * 1_000_003 + index for index in indices], dtype=torch.long) % (
        2**62
    )


def sample_masks(
    lengths: torch.Tensor, frames: int, seeds: torch.Tensor, config: Wav2Vec2BertConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked time spans and distractors for each clip, from its own seed.

    A clip of `length` valid steps gets max(floor(pretraining_mask_prob / span * (length - 1)), mask_time_min_masks)
    spans of `mask_time_length` steps, each starting uniformly in [0, length - span], overlaps allowed (fairseq2's
    masker); so no span reaches the padding. Each masked frame gets `num_negatives` distractors drawn uniformly, with
    replacement, from the clip's other masked frames.

    Returns `mask_time_indices` (B, frames) bool and `sampled_negative_indices` (B, frames, num_negatives) long:
    indices into the batch's (B * frames) flattened frames, meaningful at masked frames only (0 elsewhere).
    """
    span, negatives = config.mask_time_length, config.num_negatives
    batch = len(lengths)
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    distractors = torch.zeros(batch, frames, negatives, dtype=torch.long)
    for row, (length, seed) in enumerate(zip(lengths.tolist(), seeds.tolist(), strict=True)):
        if length <= span:
            raise ValueError(
                f"a clip of {length} steps is too short to mask: pre-training needs more than mask_time_length={span}"
            )
        generator = torch.Generator().manual_seed(int(seed))
        count = max(int(config.pretraining_mask_prob / span * (length - 1)), config.mask_time_min_masks, 1)
        starts = torch.randint(0, length - span + 1, (count,), generator=generator)
        mask[row, (starts[:, None] + torch.arange(span)).flatten()] = True
        positions = mask[row].nonzero().flatten()  # (M,) the clip's masked frames
        picks = torch.randint(0, len(positions) - 1, (len(positions), negatives), generator=generator)
        picks += picks >= torch.arange(len(positions))[:, None]  # skip the frame itself: 0..M-1 without i
        distractors[row, positions] = row * frames + positions[picks]
    return mask, distractors


def global_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean over the first axis of `values` of every process (one process: its own), with gradients.

    Under torchrun each process's sum and count meet in an all-reduce that backpropagates
    (`torch.distributed.nn.functional.all_reduce`); every process must call it the same number of times, as the
    trainer's forward passes do (a process whose clips were all bad still runs one).
    """
    total = values.sum(0)
    count = values.new_tensor(float(values.shape[0]))
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        total = distributed_functional.all_reduce(total)
        count = distributed_functional.all_reduce(count)
    return total / count.clamp(min=1.0)


class Wav2Vec2BertGumbelVectorQuantizer(nn.Module):
    """Product quantizer of the stacked fbank frames: per codebook, a Gumbel-softmax choice of one entry.

    In training the choice is a straight-through hard sample at the scheduled temperature (`num_updates` counts
    the training forward passes, as fairseq2's does); in evaluation it is the argmax. The chosen entries of the
    codebooks are concatenated.
    """

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        self.num_groups = config.num_codevector_groups
        self.num_vars = config.num_codevectors_per_group
        self.max_temperature, self.min_temperature = config.max_gumbel_temperature, config.min_gumbel_temperature
        self.decay = config.gumbel_temperature_decay
        self.weight_proj = nn.Linear(config.feature_projection_input_dim, self.num_groups * self.num_vars)
        self.codevectors = nn.Parameter(
            torch.empty(1, self.num_groups * self.num_vars, config.codevector_dim // self.num_groups)
        )
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Logits from N(0, 1) weights and zero bias, entries U(0, 1): fairseq2's and transformers' start."""
        self.weight_proj.weight.normal_()
        self.weight_proj.bias.zero_()
        self.codevectors.uniform_()

    @property
    def temperature(self) -> float:
        return max(self.max_temperature * self.decay ** int(self.num_updates), self.min_temperature)

    def forward(
        self, features: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """features (N, 160) -> (quantized (N, codevector_dim), hard choices (N, G, V), softmax (N, G, V), temperature).

        `noise`: uniform (0, 1) draws (N, G * V) for the Gumbel samples in training (default: torch's generator).
        """
        count = features.shape[0]
        logits = self.weight_proj(features).float().view(count, self.num_groups, self.num_vars)  # (N, G, V)
        temperature = self.temperature
        if self.training:
            if noise is None:
                noise = torch.rand(logits.shape, device=logits.device)
            gumbel = -torch.log(-torch.log(noise.view_as(logits).clamp(1e-10, 1 - 1e-7)))
            soft = torch.softmax((logits + gumbel) / temperature, dim=-1)
            hard = F.one_hot(soft.argmax(-1), self.num_vars).to(soft.dtype)
            choices = hard - soft.detach() + soft  # straight-through: the hard choice forward, the soft gradient
            self.num_updates += 1
        else:
            choices = F.one_hot(logits.argmax(-1), self.num_vars).to(logits.dtype)
        entries = self.codevectors.view(self.num_groups, self.num_vars, -1).float()  # (G, V, d)
        width = self.num_groups * self.codevectors.shape[-1]
        quantized = torch.einsum("ngv,gvd->ngd", choices, entries).reshape(count, width)  # (N, G * d)
        return quantized.to(features.dtype), choices.detach(), torch.softmax(logits, dim=-1), temperature


class Wav2Vec2BertForPreTraining(_HeadModel):
    """The encoder with the w2v-BERT pre-training objective (see the module map).

    Parameter names: the encoder under `wav2vec2_bert`, as every head, so that `Wav2Vec2BertModel` and
    `Wav2Vec2BertForCTC` (here and in transformers) load a saved pre-training checkpoint as their encoder and report
    `quantizer`, `project_hid`, `project_q` and `masked_prediction_head` as unused. conformer_shaw.pt's quantizer
    and contrastive projections load into it (model/fairseq2.py); its masked-prediction head is not in the release and
    starts fresh.
    """

    pretraining_tensors = True  # loading a fairseq2 file keeps its quantizer and projections

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__(config)
        if config.add_adapter:
            raise ValueError("pre-training runs on the encoder without the adapter: pass add_adapter=False")
        if not config.apply_spec_augment:
            raise ValueError("pre-training replaces masked frames (apply_spec_augment=False turns that off): pass True")
        self.wav2vec2_bert = Wav2Vec2BertModel(config)
        if self.wav2vec2_bert.masked_spec_embed is None:  # masked frames need their embedding even without SpecAugment
            self.wav2vec2_bert.masked_spec_embed = nn.Parameter(torch.empty(config.hidden_size).uniform_())
        self.quantizer = Wav2Vec2BertGumbelVectorQuantizer(config)
        self.project_hid = nn.Linear(config.hidden_size, config.proj_codevector_dim)  # fairseq2: final_proj
        self.project_q = nn.Linear(config.codevector_dim, config.proj_codevector_dim)  # final_target_proj
        self.masked_prediction_head = nn.Linear(  # fairseq2: final_bert_proj, outputs V-major (v * groups + g)
            config.hidden_size, config.num_codevectors_per_group * config.num_target_codebooks
        )
        self.post_init()

    def sample_masks(self, attention_mask: torch.Tensor, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`sample_masks` for a batch's (B, T) attention mask, one seed per clip."""
        lengths = attention_mask.long().sum(-1).cpu()
        return sample_masks(lengths, attention_mask.shape[1], seeds.cpu(), self.config)

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        sampled_negative_indices: torch.Tensor | None = None,
        gumbel_seeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> Wav2Vec2BertForPreTrainingOutput | tuple:
        """The pre-training losses of a batch of features.

        `mask_time_indices` (B, T) and `sampled_negative_indices` (B, T, K) are drawn here (`sample_masks`, from
        `gumbel_seeds` or torch's generator) unless given, as transformers' collators give them; `gumbel_seeds`
        (B,) also seed each clip's Gumbel noise.
        """
        _, output_hidden_states, return_dict = self.output_flags(output_attentions, output_hidden_states, return_dict)
        masked, sampled_negative_indices, gumbel_seeds = self._masks(
            input_features, attention_mask, mask_time_indices, sampled_negative_indices, gumbel_seeds
        )  # (B, T) bool: the masked frames
        outputs = self.wav2vec2_bert(
            input_features, attention_mask, mask_time_indices=masked, output_attentions=output_attentions,
            output_hidden_states=True, return_dict=True,
        )
        count = int(masked.sum())
        normed = outputs.extract_features[masked]  # (N, 160): the layer-normed input, unmasked
        contrastive_input = outputs.hidden_states[self.config.contrastive_layer][masked]  # (N, hidden)
        last = outputs.hidden_states[-1][masked]
        noise = None
        if self.training and gumbel_seeds is not None:
            noise = self._noise(masked, gumbel_seeds).to(input_features.device)
        # The quantizer's targets do not train the front end's LayerNorm (fairseq2 v0.2 detaches its input).
        quantized, choices, probabilities, temperature = self.quantizer(normed.detach(), noise)
        c = self.project_hid(contrastive_input).float()  # (N, P)
        q = self.project_q(quantized).float()  # (N, P)
        mean = global_mean(probabilities)  # (G, V) over the masked frames of every process (all take part)
        if count == 0:
            output = self._nothing_masked(
                c, q, last, temperature, outputs.hidden_states if output_hidden_states else None, outputs.attentions
            )
            return output if return_dict else output.to_tuple()
        contrastive, accuracy = self._contrastive(c, q, masked, sampled_negative_indices.to(masked.device))
        perplexity = torch.exp(-(mean * torch.log(mean + 1e-7)).sum(-1)).sum()
        entries = self.quantizer.num_groups * self.quantizer.num_vars
        diversity = (entries - perplexity) / entries
        groups = self.config.num_target_codebooks
        prediction = self.masked_prediction_head(last).float().view(count, -1, groups)  # (N, V, groups)
        targets = choices[:, :groups].argmax(-1)  # (N, groups): the chosen entries of the first codebooks
        masked_prediction = F.cross_entropy(prediction, targets, reduction="sum")
        total = self.config.masked_prediction_loss_weight * masked_prediction + self.config.contrastive_loss_weight * (
            contrastive + self.config.diversity_loss_weight * diversity * count
        )
        output = Wav2Vec2BertForPreTrainingOutput(
            total / count, c, q, perplexity.detach(), contrastive, diversity, masked_prediction, accuracy,
            torch.tensor(temperature), torch.tensor(count), outputs.hidden_states if output_hidden_states else None,
            outputs.attentions,
        )
        return output if return_dict else output.to_tuple()

    def _nothing_masked(
        self, c: torch.Tensor, q: torch.Tensor, last: torch.Tensor, temperature: float,
        hidden_states: tuple | None, attentions: tuple | None,
    ) -> Wav2Vec2BertForPreTrainingOutput:
        """The output of a batch with no masked frame: zero losses that still reach every parameter, never NaN."""
        zero = (c.sum() + q.sum() + self.masked_prediction_head(last).sum()) * 0.0
        return Wav2Vec2BertForPreTrainingOutput(
            zero, c, q, zero.detach(), zero, zero.detach(), zero, zero.detach(), torch.tensor(temperature),
            torch.tensor(0), hidden_states, attentions,
        )

    def _masks(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None,
        mask_time_indices: torch.Tensor | None,
        sampled_negative_indices: torch.Tensor | None,
        gumbel_seeds: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The masked frames (B, T) bool on the features' device, their distractors (B, T, K) and the clips' seeds:
        as given, or drawn here (`sample_masks`) from `gumbel_seeds`, themselves drawn when not given."""
        batch, frames, _ = input_features.shape
        if mask_time_indices is None:
            if gumbel_seeds is None:
                gumbel_seeds = torch.randint(0, 2**62, (batch,))
            mask = torch.ones(batch, frames, dtype=torch.long) if attention_mask is None else attention_mask
            mask_time_indices, sampled_negative_indices = self.sample_masks(mask, gumbel_seeds)
        elif sampled_negative_indices is None:
            raise ValueError("mask_time_indices given without sampled_negative_indices: pass both, or neither")
        return mask_time_indices.to(input_features.device).bool(), sampled_negative_indices, gumbel_seeds

    def _contrastive(
        self, c: torch.Tensor, q: torch.Tensor, masked: torch.Tensor, negatives: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy of each c against [its q, its distractors' q] (cosine / temperature, the positive
        first; a distractor equal to the positive scores -inf), and the share where the positive wins."""
        row_of = torch.full((masked.numel(),), -1, dtype=torch.long, device=masked.device)
        row_of[masked.flatten()] = torch.arange(len(c), device=masked.device)  # flat frame -> row of c and q
        picks = row_of[negatives[masked]]  # (N, K)
        if bool((picks < 0).any()):
            raise ValueError("sampled_negative_indices must point at masked frames of the same batch")
        candidates = torch.cat([q[:, None], q[picks]], dim=1)  # (N, 1 + K, P)
        logits = F.cosine_similarity(c[:, None], candidates, dim=-1) / self.config.contrastive_logits_temperature
        same = (q[picks] == q[:, None]).all(-1)  # (N, K)
        logits[:, 1:] = logits[:, 1:].masked_fill(same, float("-inf"))
        target = torch.zeros(len(c), dtype=torch.long, device=c.device)
        loss = F.cross_entropy(logits, target, reduction="sum")
        return loss, (logits.argmax(-1) == 0).float().mean().detach()

    def _noise(self, masked: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """Uniform draws for each clip's masked frames' Gumbel samples, from the clip's seed: (N, G * V)."""
        width = self.quantizer.num_groups * self.quantizer.num_vars
        draws = []
        for row, seed in enumerate(seeds.tolist()):
            generator = torch.Generator().manual_seed(int(seed) ^ 0x5DEECE66D)  # not the mask's stream
            draws.append(torch.rand(int(masked[row].sum()), width, generator=generator))
        return torch.cat(draws)

