"""Task heads on the encoder: CTC, sequence classification, frame classification, x-vector.

Each head holds the encoder as `wav2vec2_bert` (the Hugging Face checkpoint prefix). Pooling over time uses
the valid frames of each clip only, so a clip's result does not depend on the batch it is in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.encoder import Wav2Vec2BertModel
from w2vbert.model.outputs import CausalLMOutput, SequenceClassifierOutput, TokenClassifierOutput, XVectorOutput
from w2vbert.text.encoding import LABEL_PAD
from w2vbert.utils.padding import lengths_to_mask


class _HeadModel(Wav2Vec2BertPreTrainedModel):
    """The encoder plus what the heads share: frame lengths, weighted layer sums, freezing."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__(config)
        self.layer_weights = None  # softmax weights of the hidden states, with config.use_weighted_layer_sum

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The layer weights start equal, as transformers initialises them."""
        if self.layer_weights is not None:
            self.layer_weights.fill_(1.0 / len(self.layer_weights))

    def _encode(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_attentions: bool,
        output_hidden_states: bool,
        weighted: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple | None, tuple | None]:
        """Run the encoder; return (features for the head, output lengths or None, hidden_states, attentions).

        With `use_weighted_layer_sum` (and `weighted`), the head reads the softmax-weighted sum of all hidden
        states, which are taken before the adapter, so its lengths are the encoder's.
        """
        weighted = weighted and self.config.use_weighted_layer_sum
        outputs = self.wav2vec2_bert(  # the head's flags, resolved: the encoder's config must not turn them
            input_features, attention_mask, output_attentions=output_attentions,
            output_hidden_states=weighted or output_hidden_states, return_dict=True,
        )
        if weighted:
            stacked = torch.stack(outputs.hidden_states, dim=1)  # (B, layers + 1, T, C)
            weights = self.layer_weights.softmax(dim=-1).view(-1, 1, 1)
            hidden_states = (stacked * weights).sum(dim=1)
        else:
            hidden_states = outputs.last_hidden_state
        lengths = None
        if attention_mask is not None:
            lengths = self.get_feat_extract_output_lengths(attention_mask.sum(-1).long(), add_adapter=not weighted
                                                           and self.config.add_adapter)
        return hidden_states, lengths, outputs.hidden_states if output_hidden_states else None, outputs.attentions

    def freeze_base_model(self) -> None:
        """Train only the head: the encoder's parameters stop receiving gradients."""
        for parameter in self.wav2vec2_bert.parameters():
            parameter.requires_grad = False

    def freeze_feature_encoder(self) -> None:
        """Freeze the feature projection (the nearest thing this model has to wav2vec2's conv encoder)."""
        for parameter in self.wav2vec2_bert.feature_projection.parameters():
            parameter.requires_grad = False

    def _layer_weights(self, config: Wav2Vec2BertConfig) -> None:
        if config.use_weighted_layer_sum:
            num_layers = config.num_hidden_layers + 1  # the blocks and their input
            # made equal, as `reset_parameters` sets them, with no arithmetic on the tensor: on the meta device
            # (loading, counting the parameters) a division makes torch import its compiler, seconds the first time
            self.layer_weights = nn.Parameter(torch.full((num_layers,), 1.0 / num_layers))


def check_label_tensor(labels: object) -> None:
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
        kind = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(f"labels must be a tensor of integer ids, got {kind}: use torch.tensor(labels)")


