"""The last encoder layer traced for the first token only (export/first_token_layer.py): the
same logits and input x gradient scores as the whole layer, eager, on padded batches; refused,
with the reason, where the head reads more than the first token or the layer is not
BERT-shaped. The exported graphs themselves are validated against the whole model in every
export (tests/test_export_architectures.py checks the manifest says which was traced)."""

from __future__ import annotations

import torch

from gradlight.export.attribution import all_labels_fn
from gradlight.export.batches import make_batch, model_tensors
from gradlight.export.first_token_layer import check, first_token_last_layer
from gradlight.export.model_loading import load_classifier


def _padded(loaded, lengths=(9, 4, 13), seed=3):
    return model_tensors(loaded, make_batch(loaded, list(lengths), seed))


def test_the_first_token_layer_gives_the_whole_layers_logits_and_scores(tiny_model_dirs):
    loaded = load_classifier(tiny_model_dirs["bert"])
    inputs = _padded(loaded)
    assert check(loaded, [inputs]) is None
    attribute = all_labels_fn(loaded)
    whole_logits, whole_scores = attribute(*inputs)
    with first_token_last_layer(loaded, use=True):
        last = loaded.model.base_model.encoder.layer[-1]
        assert "forward" in vars(last)  # traced with the first-token forward
        logits, scores = attribute(*inputs)
    assert "forward" not in vars(last)  # the class's own forward again
    torch.testing.assert_close(logits, whole_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(scores, whole_scores, rtol=1e-4, atol=1e-7)


def test_a_head_that_reads_more_than_the_first_token_is_traced_whole(tiny_model_dirs):
    loaded = load_classifier(tiny_model_dirs["roberta"])
    inputs = _padded(loaded)
    head = loaded.model.classifier
    original = head.forward
    # a fault no supported head has: the head pools every position
    head.forward = lambda features, **kwargs: original(features.mean(1, keepdim=True))
    try:
        problem = check(loaded, [inputs])
    finally:
        del head.forward
    assert problem is not None and problem.startswith("its logits moved by"), problem
    assert check(loaded, [inputs]) is None


def test_architectures_without_a_first_token_head_say_why(tiny_model_dirs):
    loaded = load_classifier(tiny_model_dirs["distilbert"])
    assert check(loaded, [_padded(loaded)]) == (
        "the distilbert head is not known to read only the first token"
    )
