"""Scale of the end-model paths: train on many rows, long documents, streamed predict.

    python bench/scale.py train   [--rows 100000] [--repeat 1]  # end-model training time and accuracy
    python bench/scale.py longdoc [--docs 10000]           # ~1,300-character documents
    python bench/scale.py predict [--sizes 50000 200000 1000000] [--repeat 1]  # peak RSS and rows/s of predict vs apply
    python bench/scale.py label-model [--sizes 1000000] [--repeat 3]  # label --model and label vs apply
    python bench/scale.py stream  [--sizes 1000000 10000000] [--big-csv]  # every streaming verb
    python bench/scale.py kernel  [--rows 262144] [--repeat 3] [--against CHECKOUT]  # the n-gram kernel's calls

train: the YouTube train comments replicated to ``--rows`` rows (bench/_common.py), the
spec's votes, the label model's soft labels of the covered rows, the default featurizer
(hashed word 1-2-grams + char 2-4-grams); then, on the same sparse features and labels, a plain
scikit-learn LogisticRegression (hard labels, lbfgs), the end model's fast path (linear, no
hints: lbfgs on the soft labels) and the end model through torch (``solver="torch"``, as
with hints or the MLP; ``[end_model] max_row_visits`` caps its epochs x rows). Scored once on
the YouTube test split (gold CLASS): accuracy and F1 of SPAM. Times are CPU seconds of this
process (2-core shared machine: say the load), and wall seconds (scikit-learn's loss runs on
both cores, torch on one); ``--repeat N``: each fit N times, interleaved, the fastest kept; torch's imports are done before any clock starts, by a first fit on
100 rows timed apart; the featurizer's fit and transform are timed
apart, and beside them the vocabulary featurizer of before (scikit-learn, char 2-5).

longdoc: documents of ~1,300 characters, each made of YouTube comments drawn 65/35 from
its class and the other (train comments for training documents, test comments for test
ones), labelled by its class. The end model (default featurizer, fast path) against
CountVectorizer word 1-2-grams min_df 2 + LogisticRegression on the same labels.

predict: a model trained on the YouTube train split (spec defaults: its hints train through
torch); then ``mteach predict MODEL DATA -o OUT`` (streaming, no gold) and ``mteach apply``
on the replicated data at each size, each in a fresh process that prints its own peak RSS
(VmHWM) and wall time: rows/s, the ratio of the peaks (goal <= 1.5) and of predict's time
to apply's (goal <= 3); ``--repeat N``: each N times, interleaved, the fastest kept. First, in
this process, the featurizer's transform through the compiled kernel and through the numpy
path (rows/s), and the kernel's first call in a fresh process (compiling, then cached).

label-model: the model trained as predict's (the default featurizer); then ``mteach apply``,
``mteach label --model MODEL`` and plain ``mteach label`` on the replicated data at each size,
each in a fresh process, ``--repeat N`` times interleaved, the fastest of each kept: wall
time, rows/s, peak RSS and time over apply's (goal <= 3 for label --model).

stream: ``apply`` (the baseline), ``label``, ``label --model``, ``predict``, ``train``, ``verify``
(of label's ledger; label runs first), ``diff`` (two git revisions of the spec in a temporary
repository: `money` removed, `short` stricter), ``predict --gold``, ``stats --gold`` and
``rows --gold`` (``--wrong``; all three with a gold file of the 1,586 rows of the first
replicate, the same at every size) on the
replicated data at each size, each in a fresh process: peak RSS (VmHWM), rows/s, the ratio of
the peaks between the largest and the smallest size (goal <= 1.5) and each verb's time over
apply's at the same size (goal <= 3 for predict and label --model). The model is trained
once on the YouTube train split with the settings of ``STREAM_CONFIG`` (printed); ``train``
on the replicated data uses them too ([end_model] max_rows caps the rows it keeps).
``--verbs label predict``: only those verbs (and apply, the baseline, at each size); quote a
verb of two words: ``--verbs verify diff "predict --gold"``.
kernel: the model trained as predict's (the default featurizer) on the first ``--rows`` rows
of the replicated data, in batches of 65,536 with their rules' votes: the end model's output
as ``label --model`` takes it (``end_model_output``: every row's logits and the top features of
the rows no rule covers, ``ngram_kernel.score_top``), ``transform`` (``fill``) and ``dot``
(``score``, what ``predict`` runs), each through all the batches, and ``transform`` without
numba (the numpy path) on the first batch, after a first call that loads (or compiles) the
kernel; CPU and wall seconds, the least of ``--repeat`` tries in each
of ``--repeat`` fresh processes. ``--against CHECKOUT``: the same in another checkout of mteach
(e.g. ``git worktree add /tmp/main main``), the processes interleaved, and the ratios; the
outputs of both must be identical (their sha256 is compared).

``--big-csv``: also a CSV of over 2 GB in one string column (long documents made of YouTube
comments, written to the temporary folder and deleted after), through every verb (or those
of ``--verbs``): each must finish (no ArrowCapacityError).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import ID, ROOT, SPEC, TEXT, TRAIN, machine, replicated_parquet  # noqa: E402

TEST = ROOT / "data" / "youtube" / "test.csv"
SPAM = 0  # label index of SPAM in the spec (labels SPAM, HAM)


def cpu() -> float:
    return time.process_time()


def youtube_test():
    t = pacsv.read_csv(TEST)
    gold = np.where(np.asarray(t.column("CLASS")) == 1, SPAM, 1 - SPAM)
    return pa.table({"text": t.column(TEXT)}), gold


def scores(pred, gold) -> str:
    from mteach.engine.calibration import f1_score
    return f"accuracy {float((pred == gold).mean()):.4f}, F1(SPAM) {f1_score(pred, gold, 2, positive=SPAM):.4f}"


def bench_train(rows: int, repeat: int = 1) -> None:
    from sklearn.linear_model import LogisticRegression

    from mteach.compiler.checker import load_spec
    from mteach.engine.apply import apply_table
    from mteach.engine.end_model import EndModel
    from mteach.engine.features import Featurizer
    from mteach.engine.label_model import fit_for_spec
    from mteach.settings import Settings
    data = pq.read_table(replicated_parquet(rows))
    spec = load_spec(SPEC, data.schema)
    t0 = cpu()
    votes = apply_table(spec, data)
    covered = (votes != -1).any(axis=1)
    soft = fit_for_spec(spec, votes).predict_proba(votes)[covered]
    t1 = cpu()
    settings = Settings()
    texts = pa.table({"text": data.column(TEXT)})
    feat = Featurizer(["text"], **settings.featurizer_params()).fit(texts)
    t_fit = cpu()
    X = feat.transform(texts)[covered]
    t2 = cpu()
    before = Featurizer(["text"], **{**settings.featurizer_params(), "hashed": False, "char_ngram_range": (2, 5)})
    before.fit(texts)
    t3 = cpu()
    before.transform(texts)
    t4 = cpu()
    test, gold = youtube_test()
    Xte = feat.transform(test)
    print(f"train: {rows:,} rows, {int(covered.sum()):,} covered; {X.shape[1]:,} features, {X.nnz:,} non-zeros; "
          f"votes + label model {t1 - t0:.1f} CPU-s; features: fit {t_fit - t1:.1f} CPU-s, transform "
          f"{t2 - t_fit:.1f} CPU-s ({rows / (t2 - t_fit):,.0f} rows/CPU-s); the vocabulary featurizer of before: "
          f"fit {t3 - t2:.1f}, transform {t4 - t3:.1f} CPU-s ({(t4 - t3) / (t2 - t_fit):.1f}x)")
    print("end-model training on the covered rows, scored on the YouTube test split "
          f"({gold.shape[0]:,} rows, gold CLASS):")
    # torch's imports before the clocks start (an import is not training): torch itself, and
    # torch._dynamo, which torch.optim imports on its first use (about 1.3 CPU-s once per
    # process), by a first fit on 100 rows, timed apart
    t, w = cpu(), time.perf_counter()
    EndModel(**settings.end_model_params(), solver="torch").fit(X[:100], soft[:100])
    print(f"  (torch's first fit in this process, 100 rows, its imports: {cpu() - t:.1f} CPU-s "
          f"{time.perf_counter() - w:.1f} s wall; not counted below)")
    runs = {"scikit-learn LogisticRegression (hard labels)":
            lambda: LogisticRegression(max_iter=1000).fit(X, soft.argmax(1)),
            "end model, fast path (lbfgs, soft labels)": lambda: EndModel(**settings.end_model_params()).fit(X, soft),
            "end model, torch (Adam, soft labels)":
            lambda: EndModel(**settings.end_model_params(), solver="torch").fit(X, soft)}
    best = {}
    for _ in range(repeat):  # interleaved; the fastest CPU and wall time of each kept
        for name, fit in runs.items():
            t, w = cpu(), time.perf_counter()
            m = fit()
            took, wall = cpu() - t, time.perf_counter() - w
            fastest = best.get(name, (np.inf, np.inf))
            best[name] = (min(fastest[0], took), min(fastest[1], wall), m)  # the same model each run
    (base, base_wall, _), *_ = best.values()  # scikit-learn's: the baseline
    for i, (name, (took, wall, m)) in enumerate(best.items()):
        ratio = f"  ({took / base:.2f}x scikit-learn's CPU time, {wall / base_wall:.2f}x its wall time)" if i else ""
        print(f"  {name:<46s} {took:6.1f} CPU-s {wall:5.1f} s wall  {scores(m.predict(Xte), gold)}{ratio}")
    if repeat > 1:
        print(f"  (each the fastest of {repeat} interleaved runs, CPU and wall apart)")


def long_documents(split_texts, split_gold, n: int, chars: int, rng) -> tuple:
    texts, labels = [], []
    by_class = [np.flatnonzero(split_gold == c) for c in (0, 1)]
    for _ in range(n):
        c = int(rng.integers(0, 2))
        parts, size = [], 0
        while size < chars:
            pool = by_class[c] if rng.random() < 0.65 else by_class[1 - c]
            s = split_texts[int(rng.choice(pool))]
            parts.append(s)
            size += len(s) + 1
        texts.append(" ".join(parts)[:chars + 200])
        labels.append(c)
    return pa.table({"text": texts}), np.array(labels)


def bench_longdoc(docs: int) -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    from mteach.engine.end_model import EndModel
    from mteach.engine.features import Featurizer
    from mteach.settings import Settings
    from _common import train_table
    rng = np.random.default_rng(0)
    tr = train_table()
    tr_texts = np.asarray(tr.column(TEXT).to_pylist(), dtype=object)
    tr_gold = np.where(np.asarray(tr.column("CLASS")) == 1, SPAM, 1 - SPAM)
    te, te_gold = youtube_test()
    train, y = long_documents(tr_texts, tr_gold, docs, 1300, rng)
    test, y_te = long_documents(np.asarray(te.column("text").to_pylist(), dtype=object), te_gold, 2000, 1300, rng)
    mean_len = float(np.mean([len(s) for s in train.column("text").to_pylist()]))
    print(f"longdoc: {docs:,} training documents (mean {mean_len:,.0f} characters), 2,000 test documents")
    settings = Settings()
    t = cpu()
    feat = Featurizer(["text"], **settings.featurizer_params())
    X = feat.fit_transform(train)
    t_feat = cpu() - t
    t = cpu()
    m = EndModel(**settings.end_model_params()).fit(X, y)
    t_fit = cpu() - t
    pred = m.predict(feat.transform(test))
    print(f"  end model (default features: {X.shape[1]:,} n-grams): features {t_feat:.1f} CPU-s, "
          f"fit {t_fit:.1f} CPU-s; test {scores(pred, y_te)}")
    t = cpu()
    cv = CountVectorizer(ngram_range=(1, 2), min_df=2)
    Xc = cv.fit_transform(train.column("text").to_pylist())
    lr = LogisticRegression(max_iter=1000).fit(Xc, y)
    took = cpu() - t
    pred = lr.predict(cv.transform(test.column("text").to_pylist()))
    print(f"  CountVectorizer 1-2-grams min_df 2 + LogisticRegression ({Xc.shape[1]:,} n-grams): "
          f"{took:.1f} CPU-s; test {scores(pred, y_te)}")


def child_run(argv: list) -> None:
    """Run an mteach verb in this process, then print its peak RSS."""
    from _common import peak_rss_mib

    from mteach.cli import main
    t = time.perf_counter()
    code = main(argv)
    print(json.dumps({"code": code, "seconds": time.perf_counter() - t, "peak_mib": peak_rss_mib()}))


def run_child(argv: list) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *map(str, argv)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["code"] != 0:
        sys.exit(f"{' '.join(map(str, argv))} exited {out['code']}:\n{proc.stderr[-2000:]}")
    return out


def transform_speed(model: Path, data: Path, rows: int = 200_000) -> None:
    """In this process: the model's featurizer on the first ``rows`` rows of ``data``, in the
    chunks predict uses, through the compiled kernel and through the numpy path
    (MTEACH_NO_NUMBA=1); then the kernel's first call in a fresh process, with an empty
    numba cache (compiling) and with the cache that left (loading)."""
    from mteach.engine import features
    from mteach.engine.train import END_MODEL_CHUNK_ROWS, _feature_table, load_model
    trained = load_model(model)
    table = _feature_table(trained.spec, pq.read_table(data).slice(0, rows))
    trained.featurizer.transform(table.slice(0, 1000))  # the kernel compiled or loaded, the character tables built
    speeds = {}
    for path, env in (("kernel", "0"), ("numpy", "1")):
        os.environ["MTEACH_NO_NUMBA"] = env
        t, c = time.perf_counter(), cpu()
        for start in range(0, table.num_rows, END_MODEL_CHUNK_ROWS):
            trained.featurizer.transform(table.slice(start, END_MODEL_CHUNK_ROWS))
        speeds[path] = (table.num_rows / (time.perf_counter() - t), cpu() - c)
    os.environ.pop("MTEACH_NO_NUMBA")
    weights = trained.end_model.linear_weights()
    if weights is not None:  # what predict runs for a linear model: scores from the text, no matrix
        t, c = time.perf_counter(), cpu()
        for start in range(0, table.num_rows, END_MODEL_CHUNK_ROWS):
            trained.featurizer.dot(table.slice(start, END_MODEL_CHUNK_ROWS), weights[0])
        speeds["scores"] = (table.num_rows / (time.perf_counter() - t), cpu() - c)
    if features.compiled_kernel() is None:
        print("transform: numba is not installed: the numpy path only "
              f"({speeds['numpy'][0]:,.0f} rows/s)")
        return
    print(f"transform of {table.num_rows:,} rows (load {os.getloadavg()[0]:.1f}): kernel {speeds['kernel'][0]:,.0f} "
          f"rows/s ({speeds['kernel'][1]:.1f} CPU-s), numpy path {speeds['numpy'][0]:,.0f} rows/s "
          f"({speeds['numpy'][1]:.1f} CPU-s): {speeds['kernel'][0] / speeds['numpy'][0]:.1f}x" +
          (f"; the linear end model's scores from the text (Featurizer.dot, what predict runs) "
           f"{speeds['scores'][0]:,.0f} rows/s ({speeds['scores'][1]:.1f} CPU-s)" if "scores" in speeds else ""))
    code = ("import time, pyarrow as pa; t = time.perf_counter(); from mteach.engine.features import Featurizer; "
            "f = Featurizer(['text']).fit(pa.table({'text': ['a first text', 'another one']})); "
            "t1 = time.perf_counter(); f.transform(pa.table({'text': ['a text']})); "
            "print(time.perf_counter() - t1)")
    with tempfile.TemporaryDirectory(prefix="mteach-numba-") as cache:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": cache}
        first, cached = (float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                              check=True).stdout) for _ in range(2))
    print(f"kernel's first call in a process: {first:.1f} s with an empty numba cache (compiling), "
          f"{cached:.2f} s with it cached")


def default_model(tmp: Path) -> tuple:
    """(an empty mteach.toml, the model trained with it on the YouTube train split) in ``tmp``."""
    config = tmp / "mteach.toml"
    config.write_text("")
    model = tmp / "model"
    run_child(["train", SPEC, TRAIN, "-o", model, "--id", ID, "--config", config, "-q"])
    return config, model


def bench_predict(sizes: list, repeat: int = 1) -> None:
    with tempfile.TemporaryDirectory(prefix="mteach-scale-") as tmp:
        tmp = Path(tmp)
        config, model = default_model(tmp)
        transform_speed(model, replicated_parquet(min(sizes)))
        figures = {}
        for rows in sizes:
            data = replicated_parquet(rows)
            runs = [(run_child(["apply", SPEC, data, "-o", tmp / "votes.parquet", "--id", ID, "-q"]),
                     run_child(["predict", model, data, "-o", tmp / "pred.parquet", "--id", ID]))
                    for _ in range(repeat)]  # interleaved; the fastest of each (the least disturbed)
            a, p = (min((r[i] for r in runs), key=lambda f: f["seconds"]) for i in (0, 1))
            figures[rows] = (a, p)
            best = f"best of {repeat}: " if repeat > 1 else ""
            print(f"predict: {rows:,} rows, {best}apply {a['seconds']:.1f} s ({rows / a['seconds']:,.0f} rows/s, "
                  f"peak {a['peak_mib']:,.0f} MiB); predict {p['seconds']:.1f} s "
                  f"({rows / p['seconds']:,.0f} rows/s, peak {p['peak_mib']:,.0f} MiB); "
                  f"predict / apply time {p['seconds'] / a['seconds']:.2f} (load {os.getloadavg()[0]:.1f})",
                  flush=True)
        lo, hi = min(sizes), max(sizes)
        print(f"peak RSS {hi:,} / {lo:,} rows: apply {figures[hi][0]['peak_mib'] / figures[lo][0]['peak_mib']:.2f}, "
              f"predict {figures[hi][1]['peak_mib'] / figures[lo][1]['peak_mib']:.2f} (goal <= 1.5)")


def bench_label_model(sizes: list, repeat: int = 1) -> None:
    """``apply``, ``label --model`` and plain ``label`` at each size, each in a fresh process,
    ``repeat`` times interleaved, the fastest of each kept; the model trained as ``predict``'s
    (an empty mteach.toml: the default featurizer, word 1-2 + char_wb 2-4 n-grams)."""
    with tempfile.TemporaryDirectory(prefix="mteach-scale-") as tmp:
        tmp = Path(tmp)
        config, model = default_model(tmp)
        verbs = {"apply": lambda data: ["apply", SPEC, data, "-o", tmp / "votes.parquet", "--id", ID, "-q"],
                 "label --model": lambda data: ["label", SPEC, data, "-o", tmp / "ledger_m.parquet", "--id", ID, "-q",
                                                "--model", model],
                 "label": lambda data: ["label", SPEC, data, "-o", tmp / "ledger.parquet", "--id", ID, "-q",
                                        "--config", config]}
        for rows in sizes:
            data = replicated_parquet(rows)
            runs = [{verb: run_child(argv(data)) for verb, argv in verbs.items()} for _ in range(repeat)]
            best = {verb: min((r[verb] for r in runs), key=lambda f: f["seconds"]) for verb in verbs}
            base = best["apply"]["seconds"]
            for verb, f in best.items():
                every = ", ".join(f"{r[verb]['seconds']:.1f}" for r in runs)
                print(f"label-model: {rows:>11,} rows  {verb:<14} best of {repeat}: {f['seconds']:6.1f} s  "
                      f"{rows / f['seconds']:>9,.0f} rows/s  peak {f['peak_mib']:>6,.0f} MiB  "
                      f"time / apply {f['seconds'] / base:5.2f}  (each run: {every} s)", flush=True)
            print(f"label-model: load average {os.getloadavg()[0]:.1f} after {rows:,} rows", flush=True)


STREAM_CONFIG = "[features]\nchar_ngrams = false\n[end_model]\nmax_rows = 20000\nepochs = 5\n"


def _verbs(data, model, tmp: Path, config: Path) -> dict:
    """The command line of each verb on ``data``."""
    return {"apply": ["apply", SPEC, data, "-o", tmp / "votes.parquet", "--id", ID, "-q"],
            "label": ["label", SPEC, data, "-o", tmp / "ledger.parquet", "--id", ID, "-q", "--config", config],
            "label --model": ["label", SPEC, data, "-o", tmp / "ledger_m.parquet", "--id", ID, "-q",
                              "--model", model],
            "predict": ["predict", model, data, "-o", tmp / "pred.parquet", "--id", ID],
            "train": ["train", SPEC, data, "-o", tmp / "model_big", "--id", ID, "-q", "--config", config],
            # label's ledger of this data, re-run and compared
            "verify": ["verify", tmp / "ledger.parquet", data, "--spec", SPEC],
            # two revisions of the spec (_spec_revisions): a rule removed, another's threshold changed
            "diff": ["diff", tmp / "repo" / "specs" / SPEC.name, data, "--from", "HEAD~1", "--to", "HEAD", "--id", ID,
                     "--config", config],
            # gold labels of the first replicate's rows (the same 1,586 at every size: _gold_file)
            "predict --gold": ["predict", model, data, "-o", tmp / "pred_gold.parquet", "--id", ID,
                               "--gold", tmp / "gold.csv"],
            "stats --gold": ["stats", SPEC, data, "--id", ID, "--gold", tmp / "gold.csv", "-q"],
            "rows --gold": ["rows", SPEC, data, "--id", ID, "--gold", tmp / "gold.csv", "--wrong", "-q"]}


NEEDS = {"verify": "label"}  # verify reads the ledger label writes (run first, also when not asked for)


def _spec_revisions(tmp: Path) -> None:
    """A git repository in ``tmp/repo`` with the bench spec at two commits: the second drops
    the `money` rule and makes `short` stricter (words <= 4 instead of 5)."""
    import shutil
    repo = tmp / "repo"
    shutil.copytree(SPEC.parent, repo / SPEC.parent.name)
    spec = repo / SPEC.parent.name / SPEC.name
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "."], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "before"], cwd=repo, check=True)
    text = spec.read_text(encoding="utf-8").splitlines(keepends=True)
    text = [line.replace("words(text) <= 5 unless selling", "words(text) <= 4 unless selling")
            for line in text if not line.startswith("rule money")]
    spec.write_text("".join(text), encoding="utf-8")
    subprocess.run(git + ["commit", "-q", "-a", "-m", "after"], cwd=repo, check=True)


def _gold_file(tmp: Path) -> None:
    """Gold labels (CLASS 1 = SPAM) of the YouTube train comments' first replicate
    ("<COMMENT_ID>#0"), which every replicated file starts with."""
    from _common import train_table
    t = train_table()
    ids = [f"{i}#0" for i in t.column(ID).to_pylist()]
    labels = ["SPAM" if c == 1 else "HAM" for c in t.column("CLASS").to_pylist()]
    pacsv.write_csv(pa.table({"id": ids, "label": labels}), tmp / "gold.csv")


def bench_stream(sizes: list, big_csv: bool, verbs=None) -> None:
    with tempfile.TemporaryDirectory(prefix="mteach-stream-") as tmp:
        tmp = Path(tmp)
        config = tmp / "mteach.toml"
        config.write_text(STREAM_CONFIG)
        print("settings: " + STREAM_CONFIG.replace("\n", " ").strip())
        model = tmp / "model"
        run_child(["train", SPEC, TRAIN, "-o", model, "--id", ID, "--config", config, "-q"])
        _spec_revisions(tmp)
        _gold_file(tmp)
        figures = {}
        wanted = set(verbs or ()) | {NEEDS[v] for v in verbs or () if v in NEEDS}
        for rows in sizes if big_csv != "only" else ():
            data = replicated_parquet(rows)
            figures[rows] = {}
            for verb, argv in _verbs(data, model, tmp, config).items():
                if verbs and verb not in wanted and verb != "apply":  # apply: the baseline of time / apply
                    continue
                f = figures[rows][verb] = run_child(argv)
                base = figures[rows]["apply"]["seconds"]
                print(f"stream: {rows:>11,} rows  {verb:<14} {f['seconds']:8.1f} s  {rows / f['seconds']:>10,.0f} rows/s  "
                      f"peak {f['peak_mib']:>7,.0f} MiB  time / apply {f['seconds'] / base:5.2f}  "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
        lo, hi = min(sizes), max(sizes)
        if lo != hi and figures:
            print(f"peak RSS {hi:,} / {lo:,} rows (goal <= 1.5): " + ", ".join(
                f"{verb} {figures[hi][verb]['peak_mib'] / figures[lo][verb]['peak_mib']:.2f}" for verb in figures[hi]))
        if big_csv:
            bench_big_csv(tmp, model, config, verbs=verbs)


KERNEL_CHILD = """
import hashlib, json, os, sys, time
from mteach.engine.datasets import open_source
from mteach.engine.train import _feature_table, load_model
from mteach.engine.votes import vote_batches
model, data, rows, repeat, id_column = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
trained = load_model(model)
batches, n = [], 0  # (table, feature table, rows no rule covers)
for b in vote_batches(trained.spec, open_source(data), id_column, batch_rows=65536, threads=2):
    batches.append((b.table, _feature_table(trained.spec, b.table), ~(b.votes != -1).any(axis=1)))
    n += b.table.num_rows
    if n >= rows:
        break
