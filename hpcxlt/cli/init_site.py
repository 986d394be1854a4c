"""`hpcxlt init-site OUT.yaml [--name NAME] [--force]`: a commented site profile from sinfo and sacctmgr."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "init-site",
        help="write a commented site profile from what sinfo and sacctmgr say (asks nothing)",
        description="Read the cluster's partitions, GPUs, CPUs and time limits (sinfo) and your accounts and QOS "
        "(sacctmgr), and write a commented site profile to OUT.yaml; check it with `hpcxlt doctor --site OUT.yaml`.",
    )
    parser.add_argument("out", metavar="OUT.yaml", help="the profile to write")
    parser.add_argument("--name", default=None, help="the site's name (default: the file name)")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.io import write_text_atomic
    from hpcxlt.launch.site.discover import discover, profile_text
    from hpcxlt.launch.site.profile import SiteError, parse_site

    out = Path(args.out)
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; pass --force to replace it")
    name = args.name or re.sub(r"[^A-Za-z0-9_.-]+", "-", out.stem) or "my-site"
    text = profile_text(discover(), name)
    import yaml

    try:
        parse_site(yaml.safe_load(text), str(out))  # what it writes loads as a profile
    except SiteError as err:
        raise UserError(f"the profile made from this cluster does not load ({err}); please report it") from None
    write_text_atomic(out, text)
    print(f"wrote {out}; check it, then `hpcxlt doctor --site {out}`")
    return 0
