"""One self-contained HTML page about a policy set: rules, decision tree, coverage matrix, grants.

Inline CSS, SVG and one small inline script; no external assets, no network, so the page can
be mailed, archived with a review, or opened offline. Rules, catalog, matrix and grants are
plain HTML (readable without the script). The decision tree is a DAG of thousands of nodes: it
is embedded as compact data (`tree_data`) and drawn level by level as its `<details>` open,
which keeps the page small (under 200 KB for the shipped set) and quick to open.
"""

from __future__ import annotations

from html import escape

from tiergate.engine import PolicySet
from tiergate.engine.analysis import is_leaf
from tiergate.engine.timeutil import format_instant, now_micros

from .matrix import coverage_matrix

OPEN_LEVELS = 2
DAY = 86_400_000_000

CSS = """
body{font-family:system-ui,"Noto Sans CJK SC","PingFang SC",sans-serif;margin:2em;color:#222}
h1,h2{border-bottom:1px solid #ccc;padding-bottom:.2em} code{background:#f4f4f4;padding:0 .2em}
table{border-collapse:collapse;margin:.5em 0 1.5em} th,td{border:1px solid #ccc;padding:.25em .5em;
vertical-align:top;font-size:.9em} th{background:#f0f0f0}
.permit{color:#11632b}.deny{color:#a11}.obligation{color:#555}
td.P{background:#c8f0c8}td.G{background:#e4f6c0}td.g{background:#fff4c0}td.o{background:#e8e4f8}td.N{background:#f6d0d0}
details{margin-left:1.2em} summary{cursor:pointer} .leaf{margin-left:1.2em;font-size:.9em}
.muted{color:#777} svg text{font-size:12px;font-family:inherit}
"""


def render_report(policy: PolicySet, *, now: int | None = None, title: str = "policy") -> str:
    now = now_micros() if now is None else now
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>Tiergate 策略报告 policy report — {escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>策略报告 Policy report: <code>{escape(title)}</code></h1>",
        f'<p id="summary">修订 revision <code>{escape(policy.revision)}</code> · '
        f"{len(policy.rules)} 条规则 rules · {len(policy.grants)} 项授权 grants · "
        f"决策树 {policy.tree.node_count} 个节点 tree nodes · 报告时间 as of "
        f"{escape(format_instant(now, 480))}</p>",
        _rules(policy),
        _catalog(policy),
        _matrix(policy, now),
        _timeline(policy, now),
        _tree(policy),
        "</body></html>",
    ]
    return "\n".join(parts)


def _rules(policy: PolicySet) -> str:
    rows = []
    for rule in policy.rules:
        effect = "deny otherwise" if rule.fallback else rule.effect
        rows.append(
            f'<tr id="rule-{escape(rule.id)}" class="rule"><td><code>{escape(rule.id)}</code></td>'
            f'<td class="{rule.effect}">{escape(effect)}</td><td>{escape(rule.citation)}</td>'
            f"<td>{escape(rule.message_zh)}<br><span class=muted>{escape(rule.message_en)}</span>"
            "</td></tr>")
    return ('<h2 id="rules">规则 Rules</h2><table><tr><th>规则 rule</th><th>效果 effect</th>'
            "<th>依据 citation</th><th>说明 message</th></tr>" + "".join(rows) + "</table>")


# A page stays readable: a large catalog is summarised past this many rows.
CATALOG_ROWS = 500


