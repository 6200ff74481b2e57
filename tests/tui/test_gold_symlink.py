"""The studio's gold file is appended to: never through a link leaving the spec's folder (issue 9 item 15)."""
import os

import pytest

from mteach.errors import DataError


def test_a_gold_link_out_of_the_spec_folder_is_refused(make_session, studio_files, tmp_path_factory):
    outside = tmp_path_factory.mktemp("home") / "authorized_keys"
    outside.write_text("ssh-ed25519 AAAA me@host\n")
    (studio_files / "mini.gold.csv").symlink_to(outside)
    with pytest.raises(DataError, match="outside the spec's folder"):
        make_session()
    assert outside.read_text() == "ssh-ed25519 AAAA me@host\n"


def test_the_link_made_after_opening_is_refused_at_the_append(make_session, studio_files, tmp_path_factory):
    s = make_session()
    outside = tmp_path_factory.mktemp("home") / "authorized_keys"  # not there yet: a dangling link
    (studio_files / "mini.gold.csv").symlink_to(outside)
    with pytest.raises(DataError, match="outside the spec's folder"):
        s.record(0, "SPAM")
    assert not outside.exists()


def test_a_link_inside_the_spec_folder_is_followed(make_session, studio_files):
    (studio_files / "gold").mkdir()
    (studio_files / "mini.gold.csv").symlink_to(os.path.join("gold", "labels.csv"))
    s = make_session()
    s.record(0, "SPAM")
    assert (studio_files / "gold" / "labels.csv").read_text().splitlines()[1].startswith(f"{s.id_list[0]},SPAM,")
