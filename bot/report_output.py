"""How a report leaves the program: a table for the terminal, a CSV file, a PNG chart.

Kept apart from bot/reports.py (which decides what may be shown) so the figures are
computed, and hidden, in one place whatever the format. matplotlib is imported only when
a chart is asked for: it takes a second to load.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from bot.reports import ALL, Row

HIDDEN = "—"
# Labels for the chart in the coordinator's language; English wherever no installed font
# has the glyphs (matplotlib would draw empty boxes).
CHART_LABELS = {
    "en": {
        "title": "Members' wellbeing",
        "health": "Mean health (1 = very poor, 5 = very good)",
        "threat": "Share feeling a threat of being sent back",
        "retreat": "Retreat attendance (people)",
        "hidden": "Missing points: too few members to show",
        ALL: "All members",
        "china": "China",
        "korea": "Korea",
    },
    "ko": {
        "title": "회원 건강 현황",
        "health": "평균 건강 (1 = 매우 나쁨, 5 = 매우 좋음)",
        "threat": "강제송환 위협을 느낀 비율",
        "retreat": "수련회 참석 인원",
        "hidden": "빈 곳: 인원이 적어 표시하지 않음",
        ALL: "전체 회원",
        "china": "중국",
        "korea": "한국",
    },
    "zh": {
        "title": "会员身心状况",
        "health": "平均健康 (1 = 很差, 5 = 很好)",
        "threat": "感到遣返威胁的比例",
        "retreat": "静修会出席人数",
        "hidden": "空缺: 人数太少, 不显示",
        ALL: "全部会员",
        "china": "中国",
        "korea": "韩国",
    },
}
# Black and white print: parts differ by marker, line and hatching, never by colour alone.
STYLES = (("o", "-", "", "0.2"), ("s", "--", "///", "0.55"), ("^", ":", "...", "0.85"))


def table(rows: Sequence[Row], digits: int = 2) -> str:
    """The report as the terminal shows it, means to ``digits`` places (as rounded); a dash
    where a figure is hidden."""
    header = (
        f"{'period':<8} {'group':<12} {'members':>7} {'check-ins':>9} "
        f"{'mean health (sd)':>16} {'threat':>6} {'retreat':>7}"
    )
    lines = [header]
    for row in rows:
        health = (
            HIDDEN
            if row.mean_health is None
            else f"{row.mean_health:.{digits}f} ({row.health_spread:.{digits}f})"
            + ("*" if row.estimated else "")
        )
        lines.append(
            f"{row.period:<8} {row.part:<12.12} {_text(row.members):>7} "
            f"{_text(row.checkins):>9} {health:>16} {_share(row.threat_share):>6} "
            f"{_text(row.retreat_people):>7}"
        )
    return "\n".join(lines)


def _text(value: int | None) -> str:
    return HIDDEN if value is None else f"{value:,}"


def _share(value: float | None) -> str:
    return HIDDEN if value is None else f"{value:.0%}"


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """One line per row; an empty cell where a figure is hidden."""
    with path.open("w", newline="", encoding="utf-8") as file:
        out = csv.writer(file)
        out.writerow(
            [
                "period",
                "members_of",
                "members",
                "checkins",
                "mean_health",
                "health_sd",
                "threat_share",
                "retreat_people",
            ]
        )
        for row in rows:
            out.writerow(
                [
                    row.period,
                    row.part,
                    row.members,
                    row.checkins,
                    row.mean_health,
                    row.health_spread,
                    row.threat_share,
                    row.retreat_people,
                ]
            )


# The regional cut of a pan-CJK font each language reads best in.
REGION_CUT = {"ko": "KR", "zh": "SC"}


@cache
def cjk_font(language: str = "ko") -> str | None:
    """The name of an installed font with both Hangul and Chinese glyphs, if any: a sans
    serif in the language's regional cut where there is a choice."""
    from matplotlib import font_manager, ft2font

    covers: dict[str, bool] = {}
    found = []
    for entry in font_manager.fontManager.ttflist:
        # matplotlib's own last-resort font claims every character and draws boxes.
        if entry.name.startswith("Last Resort"):
            continue
        if entry.fname not in covers:
            try:
                charmap = ft2font.FT2Font(entry.fname).get_charmap()
            except (OSError, RuntimeError):
                charmap = {}
            covers[entry.fname] = ord("한") in charmap and ord("中") in charmap
        if covers[entry.fname]:
            found.append(entry.name)
    cut = REGION_CUT.get(language, "")

    def rank(name: str) -> tuple[bool, bool, str]:
        return ("Serif" in name or "Mono" in name, not name.endswith(cut), name)

    return min(found, key=rank, default=None)


