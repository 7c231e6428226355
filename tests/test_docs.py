"""The manual's option reference is the CLI's own --help (tools/docs_help.py writes it), and the
README's links into BENCHMARKS.md and the manual lead somewhere."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_docs_help_blocks_are_up_to_date():
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "docs_help.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, (
        "docs/options.md's --help blocks are stale: run python tools/docs_help.py"
    )


def test_readme_links_lead_to_files_and_sections():
    for target in LINK.findall((ROOT / "README.md").read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), f"README.md links to {path}, which does not exist"
        if anchor and path.endswith(".md"):
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(encoding="utf-8"), re.M)
            assert anchor in {github_anchor(h) for h in headings}, (
                f"README.md links to {target}; {path} has no such section"
            )


def test_github_anchor_matches_githubs_rule():
    assert github_anchor("Generation speed (issue #5)") == "generation-speed-issue-5"
    assert (
        github_anchor("Model size by budget, activation regularisation, `--lr-finder` (x)")
        == "model-size-by-budget-activation-regularisation---lr-finder-x"
    )


def test_the_serve_page_names_every_request_field_the_server_takes():
    from lstmgen.serve.schemas import CompletionRequest

    page = (ROOT / "docs" / "commands" / "serve.md").read_text(encoding="utf-8")
    missing = [f for f in CompletionRequest.model_fields if f"`{f}" not in page]
    assert not missing, f"docs/commands/serve.md does not name the request field(s) {missing}"


def test_the_manuals_front_page_names_every_command():
    from lstmgen.cli import app

    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    page = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    missing = [c for c in commands if f"`lstmgen {c}" not in page and f"`{c}`" not in page]
    assert commands and not missing, f"docs/index.md does not name the command(s) {missing}"


def test_the_built_manual_links_to_files_so_it_works_from_disk():
    # With directory URLs a page links to commands/train/, which a browser shows as a folder
    # listing when site/ is opened from disk.
    settings = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^use_directory_urls: false$", settings, re.M)