f, weights = trained.featurizer, trained.end_model.linear_weights()[0]
def numpy_path(ft):  # the featurizer without numba, on the first batch only (it is slow)
    os.environ["MTEACH_NO_NUMBA"] = "1"
    try:
        return f.transform(ft)
    finally:
        os.environ.pop("MTEACH_NO_NUMBA")
calls = {"end_model_output": (lambda t, ft, e: trained.end_model_output(t, e), batches),
         "transform": (lambda t, ft, e: f.transform(ft), batches),
         "dot": (lambda t, ft, e: f.dot(ft, weights), batches),
         "transform, numpy": (lambda t, ft, e: numpy_path(ft), batches[:1])}
digest = hashlib.sha256()
for name, (call, some) in calls.items():  # the kernel's code loaded (or compiled); the outputs' hash
    for got in (call(*b) for b in some):
        if name == "end_model_output":
            digest.update(got[0].tobytes()); digest.update(str(got[1].to_pylist()).encode())
        elif name.startswith("transform"):
            for part in (got.indptr, got.indices, got.data):
                digest.update(part.tobytes())
        else:
            digest.update(got.tobytes())
best = {}
for _ in range(repeat):
    for name, (call, some) in calls.items():
        c, w = time.process_time(), time.perf_counter()
        for b in some:
            call(*b)
        c, w = time.process_time() - c, time.perf_counter() - w
        got = [min(best.get(name, [c, w, 0])[0], c), min(best.get(name, [c, w, 0])[1], w)]
        best[name] = got + [sum(b[0].num_rows for b in some)]