def chart_language(language: str) -> tuple[str, str | None]:
    """The labels' language and font: the coordinator's where a font can draw it."""
    if language == "en":
        return "en", None
    font = cjk_font(language)
    return (language, font) if font is not None else ("en", None)


def write_chart(rows: Sequence[Row], path: Path, language: str, font: str | None) -> None:
    """Mean health with its spread, the share feeling a threat and retreat attendance,
    one panel each, with matplotlib's object API on the Agg canvas (no display needed)."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = CHART_LABELS[language]
    periods = sorted({row.period for row in rows})
    x = {period: n for n, period in enumerate(periods)}
    parts = list(dict.fromkeys(row.part for row in rows))
    # The font stays within this chart: rc_context restores matplotlib's settings after.
    with rc_context({"font.family": [font, "DejaVu Sans"] if font else ["DejaVu Sans"]}):
        figure = Figure(figsize=(9, 9), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        health, threat, retreat = figure.subplots(3, 1, sharex=True)
        width = 0.8 / len(parts)
        for n, part in enumerate(parts):
            marker, line, hatch, grey = STYLES[n % len(STYLES)]
            mine = [row for row in rows if row.part == part]
            name = labels.get(part, part)
            shown = [row for row in mine if row.mean_health is not None]
            health.errorbar(
                [x[r.period] for r in shown],
                [r.mean_health or 0.0 for r in shown],
                yerr=[r.health_spread or 0.0 for r in shown],
                marker=marker,
                linestyle=line,
                color="black",
                capsize=3,
                label=name,
            )
            for r in shown:
                health.annotate(
                    f"{r.mean_health:.2f}",
                    (x[r.period], r.mean_health or 0.0),
                    xytext=(6, 4),
                    textcoords="offset points",
                )
            shares = [row for row in mine if row.threat_share is not None]
            bars = threat.bar(
                [x[r.period] - 0.4 + width * (n + 0.5) for r in shares],
                [100 * (r.threat_share or 0.0) for r in shares],
                width=width,
                color=grey,
                edgecolor="black",
                hatch=hatch,
                label=name,
            )
            # Printed values: a grey bar's height is hard to read off a photocopy.
            threat.bar_label(bars, fmt="{:.0f} %", padding=2)
        attended = [row for row in rows if row.part == ALL and row.retreat_people is not None]
        people = retreat.bar(
            [x[r.period] for r in attended],
            [r.retreat_people or 0 for r in attended],
            color="0.6",
            edgecolor="black",
        )
        retreat.bar_label(people, padding=2)
        retreat.margins(y=0.15)
        figure.suptitle(labels["title"])
        health.set_ylim(0.5, 5.5)
        threat.set_ylim(0, 110)
        threat.yaxis.set_major_formatter("{x:.0f} %")
        for ax, key in ((health, "health"), (threat, "threat"), (retreat, "retreat")):
            ax.set_title(labels[key], loc="left")
            ax.grid(axis="y", color="0.85")
        for ax in (health, threat):
            if len(parts) > 1:
                ax.legend(loc="upper left", frameon=False)
        retreat.set_xticks(range(len(periods)), periods)
        if any(row.mean_health is None or row.threat_share is None for row in rows):
            retreat.set_xlabel(labels["hidden"])
        figure.savefig(path, format="png")
