"""The ML practitioner's project file, ``mteach.toml``.

Every section and key is optional: a missing file, section or key takes the
defaults below. What the expert writes (the spec) and what the practitioner
tunes (this file) stay apart::

    [project]
    spec = "specs/spam.mt"       # path(s) of the spec, relative to this file
    data = "data/comments.parquet"
    id_column = "id"             # the column that identifies a row
    gold = "gold/spam.jsonl"     # optional gold labels (columns id, label)

    [label_model]
    kind = "mteach"              # mteach (Dawid-Skene, fitted by EM) | majority_vote
    prior_strength = 10.0        # weight of the rules' `confidence` priors (mteach only)
    max_iter = 500               # (mteach only)
    seed = 0

    [features]
    ngram_range = [1, 2]         # word n-grams
    min_df = 1
    max_features = 0             # 0 = no limit
    char_ngrams = true           # add character n-grams (char_wb)
    char_ngram_range = [2, 4]
    hashed = true                # n-grams hashed over the Arrow bytes (fast, streams); false = vocabulary
    hash_bits = 20               # 2^hash_bits buckets per block (1 to 24)

    [end_model]
    hidden = 0                   # 0 = linear; > 0 = one hidden layer of that size
    epochs = 30
    lr = 0.1                     # Adam, cosine-decayed to 0 over training
    weight_decay = 0.0001        # L2 on weights
    batch_size = 64
    seed = 0
    device = "auto"              # auto | cpu | cuda | cuda:N
    max_rows = 0                 # train on at most this many covered rows (seeded sample); 0 = all
    max_row_visits = 500000      # torch: epochs x rows at most (fewer epochs on large data); 0 = no cap

    [hints]
    strength = 1.0               # multiplies every hint penalty
    margin = 0.1                 # required slope of class L's score along d (a direction, not a size)

    [drift]                      # `mteach drift`: a finding needs both a small p and a large effect
    alpha = 0.05                 # false-alarm rate per run (Holm over every test of the run)
    min_effect = 0.2             # rule coverage, uncovered and conflicted shares: |Cohen's h|
    min_js = 0.02                # label distribution: Jensen-Shannon divergence (bits)
    min_ks = 0.1                 # number fields and text lengths: Kolmogorov-Smirnov statistic D
    max_accuracy_drop = 0.05     # estimated accuracy may fall this far below the reference's
    uncertain = 0.8              # a row whose top probability is below this is uncertain
    spot_check = 100             # rows in the spot-check review queue
    spot_check_uniform = 0.5     # share of them drawn uniformly (an unbiased accuracy measure)
    sample_rows = 20000          # per number field / text length: reservoir sample for KS
    vocab_size = 50000           # per text field: most frequent tokens counted
    seed = 0

An unknown section or key is a :class:`SettingsError` naming the file, the key
and the closest known key; a value of the wrong type names the key and the type
expected. Read from a file, the message starts ``FILE:LINE:`` at the offending key.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Optional, Union

from .errors import closest_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_FILE = "mteach.toml"


class SettingsError(ValueError):
    """A problem in the project file; the message names the file and the key."""

    def __init__(self, message: str, file: Optional[str] = None, key: Optional[str] = None):
        self.file = file
        self.key = key
        super().__init__(message)


# ---- sections -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProjectSettings:
    spec: tuple = ()               # spec file path(s); a single string in the file is accepted
    data: Optional[str] = None
    id_column: Optional[str] = None
    gold: Optional[str] = None


@dataclass(frozen=True)
class EngineSettings:
    """Who computes the votes: "local" (threads on this machine) or "dask" (a cluster at
    ``scheduler``, or a LocalCluster when it is not set); --engine/--scheduler override it."""
    name: str = "local"
    scheduler: Optional[str] = None


@dataclass(frozen=True)
class LabelModelSettings:
    kind: str = "mteach"           # a name in engine.label_model.LABEL_MODELS
    prior_strength: float = 10.0
    max_iter: int = 500
    seed: int = 0


@dataclass(frozen=True)
class FeatureSettings:
    ngram_range: tuple = (1, 2)
    min_df: int = 1
    max_features: int = 0          # 0 = no limit
    char_ngrams: bool = True
    char_ngram_range: tuple = (2, 4)
    hashed: bool = True
    hash_bits: int = 20


@dataclass(frozen=True)
class EndModelSettings:
    hidden: int = 0
    epochs: int = 30
    lr: float = 0.1
    weight_decay: float = 1e-4
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    max_rows: int = 0              # 0 = every covered row
    max_row_visits: int = 500_000  # torch training: epochs x rows at most; 0 = no cap


@dataclass(frozen=True)
class HintSettings:
    strength: float = 1.0
    margin: float = 0.1


@dataclass(frozen=True)
class DriftSettings:
    alpha: float = 0.05
    min_effect: float = 0.2
    min_js: float = 0.02
    min_ks: float = 0.1
    max_accuracy_drop: float = 0.05
    uncertain: float = 0.8
    spot_check: int = 100
    spot_check_uniform: float = 0.5
    sample_rows: int = 20_000
    vocab_size: int = 50_000
    seed: int = 0


_SECTIONS = {
    "project": ProjectSettings,
    "label_model": LabelModelSettings,
    "features": FeatureSettings,
    "end_model": EndModelSettings,
    "hints": HintSettings,
    "drift": DriftSettings,
    "engine": EngineSettings,
}

# Expected kind of every key: "str", "str?" (may be absent), "int", "float", "bool",
# "range" (two ints low <= high), "paths" (string or list of strings).
_KINDS = {
    "project": {"spec": "paths", "data": "str?", "id_column": "str?", "gold": "str?"},
    "label_model": {"kind": "str", "prior_strength": "float", "max_iter": "int", "seed": "int"},
    "features": {"ngram_range": "range", "min_df": "int", "max_features": "int",
                 "char_ngrams": "bool", "char_ngram_range": "range", "hashed": "bool", "hash_bits": "int"},
    "end_model": {"hidden": "int", "epochs": "int", "lr": "float", "weight_decay": "float",
                  "batch_size": "int", "seed": "int", "device": "str",
                  "max_rows": "int", "max_row_visits": "int"},
    "hints": {"strength": "float", "margin": "float"},
    "engine": {"name": "str", "scheduler": "str?"},
    "drift": {"alpha": "float", "min_effect": "float", "min_js": "float", "min_ks": "float",
              "max_accuracy_drop": "float", "uncertain": "float", "spot_check": "int",
              "spot_check_uniform": "float", "sample_rows": "int", "vocab_size": "int", "seed": "int"},
}

_KIND_WORDS = {"str": "a string", "str?": "a string", "int": "an integer", "float": "a number",
               "bool": "true or false", "range": "an array of two integers [low, high]",
               "paths": "a string or an array of strings"}

# Value limits, checked after types: key -> (test, what it must be).
_LIMITS = {
    # the names of engine.label_model.LABEL_MODELS (not imported: settings must stay light)
    ("label_model", "kind"): (lambda v: v in ("mteach", "majority_vote"), "one of mteach, majority_vote"),
    ("label_model", "prior_strength"): (lambda v: v >= 0, ">= 0"),
    ("label_model", "max_iter"): (lambda v: v >= 1, ">= 1"),
    ("features", "min_df"): (lambda v: v >= 1, ">= 1"),
    ("features", "max_features"): (lambda v: v >= 0, ">= 0 (0 = no limit)"),
    ("features", "ngram_range"): (lambda v: v[0] >= 1, "[low, high] with 1 <= low <= high"),
    ("features", "char_ngram_range"): (lambda v: v[0] >= 1, "[low, high] with 1 <= low <= high"),
    ("features", "hash_bits"): (lambda v: 1 <= v <= 24, "from 1 to 24"),
    ("end_model", "hidden"): (lambda v: v >= 0, ">= 0 (0 = linear)"),
    ("end_model", "epochs"): (lambda v: v >= 1, ">= 1"),
    ("end_model", "lr"): (lambda v: v > 0, "> 0"),
    ("end_model", "weight_decay"): (lambda v: v >= 0, ">= 0"),
    ("end_model", "batch_size"): (lambda v: v >= 1, ">= 1"),
    ("end_model", "max_rows"): (lambda v: v == 0 or v >= 10, ">= 10 (0 = every covered row)"),
    ("end_model", "max_row_visits"): (lambda v: v >= 0, ">= 0 (0 = no cap)"),
    ("end_model", "device"): (lambda v: v in ("auto", "cpu", "cuda") or
                              (v.startswith("cuda:") and v[5:].isdigit()),
                              "one of auto, cpu, cuda, cuda:N"),
    ("hints", "strength"): (lambda v: v >= 0, ">= 0"),
    ("drift", "alpha"): (lambda v: 0 < v < 1, "between 0 and 1"),
    ("drift", "min_effect"): (lambda v: v >= 0, ">= 0"),
    ("drift", "min_js"): (lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("drift", "min_ks"): (lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("drift", "max_accuracy_drop"): (lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("drift", "uncertain"): (lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("drift", "spot_check"): (lambda v: v >= 0, ">= 0"),
    ("drift", "spot_check_uniform"): (lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("drift", "sample_rows"): (lambda v: v >= 100, ">= 100"),
    ("engine", "name"): (lambda v: v in ("local", "dask"), '"local" or "dask"'),
    ("drift", "vocab_size"): (lambda v: v >= 100, ">= 100"),
}


@dataclass(frozen=True)
class Settings:
    project: ProjectSettings = field(default_factory=ProjectSettings)
    label_model: LabelModelSettings = field(default_factory=LabelModelSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    end_model: EndModelSettings = field(default_factory=EndModelSettings)
    hints: HintSettings = field(default_factory=HintSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    source: Optional[str] = None   # the file read, None for defaults

    def to_dict(self) -> dict:
        """Plain JSON/TOML-able dict of every section (tuples as lists), for model
        folders and ledgers. ``source`` is included for the record."""
        out = {}
        for name in _SECTIONS:
            sec = asdict(getattr(self, name))
            out[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sec.items()}
        out["source"] = self.source
        return out

    @property
    def root(self) -> Path:
        """The folder relative paths are resolved against: the file's, else the cwd."""
        return Path(self.source).resolve().parent if self.source else Path.cwd()

    def resolve(self, path: Optional[str]) -> Optional[Path]:
        """A path from ``[project]`` made absolute against :attr:`root`."""
        if path is None:
            return None
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def featurizer_params(self) -> dict:
        """Keyword arguments for ``mteach.engine.features.Featurizer`` (besides fields)."""
        f = self.features
        return {"ngram_range": tuple(f.ngram_range), "min_df": f.min_df,
                "max_features": f.max_features or None, "char_ngrams": f.char_ngrams,
                "char_ngram_range": tuple(f.char_ngram_range), "hashed": f.hashed, "hash_bits": f.hash_bits}

    def end_model_params(self) -> dict:
        """Keyword arguments for ``mteach.engine.end_model.EndModel``."""
        e = self.end_model
        return {"hidden": e.hidden, "epochs": e.epochs, "lr": e.lr,
                "weight_decay": e.weight_decay, "batch_size": e.batch_size, "seed": e.seed,
                "device": e.device, "max_row_visits": e.max_row_visits, "hint_strength": self.hints.strength,
                "hint_margin": self.hints.margin}