print(json.dumps({"best": best, "sha256": digest.hexdigest()}))
"""


def kernel_run(checkout: Path, model: Path, data: Path, rows: int, repeat: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    proc = subprocess.run([sys.executable, "-c", KERNEL_CHILD, str(model), str(data), str(rows), str(repeat), ID],
                          env=env, capture_output=True, text=True, cwd=checkout)
    if proc.returncode:
        sys.exit(f"the kernel's calls in {checkout} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def bench_kernel(rows: int, repeat: int, against) -> None:
    """The kernel's calls in this checkout (and ``against``'s), see the module's docstring."""
    with tempfile.TemporaryDirectory(prefix="mteach-scale-") as tmp:
        _, model = default_model(Path(tmp))
        data = replicated_parquet(max(rows, 65536))
        checkouts = {"this": ROOT} | ({"against": Path(against).resolve()} if against else {})
        best = {}
        for _ in range(repeat):  # interleaved, each process the least of ``repeat`` tries
            for name, checkout in checkouts.items():
                got = kernel_run(checkout, model, data, rows, repeat)
                if name in best:
                    got["best"] = {call: [min(a, b) for a, b in zip(v[:2], best[name]["best"][call])] + v[2:]
                                   for call, v in got["best"].items()}
                best[name] = got
        for name, got in best.items():
            for call, (c, w, n) in got["best"].items():
                ratio = ""
                if name == "this" and "against" in best:
                    ac, aw, _ = best["against"]["best"][call]
                    ratio = f"  this / against: CPU {c / ac:.2f}, wall {w / aw:.2f}"
                print(f"kernel: {name:<8} {call:<17} {n:>8,} rows  {c:6.2f} CPU-s  {w:6.2f} s wall{ratio}")
        if "against" in best:
            same = best["this"]["sha256"] == best["against"]["sha256"]
            print(f"kernel: outputs {'identical' if same else 'DIFFERENT'} (sha256 {best['this']['sha256'][:16]}…"
                  f"{'' if same else ' vs ' + best['against']['sha256'][:16] + '…'}); load {os.getloadavg()[0]:.1f}")


