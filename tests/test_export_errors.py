"""Unusable inputs: a clear error saying what is wrong and what to do, nothing written."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tiny_models import save_tiny_classifier

from gradlight.export.errors import ExportError
from gradlight.export.options import ExportOptions
from gradlight.export.pipeline import export_model


def _assert_nothing_written(out_dir):
    assert not out_dir.exists()
    assert not list(out_dir.parent.glob(f".{out_dir.name}.*"))


def test_a_bare_encoder_is_not_a_sequence_classifier(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            vocab_size=50,
        )
    ).save_pretrained(tmp_path / "enc")
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"not a sequence classifier.*BertModel"):
        export_model(tmp_path / "enc", out)
    _assert_nothing_written(out)


def test_scores_that_would_be_rounding_noise_are_refused_before_tracing(tmp_path, monkeypatch):
    """DeBERTa-v3 normalizes its word embeddings with nothing added to them: input x gradient
    there is zero by construction. Without its architecture entry (as for an untested model
    type built the same way), the export stops at once and says what to do."""
    from gradlight.export import architectures

    model = save_tiny_classifier(tmp_path / "m", "deberta-v2")
    monkeypatch.delitem(architectures.ARCHITECTURES, "deberta-v2")
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"rounding noise.*word embeddings.*architectures\.py"):
        export_model(model.path, out)
    _assert_nothing_written(out)


def _save_branchy_classifier(directory):
    """A classifier whose forward branches on the values of its input: nothing can trace it."""
    import torch
    from tiny_models import make_tokenizer
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        PretrainedConfig,
        PreTrainedModel,
    )
    from transformers.modeling_outputs import SequenceClassifierOutput

    class BranchyConfig(PretrainedConfig):
        model_type = "gradlight-branchy"

    class BranchyForSequenceClassification(PreTrainedModel):
        config_class = BranchyConfig

        def __init__(self, config):
            super().__init__(config)
            self.embeddings = torch.nn.Embedding(config.vocab_size, 8)
            self.classifier = torch.nn.Linear(8, config.num_labels)
            self.post_init()

        def get_input_embeddings(self):
            return self.embeddings

        def forward(self, input_ids, attention_mask=None, **_):
            hidden = self.embeddings(input_ids)
            if int(input_ids.max()) > 100:  # data-dependent: a different graph per input
                hidden = hidden * 2.0
            return SequenceClassifierOutput(logits=self.classifier(hidden.mean(dim=1)))

    AutoConfig.register("gradlight-branchy", BranchyConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(
        BranchyConfig, BranchyForSequenceClassification, exist_ok=True
    )
    tokenizer = make_tokenizer("bert")
    config = BranchyConfig(
        vocab_size=len(tokenizer), num_labels=2, max_position_embeddings=64, pad_token_id=0
    )
    BranchyForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def test_a_model_that_cannot_be_traced_is_refused_naming_the_operation(tmp_path):
    _save_branchy_classifier(tmp_path / "branchy")
    out = tmp_path / "out"
    with pytest.raises(ExportError) as refused:
        export_model(tmp_path / "branchy", out)
    message = str(refused.value)
    assert "gradlight-branchy (BranchyForSequenceClassification) cannot be traced" in message
    assert "if int(input_ids.max()) > 100" in message  # the model's own line
    _assert_nothing_written(out)


def test_a_missing_tokenizer_says_how_to_save_one(tmp_path):
    model = save_tiny_classifier(tmp_path / "m", "bert", with_tokenizer=False)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"no tokenizer.json.*save_pretrained"):
        export_model(model.path, out)
    _assert_nothing_written(out)


def test_a_regression_head_is_refused(tmp_path):
    model = save_tiny_classifier(tmp_path / "m", "bert", num_labels=1)
    with pytest.raises(ExportError, match=r"num_labels=1 \(a regression head\)"):
        export_model(model.path, tmp_path / "out")


def test_a_missing_model_directory_is_named(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_model(tmp_path / "nowhere", tmp_path / "out")


def test_a_directory_without_config_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match=r"no config\.json.*save_pretrained"):
        export_model(tmp_path / "empty", tmp_path / "out")


def test_a_non_empty_output_directory_is_kept_unless_overwrite(tmp_path):
    model = save_tiny_classifier(tmp_path / "m", "bert")
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(ExportError, match=r"not empty.*--overwrite"):
        export_model(model.path, out)
    assert (out / "precious.txt").read_text() == "keep me"

    # (the fewest graphs: what is kept or replaced does not depend on which graphs there are)
    options = ExportOptions(max_loop_labels=0, labels_graph=False, path_graph=False, overwrite=True)
    manifest = export_model(model.path, out, options)
    assert not (out / "precious.txt").exists()
    assert (out / "manifest.json").is_file()
    assert manifest.validation["passed"]
    assert not list(tmp_path.glob(".out.*"))


def test_an_unwritable_output_location_is_reported(tmp_path):
    model = save_tiny_classifier(tmp_path / "m", "bert")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ExportError, match="cannot write the artifact"):
        export_model(model.path, blocker / "out")
    with pytest.raises(ExportError, match="exists and is not a directory"):
        export_model(model.path, blocker)


def test_bad_options_are_refused():
    with pytest.raises(ExportError, match="opset"):
        ExportOptions(opset=11)
    with pytest.raises(ExportError, match="max_loop_labels"):
        ExportOptions(max_loop_labels=-1)


def test_the_cli_reports_errors_without_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradlight.cli.main",
            "export",
            str(tmp_path / "nowhere"),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "gradlight export: error: model directory" in result.stderr
    assert "Traceback" not in result.stderr
