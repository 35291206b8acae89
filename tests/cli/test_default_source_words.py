"""The default source's words fit the verb: a read says "read elsewhere", a write "write
elsewhere" (issue 16: a failed write ended "[writing http://127.0.0.1:8000 (the default; set
--storage or --server to read elsewhere)]")."""

from __future__ import annotations

import pytest

from hpsearch.cli import main


def test_the_default_source_says_read_or_write_elsewhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable in ("HPSEARCH_STORAGE", "HPSEARCH_SERVER", "HPSEARCH_API_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    # Whatever answers at the default address (nothing, or another service), a stop of a study
    # that does not exist fails, and the error names where it was sent.
    assert main(["stop", "no-such-study-issue-16"]) == 1
    err = capsys.readouterr().err
    assert "(the default; set --storage or --server to write elsewhere)]" in err, err
    assert "read elsewhere" not in err
    main(["status", "no-such-study-issue-16"])
    err = capsys.readouterr().err
    assert "(the default; set --storage or --server to read elsewhere)" in err, err
    assert "write elsewhere" not in err