def _catalog(policy: PolicySet) -> str:
    catalog = policy.catalog
    if not catalog.exists:
        return ('<h2 id="catalog">数据资源目录 Catalog</h2><p>未声明数据集：按请求所述属性决策 '
                "no datasets are declared: requests are decided on the attributes they state.</p>")
    uncatalogued = ("拒绝 refused" if catalog.uncatalogued == "refuse"
                    else "按请求所述属性决策 decided as stated")
    datasets = sorted(catalog.datasets.values(), key=lambda d: d.id)
    rows = [f'<tr id="dataset-{escape(d.id)}" class="dataset"><td><code>{escape(d.id)}</code></td>'
            f"<td>{escape(d.label)}</td><td>{escape(_label(policy, 'resource.catalog_class', d.catalog_class))}</td>"
            f"<td>{escape(_label(policy, 'resource.tier', d.tier))}</td>"
            f"<td>{'是 yes' if d.personal else '否 no'}</td><td>{escape(d.owner_org_id or '—')}</td>"
            f"<td>{'是 yes' if d.shareable else '否 no'}</td></tr>"
            for d in datasets[:CATALOG_ROWS]]
    more = (f"<p class=muted>另有 {len(datasets) - CATALOG_ROWS} 个数据集未列出 "
            f"and {len(datasets) - CATALOG_ROWS} more datasets not shown.</p>"
            if len(datasets) > CATALOG_ROWS else "")
    return (f'<h2 id="catalog">数据资源目录 Catalog</h2><p>{len(datasets)} 个数据集 datasets · '
            f"目录外的数据集 an uncatalogued dataset: {uncatalogued}</p>"
            "<table><tr><th>数据集 dataset</th><th>名称 label</th><th>类别 class</th>"
            "<th>开放类型 tier</th><th>个人信息 personal</th><th>生产单位 owner</th>"
            "<th>可共享 shareable</th></tr>" + "".join(rows) + "</table>" + more)


def _label(policy: PolicySet, attribute: str, value) -> str:
    vocabulary = policy.vocabularies.get(attribute)
    if vocabulary is not None and value in vocabulary.labels:
        return f"{value} {vocabulary.labels[value]}"
    return "true" if value is True else "false" if value is False else str(value)


def _matrix(policy: PolicySet, now: int) -> str:
    matrix = coverage_matrix(policy, now=now)
    out = ['<h2 id="matrix">覆盖矩阵 Coverage matrix</h2>',
           "<p>P 无需授权即可许可 permitted without a grant · G 凭现有授权许可 permitted with a "
           "present grant · p 仅在时间或文本条件下 only under a time or text test · o 仅限数据所属单位"
           "本身 only for the data's own owner · g 需新授权 needs a grant not yet written · "
           "N 一律拒绝 always denied. "
           "悬停查看拒绝规则 hover a cell for the rules that deny.</p>"]
    for tier in matrix.tiers:
        out.append(f'<h3>{escape(_label(policy, "resource.tier", tier))}</h3>')
        out.append(f'<table class="matrix" data-tier="{escape(tier)}"><tr><th>目录类别 class \\ '
                   "机构类型 org type</th>"
                   + "".join(f'<th title="{escape(_label(policy, "subject.org_type", o))}">'
                             f"{escape(o)}<br>{escape(policy.vocabularies['subject.org_type'].labels[o])}</th>"
                             for o in matrix.org_types) + "</tr>")
        for catalog_class in matrix.classes:
            cells = []
            for org in matrix.org_types:
                cell = matrix.cell(catalog_class, tier, org)
                mark = cell.mark if cell.mark != "·" else "N"
                denied = ", ".join(cell.denied_by(matrix.fallback))
                permitted = ", ".join(cell.permitted_by + cell.grants)
                tip = (f"许可 permitted by: {permitted}; " if permitted else "") + \
                    f"拒绝 denied by: {denied or '-'}"
                cells.append(f'<td class="{mark}" data-class="{escape(catalog_class)}" '
                             f'data-org="{escape(org)}" title="{escape(tip)}">{mark}</td>')
            out.append(f"<tr><th>{escape(_label(policy, 'resource.catalog_class', catalog_class))}"
                       f"</th>{''.join(cells)}</tr>")
        out.append("</table>")
    return "\n".join(out)


