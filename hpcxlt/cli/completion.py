"""`hpcxlt completion bash|zsh`: a shell completion script, made from the command line's own parser.

    eval "$(hpcxlt completion bash)"      # in ~/.bashrc
    eval "$(hpcxlt completion zsh)"       # in ~/.zshrc (bash completion through bashcompinit)

It completes subcommands, each subcommand's options, and file names for everything else (configs, site
profiles, run directories). Made from `build_parser()`, so a new option completes without an edit here.
"""

from __future__ import annotations

import argparse
import shlex

from hpcxlt.cli import build_parser


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "completion",
        help='print a bash or zsh completion script (eval "$(hpcxlt completion bash)")',
        description="Print a shell completion script for hpcxlt: subcommands, their options, file names.",
    )
    parser.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")
    parser.set_defaults(func=run)


def _options(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Subcommand -> its option strings."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        name: sorted(o for action in command._actions for o in action.option_strings)
        for name, command in sub.choices.items()
    }


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell`."""
    options = _options(parser)
    cases = "\n".join(
        f"        {shlex.quote(name)}) opts={shlex.quote(' '.join(opts))} ;;" for name, opts in options.items()
    )
    body = f"""_hpcxlt_complete() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" command="${{COMP_WORDS[1]}}" opts=""
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W {shlex.quote(" ".join(options) + " --help --version")} -- "$cur"))
        return
    fi
    case "$command" in
{cases}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _hpcxlt_complete hpcxlt
"""
    if shell == "zsh":
        body = "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body


def run(args: argparse.Namespace) -> int:

    print(script(build_parser(), args.shell), end="")
    return 0
