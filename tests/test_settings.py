import dataclasses
import json

import pytest

from mteach.settings import Settings, SettingsError, load_settings, with_overrides


def write(tmp_path, text):
    p = tmp_path / "mteach.toml"
    p.write_text(text)
    return p


def test_defaults_without_a_file():
    s = load_settings(None)
    assert s == Settings()
    assert s.end_model.hidden == 0 and s.end_model.device == "auto"
    assert s.features.char_ngrams is True and s.features.ngram_range == (1, 2)
    assert s.project.spec == () and s.source is None


def test_full_file(tmp_path):
    p = write(tmp_path, """
[project]
spec = "specs/spam.mt"
data = "data/c.parquet"
id_column = "COMMENT_ID"

[label_model]
prior_strength = 5
max_iter = 100

[features]
ngram_range = [1, 3]
char_ngrams = false
max_features = 5000

[end_model]
hidden = 16
lr = 0.05
device = "cpu"

[hints]
strength = 2
margin = 0.5
""")
    s = load_settings(p)
    assert s.project.spec == ("specs/spam.mt",) and s.project.id_column == "COMMENT_ID"
    assert s.label_model.prior_strength == 5.0 and isinstance(s.label_model.prior_strength, float)
    assert s.features.ngram_range == (1, 3) and s.features.char_ngrams is False
    assert s.end_model.hidden == 16 and s.end_model.epochs == Settings().end_model.epochs
    assert s.hints.strength == 2.0
    assert s.resolve(s.project.data) == tmp_path / "data/c.parquet"
    assert s.featurizer_params()["max_features"] == 5000
    assert s.end_model_params()["hint_margin"] == 0.5
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["features"]["ngram_range"] == [1, 3] and d["source"] == str(p)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.end_model.hidden = 3  # frozen: a loaded setting cannot be changed behind the file's back
    assert s.end_model.hidden == 16


def test_spec_list(tmp_path):
    s = load_settings(write(tmp_path, '[project]\nspec = ["a.mt", "b.mt"]\n'))
    assert s.project.spec == ("a.mt", "b.mt")


def test_unknown_key_did_you_mean(tmp_path):
    p = write(tmp_path, "[end_model]\nepoch = 3\n")
    with pytest.raises(SettingsError) as e:
        load_settings(p)
    msg = str(e.value)
    assert str(p) in msg and "'epoch'" in msg and "did you mean 'epochs'" in msg
    assert e.value.key == "end_model.epoch" and e.value.file == str(p)


def test_unknown_section_did_you_mean(tmp_path):
    with pytest.raises(SettingsError, match=r"unknown section \[endmodel\]; did you mean 'end_model'"):
        load_settings(write(tmp_path, "[endmodel]\nhidden = 3\n"))


@pytest.mark.parametrize("text, match", [
    ('[end_model]\nepochs = "ten"\n', r"end_model.epochs must be an integer, not str"),
    ("[end_model]\nepochs = 2.5\n", r"end_model.epochs must be an integer"),
    ("[end_model]\nlr = true\n", r"end_model.lr must be a number"),
    ("[features]\nchar_ngrams = 1\n", r"features.char_ngrams must be true or false"),
    ("[features]\nngram_range = [2, 1]\n", r"features.ngram_range must be an array of two integers"),
    ("[end_model]\nepochs = 0\n", r"end_model.epochs = 0 is out of range: it must be >= 1"),
    ('[end_model]\ndevice = "tpu"\n', r"end_model.device = 'tpu' is out of range"),
    ("end_model = 3\n", r"end_model must be a section"),
    ("[project\n", r"TOML syntax error"),
])
def test_bad_values(tmp_path, text, match):
    with pytest.raises(SettingsError, match=match):
        load_settings(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings(tmp_path / "nope.toml")


def test_overrides_are_validated():
    s = with_overrides(Settings(), "end_model", epochs=5)
    assert s.end_model.epochs == 5 and s.hints == Settings().hints
    with pytest.raises(SettingsError, match="did you mean 'epochs'"):
        with_overrides(Settings(), "end_model", epoch=5)
