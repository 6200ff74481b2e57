"""label / explain / audit / verify / diff end to end on a temporary git repository
with two commits of a spec; bad input gives a clear message and a non-zero exit."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


ENV = {"GIT_AUTHOR_NAME": "Ada Expert", "GIT_AUTHOR_EMAIL": "ada@example.org",
       "GIT_COMMITTER_NAME": "Ada Expert", "GIT_COMMITTER_EMAIL": "ada@example.org", "GIT_CONFIG_NOSYSTEM": "1"}

V1 = '''concept spam "spam comments"
labels SPAM, HAM
field text = "text"

# Links point away from the video.
rule link : text ~ /https?:/ => SPAM confidence 0.9
# Selling things.
rule buy : text has any("buy", "free") => SPAM confidence 0.9
# Talking about the song.
rule song : text has "song" => HAM confidence 0.8
'''
V2 = V1.replace('any("buy", "free")', 'any("buy", "free", "cheap")').replace(
    "# Talking about the song.", "# Short comments are reactions.\nrule short : words(text) <= 2 => HAM\n"
                                 "# Talking about the song.")

ROWS = [("a1", "buy cheap pills http://x.co"), ("a2", "I love this song"), ("a3", "cheap watches for sale"),
        ("a4", "great song buy it"), ("a5", "hello"), ("a6", "free money http://y.co"), ("a7", "nice song"),
        ("a8", "what a voice she has"), ("a9", "good song"), ("a10", "buy now free http://z.co")]


def git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=Ada Expert", "-c", "user.email=ada@example.org",
                           "-c", "commit.gpgsign=false", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, env={**os.environ, **ENV}).stdout.strip()


def write_csv(path, rows=ROWS):
    path.write_text("id,text\n" + "".join(f'{i},"{t}"\n' for i, t in rows), encoding="utf-8")


@pytest.fixture
def project(tmp_path, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "repo"
    (root / "specs").mkdir(parents=True)
    git(root, "init", "-q")
    spec = root / "specs" / "spam.mt"
    spec.write_text(V1, encoding="utf-8")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "v1")
    sha1 = git(root, "rev-parse", "HEAD")
    spec.write_text(V2, encoding="utf-8")
    git(root, "commit", "-q", "-a", "-m", "v2")
    data = tmp_path / "data.csv"
    write_csv(data)
    monkeypatch.chdir(tmp_path)
    return root, spec, data, sha1, git(root, "rev-parse", "HEAD")




def label(run, spec, data, out, *extra):
    code, _, err = run("label", spec, data, "--id", "id", "-o", out, "-q", *extra)
    assert code == 0, err
    return out


def test_label_explain_in_words_and_json(project, run, tmp_path):
    root, spec, data, _, sha2 = project
    ledger = label(run, spec, data, tmp_path / "l.parquet")
    code, out, err = run("explain", ledger, "--id", "a1")
    assert code == 0, err
    assert "row a1: SPAM with probability" in out and "decided by the rules" in out
    assert f"commit {sha2[:10]}" in out
    assert "spam.mt:6" in out and "rule link : text ~ /https?:/ => SPAM" in out
    assert "# Links point away from the video." in out and "estimated accuracy" in out
    assert "class baseline" in out and "last changed in commit" in out and "Ada Expert" in out
    code, out, _ = run("explain", ledger, "--id", "a1", "--format", "json")
    e = json.loads(out)
    assert [v["rule"] for v in e["votes"]] == ["link", "buy"]
    assert e["votes"][1]["line"] == 8 and e["votes"][1]["description"] == "Selling things."
    assert e["git"]["commit"] == sha2 and isinstance(e["votes"][0]["contribution"], float)
    code, out, _ = run("explain", ledger, "--id", "a8")
    assert code == 0 and "no label" in out and "no rule voted" in out


def test_label_is_byte_identical_across_threads(project, run, tmp_path):
    _, spec, data, _, _ = project
    a = label(run, spec, data, tmp_path / "a.parquet", "--threads", "1")
    b = label(run, spec, data, tmp_path / "b.parquet", "--threads", "4")
    assert a.read_bytes() == b.read_bytes()


def test_bad_row_id_suggests_near_ids(project, run, tmp_path):
    _, spec, data, _, _ = project
    ledger = label(run, spec, data, tmp_path / "l.parquet")
    code, out, err = run("explain", ledger, "--id", "a11")
    assert code == 2 and "row id 'a11' is not in" in err and "did you mean" in err and "Traceback" not in err


def test_ledger_from_another_spec_version(project, run, tmp_path):
    root, spec, data, _, _ = project
    ledger = label(run, spec, data, tmp_path / "l.parquet")
    spec.write_text(V2 + "rule more : text has \"cash\" => SPAM\n", encoding="utf-8")
    code, _, err = run("explain", ledger, "--id", "a1", "--spec", spec)
    assert code == 2 and "made from another version of the spec" in err
    code, _, err = run("verify", ledger, data, "--spec", spec)
    assert code == 2 and "another version" in err


def test_tampered_ledger_rejected_everywhere(project, run, tmp_path):
    _, spec, data, _, _ = project
    ledger = label(run, spec, data, tmp_path / "l.parquet")
    t = pq.read_table(ledger)
    probs = t.column("probability").to_pylist()
    probs[0] = 0.51
    pq.write_table(t.set_column(2, "probability", pa.array(probs)).replace_schema_metadata(t.schema.metadata), ledger)
    for argv in (("explain", ledger, "--id", "a1"), ("audit", ledger, "-o", tmp_path / "rep"),
                 ("verify", ledger, data)):
        code, _, err = run(*argv)
        assert code == 2 and "modified after it was written" in err, argv


def test_verify_identical_then_different(project, run, tmp_path):
    root, spec, data, _, _ = project
    ledger = label(run, spec, data, tmp_path / "l.parquet")
    spec.write_text(V1, encoding="utf-8")  # the working copy moves on; verify reads the recorded commit
    code, out, err = run("verify", ledger, data)
    assert code == 0 and "identical" in out, out + err
    changed = tmp_path / "changed.csv"
    write_csv(changed, [(i, "plain words here" if i == "a6" else t) for i, t in ROWS])
    code, out, _ = run("verify", ledger, changed)
    assert code == 1 and "DIFFERENT" in out and "not the data file the ledger was made from" in out
    assert "a6" in out and "link" in out and "abstain" in out
    code, out, _ = run("verify", ledger, changed, "--format", "json")
    d = json.loads(out)
    assert d["identical"] is False and {"id": "a6", "rule": "buy", "recorded": "SPAM", "now": "abstain"} in d["vote_differences"]


def test_verify_dirty_needs_spec_and_missing_commit(project, run, tmp_path):
    root, spec, data, _, _ = project
    spec.write_text(V2 + "# an uncommitted comment\n", encoding="utf-8")
    ledger = label(run, spec, data, tmp_path / "dirty.parquet")
    code, out, _ = run("explain", ledger, "--id", "a1")
    assert "uncommitted changes" in out
    code, _, err = run("verify", ledger, data)
    assert code == 2 and "uncommitted changes" in err and "--spec" in err
    code, out, _ = run("verify", ledger, data, "--spec", spec)
    assert code == 0 and "identical" in out
    # a clean ledger checked against a repository that lacks its commit
    git(root, "commit", "-q", "-a", "-m", "comment")
    clean = label(run, spec, data, tmp_path / "clean.parquet")
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    code, _, err = run("verify", clean, data, "--repo", other)
    assert code == 2 and "does not exist in the git repository" in err and "Traceback" not in err


def test_diff_between_revisions(project, run):
    root, spec, data, sha1, sha2 = project
    code, out, err = run("diff", spec, data, "--from", sha1, "--to", "HEAD", "--id", "id")
    assert code == 0, err
    assert "added    short" in out and "changed  buy" in out and "song" not in out.split("rows change")[0]
    assert "a3:" in out and "cheap watches for sale" in out  # newly labelled by the changed buy rule
    code, out, _ = run("diff", spec, data, "--from", sha1, "--to", sha2, "--id", "id", "--format", "json")
    d = json.loads(out)
    assert [c["rule"] for c in d["changed"]] == ["buy"] and d["flipped"] == sum(d["transitions"].values())
    code, _, err = run("diff", spec, data, "--from", "0" * 40, "--id", "id")
    assert code == 2 and "does not exist" in err


def test_spec_outside_git(project, run, tmp_path):
    _, _, data, _, _ = project
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "s.mt").write_text(V1, encoding="utf-8")
    ledger = label(run, plain / "s.mt", data, tmp_path / "p.parquet")
    code, out, _ = run("explain", ledger, "--id", "a2")
    assert code == 0 and "git unavailable" in out and "blame needs the spec in git" in out
    code, _, err = run("diff", plain / "s.mt", data, "--from", "HEAD~1")
    assert code == 2 and "not inside a git repository" in err
    code, _, err = run("verify", ledger, data)
    assert code == 2 and "outside git" in err


def test_audit_report_renders_in_headless_chromium(project, run, tmp_path):
    root, spec, _, _, sha2 = project
    data = tmp_path / "long.csv"  # a long id and a long unbroken link must wrap, not widen the page
    write_csv(data, ROWS + [("z" * 90, "buy http://" + "x" * 120 + ".example/")])
    ledger = label(run, spec, data, tmp_path / "l.parquet", "--gold", _gold(tmp_path))
    code, _, err = run("audit", ledger, "-o", tmp_path / "report")
    assert code == 0, err
    index = tmp_path / "report" / "index.html"
    assert (tmp_path / "report" / "ledger.parquet").read_bytes() == ledger.read_bytes()
    html = index.read_text(encoding="utf-8")
    assert "<script src" not in html and "@import" not in html and "<link" not in html
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium) — cannot render the report")
    dom = _dump_dom(chromium, index, tmp_path, 1280)
    assert "Audit report: spam" in dom and sha2 in dom and "Ada Expert" in dom
    assert dom.count("<svg") >= 4 and "rows per label" in dom and "coverage per rule" in dom
    assert "Agreement with gold labels" in dom and "agrees with gold on" in dom
    assert "rule buy : text has any(" in dom
    assert '<article class="row">' in dom  # the row browser's script ran under the page's own policy
    # at a desktop and a phone width (in a frame of that width: headless windows are 500 px at
    # the least), nothing overflows sideways, and typing in the row browser's search finds the row
    for width in (1280, 390):
        probe = tmp_path / "report" / f"probe{width}.html"
        probe.write_text(PROBE.replace("WIDTH", str(width)), encoding="utf-8")
        found = re.search(r'<pre id="probe">(.*?)</pre>', _dump_dom(chromium, probe, tmp_path, 1400), re.S)
        found = json.loads(found.group(1))
        assert found["width"] == width and found["scroll"] <= found["width"], found
        assert found["ids"] == ["a3"] and "cheap watches for sale" in found["text"], found


# the report in a frame WIDTH px wide; once loaded, its page's width, then "WATCHES for" typed
# into the search box and the rows the browser shows
PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="index.html" style="width:WIDTHpx;height:900px;border:0"></iframe>
<script>window.addEventListener("load", function () {
  var w = document.getElementById("f").contentWindow, d = w.document, q = d.getElementById("f-q");
  var scroll = d.documentElement.scrollWidth;  // the first page of rows, the long id among them
  q.value = "WATCHES for"; q.dispatchEvent(new w.Event("input"));
  var ids = Array.prototype.map.call(d.querySelectorAll("#rows article h3 code"), function (c) { return c.textContent; });
  var out = document.createElement("pre"); out.id = "probe";
  out.textContent = JSON.stringify({width: w.innerWidth, scroll: Math.max(scroll, d.documentElement.scrollWidth), ids: ids,
                                    text: d.getElementById("rows").textContent});
  document.body.appendChild(out);
});</script></body></html>"""


def _dump_dom(chromium, page, tmp_path, width):
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                           "--allow-file-access-from-files",
                           f"--window-size={width},900", f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120).stdout


def _gold(tmp_path):
    g = tmp_path / "gold.csv"
    g.write_text("id,label\na1,SPAM\na2,HAM\na5,HAM\na7,HAM\n", encoding="utf-8")
    return g


def test_diff_names_a_rule_whose_define_changed(project, run):
    root, spec, data, _, _ = project
    spec.write_text(V1.replace('rule buy : text has any("buy", "free")', 'define offers = any("buy", "free")\n'
                               'rule buy : text has offers'), encoding="utf-8")
    git(root, "commit", "-q", "-am", "buy reads a define")
    before = git(root, "rev-parse", "HEAD")
    spec.write_text(spec.read_text().replace('any("buy", "free")', 'any("buy", "free", "cheap")'), encoding="utf-8")
    git(root, "commit", "-q", "-am", "the define grows")
    code, out, err = run("diff", spec, data, "--from", before, "--to", "HEAD", "--id", "id")
    assert code == 0, err
    assert "changed  buy" in out and "same text, but a define, lexicon or used file it reads changed" in out
    assert "a3:" in out  # "cheap watches for sale" is now SPAM