def bench_big_csv(tmp: Path, model: Path, config: Path, docs: int = 110_000, chars: int = 21_000,
                  verbs=None) -> None:
    """A CSV whose CONTENT column holds over 2 GB: every verb must finish on it."""
    from _common import train_table
    base = train_table()
    texts = np.asarray(base.column(TEXT).to_pylist(), dtype=object)
    ids = base.column(ID).to_pylist()
    rng = np.random.default_rng(0)
    path = tmp / "big.csv"
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{ID},{TEXT}\n")
        for i in range(docs):
            picks = rng.integers(0, len(texts), chars // 90)
            text = " ".join(texts[picks])[:chars].replace('"', '""').replace("\n", " ")
            f.write(f'"{ids[i % len(ids)]}#{i}","{text}"\n')
            written += len(text)
    size = path.stat().st_size
    print(f"big CSV: {docs:,} rows, {size / 2**30:.2f} GiB, {written / 2**31:.2f} x 2^31 bytes of text in {TEXT}")
    try:
        for verb, argv in _verbs(path, model, tmp, config).items():
            if verbs and verb not in verbs and verb not in {NEEDS[v] for v in verbs if v in NEEDS}:
                continue
            f = run_child(argv)
            print(f"big CSV: {verb:<14} {f['seconds']:8.1f} s  peak {f['peak_mib']:>7,.0f} MiB  "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        path.unlink()


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_run(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("train", "longdoc", "predict", "label-model", "stream", "kernel"))
    ap.add_argument("--rows", type=int, help="train: rows to train on (default 100,000); kernel: rows to run "
                    "(default 262,144)")
    ap.add_argument("--against", help="kernel: another checkout of mteach to compare with")
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=1, help="predict, label-model: run each verb this many times at "
                    "each size, interleaved, and keep the fastest of each (a shared machine's noise); train: each "
                    "fit this many times, interleaved, the fastest kept")
    ap.add_argument("--big-csv", action="store_true", help="stream: also a CSV of over 2 GB through every verb")
    ap.add_argument("--big-csv-only", action="store_true", help="stream: only the CSV of over 2 GB")
    ap.add_argument("--verbs", nargs="+", help="stream: these verbs only (at each size apply too, the baseline; "
                    "default: all)")
    args = ap.parse_args(argv)
    print(f"{machine()}; load average {os.getloadavg()[0]:.1f} at start")
    {"train": lambda: bench_train(args.rows or 100_000, args.repeat),
     "kernel": lambda: bench_kernel(args.rows or 262_144, args.repeat, args.against), "longdoc": lambda: bench_longdoc(args.docs),
     "predict": lambda: bench_predict(args.sizes, args.repeat),
     "label-model": lambda: bench_label_model(args.sizes, args.repeat), "stream": lambda: bench_stream(args.sizes, "only" if args.big_csv_only else args.big_csv, args.verbs)}[args.what]()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
