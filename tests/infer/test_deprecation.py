"""pdgan_infer.deprecation: renamed keyword options keep working for a release, with a warning naming both."""
from __future__ import annotations

import warnings

import pytest

from pdgan_infer.deprecation import renamed_keywords


def test_renamed_keywords():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to rename: no warning
        assert renamed_keywords({"a": 1, "new": 2}, {"old": "new"}, "opts") == {"a": 1, "new": 2}
    given = {"a": 1, "old": 2}
    with pytest.warns(DeprecationWarning, match=r"opts: the option old= is now called new=; old= will be removed"):
        assert renamed_keywords(given, {"old": "new"}, "opts") == {"a": 1, "new": 2}
    assert given == {"a": 1, "old": 2}  # the caller's dict is not changed
    with pytest.raises(TypeError, match=r"opts: give new= only \(old= is its old name\)"):
        renamed_keywords({"old": 1, "new": 2}, {"old": "new"}, "opts")
