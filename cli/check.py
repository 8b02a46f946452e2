"""`tiergate check POLICY_DIR`: validate a policy set and summarise it."""

from __future__ import annotations

import json

from .common import add_error_format, load_or_report


def register(subparsers) -> None:
    parser = subparsers.add_parser("check", help="validate a policy set; print a summary or the errors")
    parser.add_argument("policy_dir", metavar="POLICY_DIR")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_error_format(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    policy = load_or_report(args.policy_dir, args.error_format)
    if policy is None:
        return 1
    effects = {"permit": 0, "deny": 0, "obligation": 0}
    for rule in policy.rules:
        effects[rule.effect] += 1
    summary = {
        "policy_dir": args.policy_dir,
        "revision": policy.revision,
        "files": len(policy.sources),
        "rules": len(policy.rules),
        "permit_rules": effects["permit"],
        "deny_rules": effects["deny"],
        "obligation_rules": effects["obligation"],
        "grants": len(policy.grants),
        "datasets": len(policy.catalog.datasets),
        "uncatalogued": policy.catalog.uncatalogued,
        "tree_nodes": policy.tree.node_count,
    }
    if args.format == "json":
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print(f"ok: {summary['rules']} rules ({effects['permit']} permit, {effects['deny']} deny, "
              f"{effects['obligation']} obligation), {summary['grants']} grants, "
              f"{summary['datasets']} catalogued datasets (an uncatalogued one is "
              f"{'refused' if policy.catalog.uncatalogued == 'refuse' else 'decided as stated'}) "
              f"in {summary['files']} files")
        print(f"revision: {policy.revision}")
    return 0
