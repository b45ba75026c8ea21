"""Harness argv rendering (docs/format.md, "Agent steps"; docs/providers.md)."""

import pytest

from dagbox.harness.argv import merge_defaults, render, tries, trim_prompt
from dagbox.harness.catalog import BUILTIN, Provider, customs, registry
from dagbox.spec.issues import DagError
from dagbox.spec.model import HarnessDef
from tests.conftest import load_text

CUSTOM_ARG = Provider("mine", "mine")


def test_worked_example_of_the_reference():
    options = {
        "prompt": "do it",
        "verbose": True,
        "quiet": False,
        "model": "small",
        "max_turns": 3,
        "temperature": 0.5,
        "tag": ["a", "b"],
        "dry_run": "true",
        "empty": "",
    }
    assert render(CUSTOM_ARG, options).argv[1:] == (
        "do it",
        "--dry_run",
        "--max_turns",
        "3",
        "--model",
        "small",
        "--tag",
        "a",
        "--tag",
        "b",
        "--temperature",
        "0.5",
        "--verbose",
    )


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("claude", ["claude", "-p", "--", "P"]),
        ("codex", ["codex", "exec", "--skip-git-repo-check", "--", "P"]),
        ("copilot", ["copilot", "--prompt=P"]),
        ("opencode", ["opencode", "run", "--log-level", "WARN", "--print-logs", "--", "P"]),
        ("pi", ["pi", "-p", "--", "P"]),
        ("gemini", ["gemini", "--skip-trust", "--prompt=P"]),
        ("cursor", ["cursor-agent", "-p", "--output-format", "text", "--", "P"]),
        ("cline", ["cline", "--", "P"]),
        ("aider", ["aider", "--message=P"]),
        ("qwen", ["qwen", "--", "P"]),
        ("goose", ["goose", "run", "--quiet", "--text=P"]),
        ("kiro", ["kiro-cli", "chat", "--no-interactive", "--", "P"]),
        ("droid", ["droid", "exec", "--", "P"]),
        ("amp", ["amp", "--execute=P"]),
        ("deepseek", ["dsh", "--profile", "headless", "--", "--", "P"]),
    ],
)
def test_every_builtin_provider(name, argv):
    assert list(render(BUILTIN[name], {"prompt": "P"}).argv) == argv


def test_catalog_has_the_fifteen_providers():
    assert len(BUILTIN) == 15


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_a_prompt_that_starts_with_a_dash_is_never_an_option(name):
    """A YAML block prompt that opens with a "- " bullet list, and a flag with an optional
    value (cline's --thinking) just before it: the prompt follows "--" or is joined to its
    flag, so no CLI can read it as an option or as a flag's value."""
    prompt = "- list the files\n- then say done\n"
    argv = render(BUILTIN[name], {"prompt": prompt, "thinking": True, "model": "m"}).argv
    assert argv[-2:] == ("--", prompt) or argv[-1].endswith("=" + prompt)
    assert prompt not in argv[:-1] and sum(prompt in word for word in argv) == 1


def test_builtins_put_the_prompt_after_the_flags():
    assert render(BUILTIN["cline"], {"prompt": "P", "thinking": True}).argv == (
        "cline",
        "--thinking",
        "--",
        "P",
    )
    assert render(BUILTIN["claude"], {"prompt": "P", "model": "m"}).argv == (
        "claude",
        "-p",
        "--model",
        "m",
        "--",
        "P",
    )
    assert render(BUILTIN["amp"], {"prompt": "P", "mode": "smart"}).argv == (
        "amp",
        "--mode",
        "smart",
        "--execute=P",
    )


def test_a_custom_harness_can_end_options_or_join_its_prompt_flag():
    ended = Provider(
        "mine", "mine", prompt_mode="flag", prompt_flag="--", prompt_position="after_flags"
    )
    assert render(ended, {"prompt": "-x", "v": True}).argv == ("mine", "--v", "--", "-x")
    joined = Provider("mine", "mine", prompt_mode="flag", prompt_flag="--message=")
    assert render(joined, {"prompt": "-x", "v": True}).argv == ("mine", "--message=-x", "--v")
    plain = Provider("mine", "mine", prompt_mode="flag", prompt_flag="-m")
    assert render(plain, {"prompt": "-x"}).argv == ("mine", "-m", "-x")  # as Dagu renders it