def check_class_labels(labels: torch.Tensor, batch: int, num_labels: int) -> None:
    """One class id per clip: (batch,) integers in [0, num_labels)."""
    check_label_tensor(labels)
    if labels.numel() != batch:
        raise ValueError(f"labels must hold one class id per clip, shape ({batch},), got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
        raise ValueError(
            f"class ids must be in [0, {num_labels}) (num_labels={num_labels}), got {labels.flatten().tolist()[:8]}"
        )


def _reject_adapter(config: Wav2Vec2BertConfig, name: str) -> None:
    if config.add_adapter:
        raise ValueError(f"{name} does not support the adapter (config.add_adapter=True), as in transformers")


class Wav2Vec2BertForCTC(_HeadModel):
    """Encoder + dropout + linear layer over the vocabulary, trained with CTC (blank = pad_token_id)."""

    def __init__(self, config: Wav2Vec2BertConfig, target_lang: str | None = None) -> None:
        super().__init__(config)
        if config.vocab_size is None:
            raise ValueError(
                "Wav2Vec2BertForCTC needs config.vocab_size (the base checkpoint has none): pass "
                "vocab_size=len(processor.tokenizer) to from_pretrained, or set it in the config"
            )
        self.wav2vec2_bert = Wav2Vec2BertModel(config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.target_lang = target_lang
        head_size = config.output_hidden_size if config.add_adapter else config.hidden_size
        self.lm_head = nn.Linear(head_size, config.vocab_size)
        self.post_init()

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> CausalLMOutput | tuple:
        """labels (B, U): token ids, padded with -100 (or pad_token_id); loss per `ctc_loss_reduction`."""
        output_attentions, output_hidden_states, return_dict = self.output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        if labels is not None:
            self._check_labels(labels, input_features.shape[0])
        hidden_states, lengths, all_hidden, attentions = self._encode(
            input_features, attention_mask, output_attentions, output_hidden_states, weighted=False
        )
        logits = self.lm_head(self.dropout(hidden_states))
        loss = None
        if labels is not None:
            if lengths is None:
                lengths = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long, device=logits.device)
            loss = self.ctc_loss(logits, labels, lengths)
        output = CausalLMOutput(loss, logits, all_hidden, attentions)
        return output if return_dict else output.to_tuple()

    def ctc_loss(self, logits: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """CTC over (B, T, V) logits with valid frame `lengths` (B,), as transformers computes it."""
        blank = self.config.pad_token_id
        labels = labels.to(logits.device)
        label_mask = (labels >= 0) & (labels != blank)  # -100 and the blank both mark padding
        # log-softmax in float32: CTC's sums of probabilities underflow in half precision.
        log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)  # (T, B, V)
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN's CTC wants other layouts and int32
            return F.ctc_loss(
                log_probs, labels.masked_select(label_mask), lengths, label_mask.sum(-1), blank=blank,
                reduction=self.config.ctc_loss_reduction, zero_infinity=self.config.ctc_zero_infinity,
            )

    def _check_labels(self, labels: torch.Tensor, batch: int) -> None:
        check_label_tensor(labels)
        if labels.ndim != 2 or labels.shape[0] != batch:
            raise ValueError(f"labels must have shape (batch={batch}, max_label_length), got {tuple(labels.shape)}")
        if labels.numel() and int(labels.max()) >= self.config.vocab_size:
            raise ValueError(f"label ids must be < vocab_size={self.config.vocab_size}, got {int(labels.max())}")
        if bool(((labels < 0) & (labels != LABEL_PAD)).any()):
            raise ValueError("label ids must be >= 0, or -100 for padding")


class Wav2Vec2BertForSequenceClassification(_HeadModel):
    """Encoder -> projection -> mean over each clip's valid frames -> classifier (one label per clip)."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__(config)
        _reject_adapter(config, "sequence classification")
        self.wav2vec2_bert = Wav2Vec2BertModel(config)
        self._layer_weights(config)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        """labels (B,) class ids; cross-entropy loss."""
        output_attentions, output_hidden_states, return_dict = self.output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        if labels is not None:
            check_class_labels(labels, input_features.shape[0], self.config.num_labels)
        hidden_states, lengths, all_hidden, attentions = self._encode(
            input_features, attention_mask, output_attentions, output_hidden_states
        )
        hidden_states = self.projector(hidden_states)
        if lengths is None:
            pooled = hidden_states.mean(dim=1)
        else:
            valid = lengths_to_mask(lengths, hidden_states.shape[1])[..., None]
            pooled = hidden_states.masked_fill(~valid, 0.0).sum(dim=1) / lengths[:, None].to(hidden_states.dtype)
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1).to(logits.device))
        output = SequenceClassifierOutput(loss, logits, all_hidden, attentions)
        return output if return_dict else output.to_tuple()


class Wav2Vec2BertForAudioFrameClassification(_HeadModel):
    """Encoder -> classifier on every frame (diarization, voice activity)."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__(config)
        _reject_adapter(config, "audio frame classification")
        self.wav2vec2_bert = Wav2Vec2BertModel(config)
        self._layer_weights(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.num_labels = config.num_labels
        self.post_init()

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> TokenClassifierOutput | tuple:
        """labels (B, T, num_labels) one-hot per frame, whose argmax the loss takes, as transformers (padding
        frames count, as class 0); or (B, T) class ids with -100 on frames to leave out (padding): the
        cross-entropy mean over the frames that count."""
        output_attentions, output_hidden_states, return_dict = self.output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        frames = input_features.shape[:2]
        if labels is not None:
            if not isinstance(labels, torch.Tensor):
                raise TypeError(f"labels must be a (batch, frames, num_labels) tensor, got {type(labels).__name__}")
            if tuple(labels.shape) not in ((*frames, self.num_labels), tuple(frames)):
                raise ValueError(
                    f"labels must be one-hot per frame, shape (batch, frames, num_labels) = "
                    f"{(*frames, self.num_labels)}, or class ids per frame {tuple(frames)}; got {tuple(labels.shape)}"
                )
            if labels.ndim == 2 and bool(((labels < 0) & (labels != LABEL_PAD) | (labels >= self.num_labels)).any()):
                raise ValueError(f"frame class ids must be in [0, {self.num_labels}) or -100, got "
                                 f"{sorted(set(labels.unique().tolist()))[:8]}")
        hidden_states, _, all_hidden, attentions = self._encode(
            input_features, attention_mask, output_attentions, output_hidden_states
        )
        logits = self.classifier(hidden_states)
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            targets = labels.view(-1) if labels.ndim == 2 else torch.argmax(labels.view(-1, self.num_labels), dim=1)
            loss = F.cross_entropy(logits.view(-1, self.num_labels), targets, ignore_index=LABEL_PAD)
        output = TokenClassifierOutput(loss, logits, all_hidden, attentions)
        return output if return_dict else output.to_tuple()


class AMSoftmaxLoss(nn.Module):
    """Additive-margin softmax (Wang et al., 2018): cosine logits, margin on the true class, then scaled."""

    def __init__(self, input_dim: int, num_labels: int, scale: float = 30.0, margin: float = 0.4) -> None:
        super().__init__()
        self.scale = scale
        self.margin = margin
        self.num_labels = num_labels
        self.weight = nn.Parameter(torch.randn(input_dim, num_labels))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Class weights start standard normal, as transformers initialises them."""
        self.weight.normal_()

    def forward(self, hidden_states: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.flatten()
        cosine = F.normalize(hidden_states, dim=1) @ F.normalize(self.weight, dim=0)  # (B, num_labels)
        target = F.one_hot(labels, self.num_labels).bool()
        return F.cross_entropy(self.scale * torch.where(target, cosine - self.margin, cosine), labels)


class TDNNLayer(nn.Module):
    """A dilated 1-D convolution stored as a Linear over the stacked kernel taps (the HF checkpoint layout)."""

    def __init__(self, config: Wav2Vec2BertConfig, layer_id: int = 0) -> None:
        super().__init__()
        self.in_conv_dim = config.tdnn_dim[layer_id - 1] if layer_id > 0 else config.tdnn_dim[layer_id]
        self.out_conv_dim = config.tdnn_dim[layer_id]
        self.kernel_size = config.tdnn_kernel[layer_id]
        self.dilation = config.tdnn_dilation[layer_id]
        self.kernel = nn.Linear(self.in_conv_dim * self.kernel_size, self.out_conv_dim)
        self.activation = nn.ReLU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, T, in) -> (B, T - dilation * (kernel - 1), out)."""
        weight = self.kernel.weight.view(self.out_conv_dim, self.kernel_size, self.in_conv_dim).transpose(1, 2)
        hidden_states = F.conv1d(hidden_states.transpose(1, 2), weight, self.kernel.bias, dilation=self.dilation)
        return self.activation(hidden_states.transpose(1, 2))

    def output_lengths(self, lengths: torch.Tensor | int) -> torch.Tensor | int:
        return lengths - self.dilation * (self.kernel_size - 1)


STD_FLOOR = 1e-6  # the smallest standard deviation the x-vector statistics pooling passes on


class Wav2Vec2BertForXVector(_HeadModel):
    """Encoder -> TDNN -> mean and std over valid frames -> speaker embedding; AM-softmax loss."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__(config)
        self.wav2vec2_bert = Wav2Vec2BertModel(config)
        self._layer_weights(config)
        # transformers sizes this from hidden_size, which breaks when an adapter changes the width; the two agree
        # wherever transformers works.
        width = config.output_hidden_size if config.add_adapter and not config.use_weighted_layer_sum else None
        self.projector = nn.Linear(width or config.hidden_size, config.tdnn_dim[0])
        self.tdnn = nn.ModuleList(TDNNLayer(config, i) for i in range(len(config.tdnn_dim)))
        self.feature_extractor = nn.Linear(config.tdnn_dim[-1] * 2, config.xvector_output_dim)
        self.classifier = nn.Linear(config.xvector_output_dim, config.xvector_output_dim)
        self.objective = AMSoftmaxLoss(config.xvector_output_dim, config.num_labels)
        self.post_init()

    def get_tdnn_output_lengths(self, input_lengths: torch.Tensor | int) -> torch.Tensor | int:
        """Frames left after the TDNN stack (dilation counted; transformers leaves it out)."""
        for layer in self.tdnn:
            input_lengths = layer.output_lengths(input_lengths)
        return input_lengths

    _get_tdnn_output_lengths = get_tdnn_output_lengths

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> XVectorOutput | tuple:
        """labels (B,) speaker ids for the AM-softmax loss."""
        output_attentions, output_hidden_states, return_dict = self.output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        if labels is not None:
            check_class_labels(labels, input_features.shape[0], self.config.num_labels)
        hidden_states, lengths, all_hidden, attentions = self._encode(
            input_features, attention_mask, output_attentions, output_hidden_states
        )
        if lengths is None:
            lengths = torch.full((hidden_states.shape[0],), hidden_states.shape[1], device=hidden_states.device)
        lengths = self.get_tdnn_output_lengths(lengths)
        if not torch.onnx.is_in_onnx_export() and bool((lengths < 2).any()):  # a value check: not in a graph
            raise ValueError(
                f"clip too short for the x-vector head: its TDNN layers leave {int(lengths.min())} frames of the "
                f"shortest clip, and the statistics pooling needs at least 2"
            )
        hidden_states = self.projector(hidden_states)
        for layer in self.tdnn:
            hidden_states = layer(hidden_states)
        frames = hidden_states.shape[1]
        # Statistics over each clip's own frames: the TDNN outputs past a clip's length read padding.
        valid = lengths_to_mask(lengths, frames)[..., None]
        count = lengths[:, None].to(hidden_states.dtype)
        mean = hidden_states.masked_fill(~valid, 0.0).sum(dim=1) / count
        variance = ((hidden_states - mean[:, None]).masked_fill(~valid, 0.0) ** 2).sum(dim=1) / (count - 1)
        # sqrt's gradient is infinite at 0, where a channel that is constant over a whole clip sits (a run at lr
        # 1e-2 went NaN from it): the floor keeps training finite and moves the output by at most 1e-6
        # (transformers has no floor)
        statistics = torch.cat([mean, variance.clamp(min=STD_FLOOR**2).sqrt()], dim=-1)
        embeddings = self.feature_extractor(statistics)
        logits = self.classifier(embeddings)
        loss = self.objective(logits, labels.to(logits.device)) if labels is not None else None
        output = XVectorOutput(loss, logits, embeddings, all_hidden, attentions)
        return output if return_dict else output.to_tuple()
