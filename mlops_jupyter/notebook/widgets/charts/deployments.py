"""Charts of the deploy panel: the traffic split by environment and the version graph."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlops_jupyter.notebook.widgets.charts.common import GRAY, GREEN, WIDTH, _empty, ink

if TYPE_CHECKING:  # pragma: no cover
    import altair as alt


def traffic_split(deployments: Sequence[Mapping[str, Any]], *, width: int = WIDTH) -> alt.Chart:
    """What serves in each environment: a stacked bar per environment, a segment per version.

    Args:
        deployments: ``list_deployments()`` items of one model (``environment``,
            ``traffic`` version -> %, ``status``).
    """
    import altair as alt
    import pandas as pd

    rows = []
    for d in deployments:
        for version, pct in (d.get("traffic") or {}).items():
            rows.append(
                {
                    "environment": f"{d['environment']} ({d.get('status', '')})",
                    "version": str(version),
                    "percent": int(pct),
                    "label": f"{version} · {int(pct)}%",
                }
            )
    rank = {v: i for i, v in enumerate(sorted({r["version"] for r in rows}))}
    for r in rows:
        r["rank"] = rank[r["version"]]  # segments stacked in version order
    if not rows:
        return _empty("not deployed anywhere yet")
    df = pd.DataFrame(rows)
    base = alt.Chart(df).encode(
        y=alt.Y("environment:N", title=None, axis=alt.Axis(labelLimit=200)),
        x=alt.X("percent:Q", stack="zero", title="traffic (%)", scale=alt.Scale(domain=[0, 100])),
        tooltip=["environment:N", "version:N", "percent:Q"],
    )
    bars = base.mark_bar().encode(
        color=alt.Color("version:N", legend=alt.Legend(title="version")), order=alt.Order("rank:Q")
    )
    text = base.mark_text(color="white", fontWeight="bold").encode(
        x=alt.X("percent:Q", stack="zero", bandPosition=0.5), text="label:N", order=alt.Order("rank:Q")
    )
    return alt.layer(bars, text).properties(
        title="traffic by environment", width=width, height=max(40, 32 * df["environment"].nunique())
    )


def version_lineage(
    lineage: Mapping[str, Any], live: Mapping[str, Mapping[str, int]] | None = None, *, width: int = WIDTH
) -> alt.Chart:
    """The version graph: a node per version in creation order, an edge to each version
    from its parent (a new lane when a parent has several children), live ones marked.

    Args:
        lineage: ``get_lineage(model_id)`` (``versions`` with ``version`` and ``parent``).
        live: environment -> {version: %}, to mark what serves where.
    """
    import altair as alt
    import pandas as pd

    versions = list(lineage.get("versions") or [])
    if not versions:
        return _empty("no versions yet")
    serving: dict[str, list[str]] = {}
    for env, table in (live or {}).items():
        for v, pct in table.items():
            serving.setdefault(str(v), []).append(f"{env} {pct}%")
    for alias, v in (lineage.get("live") or {}).items():
        if v:
            serving.setdefault(str(v), []).append(f"@{alias}")
    lane: dict[str, int] = {}
    used_children: dict[str, int] = {}
    next_lane = 0
    nodes = []
    for i, v in enumerate(versions):
        name, parent = str(v["version"]), v.get("parent")
        if parent in lane:
            k = used_children.get(parent, 0)
            used_children[parent] = k + 1
            if k == 0:
                lane[name] = lane[parent]
            else:
                next_lane += 1
                lane[name] = next_lane
        else:
            lane[name] = next_lane if i == 0 else next_lane + 1
            next_lane = lane[name]
        where = serving.get(name, [])
        nodes.append(
            {
                "version": name,
                "x": i,
                "y": lane[name],
                "parent": parent or "",
                "created": str(v.get("created_at") or ""),
                "live": ", ".join(where),
                "state": "live" if where else "idle",
            }
        )
    ndf = pd.DataFrame(nodes)
    pos = {n["version"]: (n["x"], n["y"]) for n in nodes}
    edges = pd.DataFrame(
        [
            {"x": pos[n["parent"]][0], "y": pos[n["parent"]][1], "x2": n["x"], "y2": n["y"]}
            for n in nodes
            if n["parent"] in pos
        ],
        columns=["x", "y", "x2", "y2"],
    )
    xs = alt.Scale(domain=[-0.5, max(0.5, len(nodes) - 0.5)])
    ys = alt.Scale(domain=[-0.6, max(0.6, ndf["y"].max() + 0.6)], reverse=True)
    layers = []
    if len(edges):
        layers.append(
            alt.Chart(edges)
            .mark_rule(color="#888", strokeWidth=2)
            .encode(x=alt.X("x:Q", axis=None, scale=xs), y=alt.Y("y:Q", axis=None, scale=ys), x2="x2:Q", y2="y2:Q")
        )
    nodes_chart = alt.Chart(ndf).encode(
        x=alt.X("x:Q", axis=None, scale=xs),
        y=alt.Y("y:Q", axis=None, scale=ys),
        tooltip=["version:N", "parent:N", "created:N", "live:N"],
    )
    layers.append(
        nodes_chart.mark_circle(size=260, opacity=1).encode(
            color=alt.Color(
                "state:N",
                scale=alt.Scale(domain=["live", "idle"], range=[GREEN, GRAY]),
                legend=alt.Legend(title=None, orient="bottom"),
            )
        )
    )
    layers.append(nodes_chart.mark_text(dy=-16, fontWeight="bold").encode(text="version:N"))
    layers.append(nodes_chart.mark_text(dy=18, fontSize=10, color=ink("muted")).encode(text="live:N"))
    return alt.layer(*layers).properties(
        title=f"versions of {lineage.get('model_id', '')} (parent → child)",
        width=width,
        height=70 + 50 * int(ndf["y"].max()),
    )