def test_builtin_keys_become_kebab_case_and_kebab_wins():
    argv = render(
        BUILTIN["codex"],
        {"prompt": "P", "sandbox": "workspace-write", "skip_git_repo_check": False},
    ).argv
    assert argv == ("codex", "exec", "--sandbox", "workspace-write", "--", "P")  # false wins
    argv = render(BUILTIN["claude"], {"prompt": "P", "max_turns": 2, "max-turns": 5}).argv
    assert argv == ("claude", "-p", "--max-turns", "5", "--", "P")


def test_custom_keys_keep_their_spelling():
    assert render(CUSTOM_ARG, {"prompt": "P", "max_turns": 2}).argv == (
        "mine",
        "P",
        "--max_turns",
        "2",
    )


def test_values_are_coerced_from_yaml_text():
    argv = render(
        CUSTOM_ARG, {"prompt": "P", "a": "10", "b": "5.5", "c": "false", "d": "yes", "e": 2.0}
    ).argv
    assert argv == ("mine", "P", "--a", "10", "--b", "5.5", "--d", "yes", "--e", "2")


def test_maps_and_nulls_are_dropped():
    assert render(CUSTOM_ARG, {"prompt": "P", "m": {"x": 1}, "n": None}).argv == ("mine", "P")


def test_reserved_keys_are_never_flags():
    argv = render(
        CUSTOM_ARG, {"prompt": "P", "provider": "x", "fallback": [], "managed": True, "stdin": "s"}
    ).argv
    assert argv == ("mine", "P")


def _custom(**kw):
    return registry(customs({"c": HarnessDef(binary=" tool ", **kw)}))["c"]


def test_custom_flag_mode_and_positions():
    p = _custom(prompt_mode="flag", prompt_flag="--prompt", prefix_args=(" run ",))
    assert render(p, {"prompt": "P", "v": True}).argv == ("tool", "run", "--prompt", "P", "--v")
    p = _custom(prompt_mode="flag", prompt_flag="-m", prompt_position="after_flags")
    assert render(p, {"prompt": "P", "v": True}).argv == ("tool", "--v", "-m", "P")
    p = _custom(prompt_position="after_flags")
    assert render(p, {"prompt": "P", "v": True}).argv == ("tool", "--v", "P")


def test_single_dash_and_option_flags():
    p = _custom(flag_style="single_dash", option_flags={"model": "--model-name", "blank": " "})
    assert render(p, {"prompt": "P", "model": "m", "blank": "b", "x": 1}).argv == (
        "tool",
        "P",
        "-blank",
        "b",
        "--model-name",
        "m",
        "-x",
        "1",
    )


def test_stdin_mode_sends_the_prompt_on_stdin():
    p = _custom(prompt_mode="stdin")
    inv = render(p, {"prompt": "hey\nyou", "v": True})
    assert (inv.argv, inv.stdin) == (("tool", "--v"), "hey\nyou")
    inv = render(p, {"prompt": "P", "stdin": "  more  "})
    assert inv.stdin == "P\n\nmore"


def test_with_stdin_is_piped_or_folded_per_provider():
    piped = render(BUILTIN["claude"], {"prompt": "P", "stdin": "ctx"})
    assert (piped.argv, piped.stdin) == (("claude", "-p", "--", "P"), "ctx")
    folded = render(BUILTIN["aider"], {"prompt": "P", "stdin": "ctx"})
    assert (folded.argv, folded.stdin) == (("aider", "--message=P\n\nctx"), None)


def test_prompt_trimming():
    assert trim_prompt("  one line  ") == "one line"
    assert trim_prompt("line one\n  line two\n") == "line one\n  line two\n"


def test_null_harness_entry_reexposes_the_builtin_and_definitions_shadow():
    assert registry(customs({"claude": None}))["claude"] is BUILTIN["claude"]
    shadow = registry(customs({"codex": HarnessDef(binary="my-codex")}))["codex"]
    assert render(shadow, {"prompt": "P", "full_auto": True}).argv == (
        "my-codex",
        "P",
        "--full_auto",
    )  # a shadowing definition renders as Dagu does: no "--", keys as written