def _timeline(policy: PolicySet, now: int) -> str:
    grants = sorted(policy.grants, key=lambda g: (g.expires, g.id))
    head = '<h2 id="grants">授权时间线 Grants by expiry</h2>'
    if not grants:
        return head + "<p>没有授权 no grants</p>"
    start = min(now, grants[0].expires) - 60 * DAY
    end = max(now, grants[-1].expires) + 60 * DAY
    width, left, row = 900, 330, 26
    height = 40 + row * len(grants)

    def x(instant: int) -> float:
        return left + (width - left - 20) * (instant - start) / (end - start)

    shapes = []
    for i, grant in enumerate(grants):
        y = 30 + i * row
        expired = grant.expires <= now
        color = "#bbb" if expired else "#4a8"
        state = "已过期 expired" if expired else "有效 valid"
        shapes.append(
            f'<g class="grant" data-grant="{escape(grant.id)}" data-expired="{str(expired).lower()}">'
            f"<title>{escape(grant.id)} → {escape(grant.grantee)}: {state}, expires "
            f"{escape(grant.expires_text)}; {escape(', '.join(sorted(grant.tiers)))}; "
            f"{escape(', '.join(sorted(grant.catalog)))}</title>"
            f'<text x="4" y="{y + 13}">{escape(grant.id)} · {escape(grant.grantee)}'
            f'{" (已过期 expired)" if expired else ""}</text>'
            f'<rect x="{left}" y="{y}" width="{max(1.0, x(grant.expires) - left):.1f}" height="16" '
            f'fill="{color}"/>'
            f'<text x="{x(grant.expires) + 4:.1f}" y="{y + 13}">{escape(grant.expires_text[:10])}</text></g>')
    today = x(now)
    shapes.append(f'<line id="today" x1="{today:.1f}" y1="12" x2="{today:.1f}" y2="{height - 4}" '
                  'stroke="#c00" stroke-dasharray="4 3"/>'
                  f'<text x="{today + 3:.1f}" y="12" fill="#c00">今天 today '
                  f"{escape(format_instant(now, 480)[:10])}</text>")
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="grants timeline">{"".join(shapes)}</svg>')
    rows = "".join(
        f'<tr class="grant-row" id="grant-{escape(g.id)}"><td><code>{escape(g.id)}</code></td>'
        f"<td>{escape(g.grantee)}</td><td>{escape(', '.join(sorted(g.tiers)))}</td>"
        f"<td>{escape(', '.join(sorted(g.catalog)))}</td>"
        f"<td>{escape(', '.join(sorted(g.purposes)))}</td><td>{escape(', '.join(sorted(g.actions)))}</td>"
        f"<td>{escape(', '.join(sorted(g.approvers)))}</td><td>{escape(g.expires_text)}"
        f"{' <b>已过期 expired</b>' if g.expires <= now else ''}</td></tr>" for g in grants)
    return (head + svg + "<table><tr><th>授权 grant</th><th>被授权方 grantee</th><th>级别 tiers</th>"
            "<th>类别 classes</th><th>目的 purposes</th><th>操作 actions</th><th>审批 approved by</th>"
            "<th>到期 expires</th></tr>" + rows + "</table>")