# ---- loading ---------------------------------------------------------------------------------
def _did_you_mean(word: str, options) -> str:
    close = closest_name(word, options)
    return f"; did you mean {close!r}?" if close else ""


def _convert(kind: str, value, where: str, file: str):
    def bad():
        return SettingsError(f"{file}: {where} must be {_KIND_WORDS[kind]}, "
                             f"not {type(value).__name__} {value!r}", file, where)

    if kind in ("str", "str?"):
        if not isinstance(value, str):
            raise bad()
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if kind == "range":
        if (not isinstance(value, list) or len(value) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
                or value[0] > value[1]):
            raise bad()
        return tuple(value)
    if kind == "paths":
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise bad()
    raise AssertionError(kind)


def settings_from_dict(data: dict, file: str = "<settings>") -> Settings:
    """Validate a parsed TOML document (or any dict of the same shape) into Settings."""
    if not isinstance(data, dict):
        raise SettingsError(f"{file}: expected a table of sections", file)
    sections = {}
    for sec_name, body in data.items():
        if sec_name not in _SECTIONS:
            raise SettingsError(f"{file}: unknown section [{sec_name}]"
                                f"{_did_you_mean(sec_name, _SECTIONS)} "
                                f"(sections: {', '.join(_SECTIONS)})", file, sec_name)
        if not isinstance(body, dict):
            raise SettingsError(f"{file}: {sec_name} must be a section [{sec_name}], "
                                f"not a {type(body).__name__}", file, sec_name)
        kinds = _KINDS[sec_name]
        values = {}
        for key, value in body.items():
            where = f"{sec_name}.{key}"
            if key not in kinds:
                raise SettingsError(f"{file}: unknown key {key!r} in [{sec_name}]"
                                    f"{_did_you_mean(key, kinds)} "
                                    f"(keys: {', '.join(kinds)})", file, where)
            v = _convert(kinds[key], value, where, file)
            limit = _LIMITS.get((sec_name, key))
            if limit is not None and not limit[0](v):
                raise SettingsError(f"{file}: {where} = {value!r} is out of range: it must be "
                                    f"{limit[1]}", file, where)
            values[key] = v
        sections[sec_name] = _SECTIONS[sec_name](**values)
    return Settings(**sections, source=None if file == "<settings>" else file)


