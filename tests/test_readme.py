"""The README is what a new user follows: its spec must validate, its test command must be the
one CI runs, and every page it links to must exist."""
import re
from pathlib import Path

from sweep.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_minimal_spec_is_valid(tmp_path):
    blocks = re.findall(r"```toml\n(.*?)```", README, re.S)
    assert blocks, "README has no TOML spec"
    path = tmp_path / "minimal.toml"
    path.write_text(blocks[0])
    spec = load_spec(str(path))
    assert spec.name == "my-sweep"
    assert spec.experiment == "p1-point-defects-2d"


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```\n(.*pytest.*)\n```", README)
    assert commands, "README has no test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[0].strip() in ci


def test_every_linked_page_exists():
    links = re.findall(r"\]\(((?:docs|deploy)/[^)#]+)", README)
    assert links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, missing


def test_the_readme_is_a_guide():
    assert len(README.splitlines()) <= 250
