"""Unusable inputs: a clear error saying what is wrong and what is supported, nothing written."""

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


def test_an_unsupported_architecture_lists_the_supported_ones(tmp_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, num_labels=2)
    GPT2ForSequenceClassification(config).save_pretrained(tmp_path / "gpt2")
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"'gpt2' is not supported.*bert, roberta, distilbert"):
        export_model(tmp_path / "gpt2", out)
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

    manifest = export_model(model.path, out, ExportOptions(max_loop_labels=0, overwrite=True))
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