def load_settings(path: Union[str, Path, None] = None) -> Settings:
    """Read ``mteach.toml`` at ``path``; ``None`` gives the defaults (the file is optional).

    Raises :class:`SettingsError` for a missing or unreadable file, a TOML syntax
    error, an unknown section or key (with a did-you-mean), a wrong type or an
    out-of-range value.
    """
    if path is None:
        return Settings()
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"{p}: settings file not found", str(p)) from None
    except OSError as e:
        raise SettingsError(f"{p}: cannot read settings file ({e.strerror})", str(p)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SettingsError(f"{p}: not UTF-8 text", str(p)) from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{p}: TOML syntax error: {e}", str(p)) from None
    try:
        return settings_from_dict(data, str(p))
    except SettingsError as e:
        line = _line_of(raw.decode("utf-8"), e.key) if e.key else None
        if line is None:
            raise
        raise SettingsError(str(e).replace(f"{p}: ", f"{p}:{line}: ", 1), e.file, e.key) from None


def _line_of(text: str, key: str) -> Optional[int]:
    """1-based line of ``section.key`` (or of ``[section]``) in a TOML text; None if not found."""
    section, _, name = key.partition(".")
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.strip("[] \t")
            if current == section and not name:
                return number
        elif (current == section and name and stripped.split("=", 1)[0].strip().strip('"\'') == name
              and "=" in stripped):
            return number
        elif current is None and not name and stripped.split("=", 1)[0].strip() == section:
            return number
    return None


def with_overrides(settings: Settings, section: str, **values) -> Settings:
    """A copy of ``settings`` with some keys of one section replaced (validated)."""
    if section not in _SECTIONS:
        raise SettingsError(f"unknown section [{section}]{_did_you_mean(section, _SECTIONS)}",
                            key=section)
    current = {k: (list(v) if isinstance(v, tuple) else v)
               for k, v in asdict(getattr(settings, section)).items()}
    current.update(values)
    current = {k: v for k, v in current.items() if v is not None}
    new = settings_from_dict({section: current}, settings.source or "<settings>")
    return replace(settings, **{section: getattr(new, section)})


__all__ = ["Settings", "ProjectSettings", "LabelModelSettings", "FeatureSettings",
           "EndModelSettings", "HintSettings", "DriftSettings", "EngineSettings", "SettingsError", "load_settings",
           "settings_from_dict", "with_overrides", "DEFAULT_FILE"]
