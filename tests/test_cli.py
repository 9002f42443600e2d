"""The command line's help texts, the demo list and ``wmfast bench`` outside a source checkout."""

from __future__ import annotations

import re

import pytest
from wmfast.cli import main
from wmfast.demos import DEMOS

# An option line of argparse's help: "  --name VALUE  help" (or "  -h, --help  help").
OPTION = re.compile(r"^  (-\S+)( [A-Z_{][^ ]*)?")


def help_text(capsys, run) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:")
    return out


def option_entries(text: str) -> list[tuple[str, bool, str]]:
    """(flag, takes a value, the entry's whole text) for each option in a help text."""
    entries: list[tuple[str, bool, str]] = []
    for line in text.split("\n"):
        match = OPTION.match(line)
        if match:
            entries.append((match.group(1), bool(match.group(2)), line))
        elif entries and line.startswith("    "):
            flag, takes_value, entry = entries[-1]
            entries[-1] = (flag, takes_value, entry + " " + line.strip())
    return entries


def assert_plain_with_defaults(text: str) -> None:
    assert "``" not in text, text
    assert not re.search(r":(func|class|meth|mod):`", text), text
    for flag, takes_value, entry in option_entries(text):
        if takes_value:
            assert "default" in entry, f"{flag} shows no default: {entry!r}"


@pytest.mark.parametrize("argv", [["--help"], ["info", "--help"], ["demo", "--help"],
                                  ["bench", "--help"]])
def test_help_is_plain_text_with_defaults(capsys, argv):
    text = help_text(capsys, lambda: main(argv))
    assert_plain_with_defaults(text)


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_demo_help_is_plain_text_with_defaults(capsys, name):
    text = help_text(capsys, lambda: main(["demo", name, "--help"]))
    assert f"wmfast demo {name}" in text
    assert_plain_with_defaults(text)
    assert "--seed" in text


def test_top_level_help_names_every_command(capsys):
    text = help_text(capsys, lambda: main(["--help"]))
    for command in ("info", "demo", "bench"):
        assert f"wmfast {command}" in text


def test_demo_without_a_name_lists_the_demos(capsys):
    assert main(["demo"]) == 0
    captured = capsys.readouterr()
    assert "required" not in captured.out + captured.err
    listed = [line.split()[0] for line in captured.out.split("\n") if line.startswith("  ")]
    assert listed == sorted(DEMOS)
    for line in captured.out.split("\n"):
        if line.startswith("  "):
            assert len(line.split()) > 1, f"demo without a description: {line!r}"
            assert "``" not in line


def test_demo_help_lists_the_demos(capsys):
    text = help_text(capsys, lambda: main(["demo", "--help"]))
    for name in DEMOS:
        assert name in text


def test_unknown_demo_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "no-such-demo"])
    assert exit_info.value.code == 2
    assert "no-such-demo" in capsys.readouterr().err


def test_bench_without_benches_folder_says_how_to_get_them(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "benches") in err
    assert "not part of the installed package" in err
    assert "pip install" in err and "[test]" in err
    assert "wmfast bench --folder" in err
    assert "Traceback" not in err


def test_bench_with_a_missing_folder_option(capsys, tmp_path):
    missing = tmp_path / "elsewhere"
    assert main(["bench", "--folder", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "--folder" in err
