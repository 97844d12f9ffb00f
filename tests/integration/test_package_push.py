"""`gdos package push` refusals name the operator's file, never the daemon's temporary one."""

from __future__ import annotations

from pathlib import Path

from tests.harness import Fleet


def test_a_file_that_is_not_a_zip_is_named_in_the_refusal(fleet: Fleet, tmp_path: Path) -> None:
    bogus = tmp_path / "web-release.zip"
    bogus.write_text("this is a README, not a zip\n")
    result = fleet.gdos("package", "push", str(bogus))
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error[archive_invalid]: web-release.zip is not a readable zip")
    assert ".part" not in result.stderr