def tree_data(policy: PolicySet) -> dict:
    """The decision tree as compact data for the page's script to draw on demand.

    The tree is a DAG of a few thousand nodes; drawn as nested elements it made a page of a
    megabyte that opened slowly. Here every node is listed once: a branch is
    [attribute index, values bitmask, child, values bitmask, child, ...] (bit i = the i-th value
    of that attribute's domain in `domains`), a leaf [[denies], [permits], [obligers]] with
    each rule as 2 * rule index + 1 when it still has residual tests ("?"). Equal leaves are one.
    """
    attributes = list(policy.tree.order)
    domains = {a: sorted(policy.checked.domain(a), key=str) for a in attributes}
    rule_index = {rule.id: i for i, rule in enumerate(policy.rules)}
    nodes: list = []
    seen: dict[int, int] = {}
    leaves: dict[tuple, int] = {}
    stack = [(policy.tree.root, None)]  # walked without recursion: the tree may be deep

    def place(node) -> int:
        if is_leaf(node):
            key = tuple(tuple(rule_index[c.rule.id] * 2 + (c.checks is not None) for c in group)
                        for group in (node.denies, node.permits, node.obligers))
            if key not in leaves:
                leaves[key] = len(nodes)
                nodes.append([list(k) for k in key])
            return leaves[key]
        if id(node) not in seen:
            seen[id(node)] = len(nodes)
            nodes.append(None)
            stack.append((node, seen[id(node)]))
        return seen[id(node)]

    root = place(policy.tree.root)
    stack.pop(0)
    while stack:
        node, index = stack.pop()
        domain = domains[node.attribute]
        by_child: dict[int, tuple] = {}
        for value, child in node.children.items():
            by_child.setdefault(id(child), (child, []))[1].append(value)
        entry = [attributes.index(node.attribute)]
        for child, values in by_child.values():
            entry += [sum(1 << domain.index(v) for v in values), place(child)]
        nodes[index] = entry
    return {"root": root, "attributes": attributes,
            "domains": [[_label(policy, a, v) for v in domains[a]] for a in attributes],
            "rules": [[r.id, "deny" if r.fallback else r.effect] for r in policy.rules],
            "nodes": nodes, "open": OPEN_LEVELS}


# Draws a node when its <details> is first opened; the top OPEN_LEVELS are open from the start.
TREE_SCRIPT = """
(function(){
var T=JSON.parse(document.getElementById('tree-data').textContent);
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;
if(text!==undefined)e.textContent=text;return e;}
function leaf(n){var d=el('div','leaf'),parts=[['拒绝 deny','deny'],['许可 permit','permit'],
['义务 obligations','obligation']],any=false;
parts.forEach(function(p,i){if(!n[i].length)return;any=true;
var s=el('span',p[1],p[0]+': '+n[i].map(function(r){return T.rules[r>>1][0]+(r&1?'?':'');}).join(', '));
if(d.childNodes.length)d.appendChild(document.createTextNode(' · '));d.appendChild(s);});
if(!any)d.appendChild(el('span','deny','默认拒绝 default deny'));return d;}
function values(a,mask){var out=[];T.domains[a].forEach(function(v,i){if(mask&(1<<i))out.push(v);});
return out.join(', ');}
function node(i,depth){var n=T.nodes[i];if(typeof n[0]!=='number')return leaf(n);
var d=el('details','branch');d.id='node-'+i;var s=el('summary');
s.appendChild(document.createTextNode('#'+i+' '));s.appendChild(el('code',null,T.attributes[n[0]]));
d.appendChild(s);var drawn=false;
function draw(){if(drawn)return;drawn=true;for(var k=1;k<n.length;k+=2){
var c=el('details');c.appendChild(el('summary',null,'= '+values(n[0],n[k])));
(function(c,child){var filled=false;function fill(){if(filled)return;filled=true;
c.appendChild(node(child,depth+1));}
c.addEventListener('toggle',function(){if(c.open)fill();});
if(depth+1<T.open){c.open=true;fill();}})(c,n[k+1]);d.appendChild(c);}}
d.addEventListener('toggle',function(){if(d.open)draw();});
if(depth<T.open){d.open=true;draw();}return d;}
document.getElementById('tree-root').appendChild(node(T.root,0));
})();
"""


def _tree(policy: PolicySet) -> str:
    import json

    data = json.dumps(tree_data(policy), ensure_ascii=False, separators=(",", ":"))
    data = data.replace("</", "<\\/")  # the data cannot end its <script> element
    return ('<h2 id="tree">决策树 Decision tree</h2><p>分支顺序 branch order: '
            + escape(" → ".join(policy.tree.order)) + f". {policy.tree.node_count} 个节点 nodes; "
            "展开时绘制 each level is drawn when opened; 相同子树编号相同 a shared subtree keeps "
            "its number; “?” 表示还需在叶子处检验时间、文本或授权 marks a rule with residual "
            'tests (time, texts, grant).</p><div id="tree-root"></div>'
            f'<script type="application/json" id="tree-data">{data}</script>'
            f"<script>{TREE_SCRIPT}</script>")