def test_root_harness_defaults_merge_under_the_step():
    merged = merge_defaults(
        {"prompt": "P", "model": "a"}, {"provider": "claude", "model": "b", "x": 1}
    )
    assert merged == {"prompt": "P", "model": "a", "provider": "claude", "x": 1}
    with_fallback = merge_defaults({"fallback": []}, {"fallback": [{"provider": "codex"}]})
    assert with_fallback["fallback"] == []


def test_tries_are_primary_then_fallbacks_without_inherited_flags():
    options = {
        "provider": "claude",
        "prompt": "P",
        "model": "m",
        "fallback": [{"provider": "codex"}],
    }
    first, second = tries(options)
    assert first == {"provider": "claude", "prompt": "P", "model": "m"}
    assert second == {"provider": "codex", "prompt": "P", "stdin": None}


# --- what validate knows of the real CLIs (docs/providers.md) ---------------------------------


def said(text: str) -> list[str]:
    """Every error and warning, as LINE:SEVERITY:PATH: MESSAGE."""
    try:
        issues = load_text(text).warnings
    except DagError as error:
        issues = error.issues
    return [f"{i.line}:{i.severity}:{i.path}: {i.message}" for i in issues]


def test_deepseek_takes_no_options_and_codex_full_auto_is_a_warning():
    found = said(
        """
        steps:
          - action: harness.run
            with:
              provider: deepseek
              prompt: hi
              model: x
              fallback:
                - {provider: codex, full_auto: true}
        """
    )
    assert found == [
        "6:error:steps[0].with.model: deepseek's CLI (dsh --profile headless --) accepts no "
        'options, so "model" cannot be passed to it',
        "8:warning:steps[0].with.fallback[0].full_auto: codex removed --full-auto in 0.147, and "
        "the current CLI stops at it; use sandbox: workspace-write (codex exec never asks for "
        "approval)",
    ]
    assert render(BUILTIN["deepseek"], {"prompt": "P", "model": "x"}).argv[-2:] == ("--", "P")


def test_root_harness_keys_are_checked_for_the_provider_each_step_uses():
    found = said(
        """
        harness: {provider: claude, model: sonnet, usage: true}
        steps:
          - action: harness.run
            with: {provider: deepseek, prompt: hi}
          - action: harness.run
            with: {provider: aider, prompt: hi}
          - action: harness.run
            with: {prompt: hi}
        """
    )
    assert [f.split(": ")[0] for f in found] == [
        "1:error:harness.model",  # deepseek takes none
        "1:error:harness.usage",  # deepseek: no usage
        "1:error:harness.usage",  # aider: no usage
    ]


@pytest.mark.parametrize(
    ("value", "ok"), [("true", True), (False, True), ("yes", False), (1, False)]
)
def test_usage_is_true_or_false(value, ok):
    found = said(
        f"steps:\n  - action: harness.run\n    with: {{provider: claude, prompt: hi, usage: {value!r}}}\n"
    )
    assert (found == []) == ok, found


def test_usage_is_refused_for_a_custom_harness():
    found = said(
        """
        harnesses:
          mine: {binary: mine}
        steps:
          - action: harness.run
            with: {provider: mine, prompt: hi, usage: true}
        """
    )
    assert found == [
        "5:error:steps[0].with.usage: usage: true works with the built-in claude, codex, gemini, not with mine"
    ]


def test_the_journal_hides_only_the_prompts_own_word():
    from dagbox.engine.journal import hide_prompt

    joined = hide_prompt(render(BUILTIN["gemini"], {"prompt": "-x", "model": "-x"}))
    assert joined[:3] == ["gemini", "--model", "-x"]  # a value like the prompt stays
    assert joined[-1].startswith("--prompt=<prompt: 2 chars, sha256 ")
    ended = hide_prompt(render(BUILTIN["claude"], {"prompt": "--"}))
    assert ended[:3] == ["claude", "-p", "--"] and ended[3].startswith("<prompt: 2 chars")


def test_fallbacks_inherit_usage():
    chain = tries({"prompt": "P", "usage": True, "fallback": [{"provider": "codex"}]})
    assert chain[1] == {"prompt": "P", "stdin": None, "usage": True, "provider": "codex"}
