"""What every spanscope dashboard shares: the datasource, label variables, alert annotations,
PromQL helpers and small panel builders on top of grafana-foundation-sdk.

A dashboard module only says *what* to show (title, description, unit, query); how a panel is
wired (datasource variable, refIds, legend, exemplars, layout) is decided here, once.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import bargauge as sdk_bargauge
from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk_dashboard
from grafana_foundation_sdk.builders import heatmap as sdk_heatmap
from grafana_foundation_sdk.builders import prometheus as sdk_prometheus
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import statetimeline as sdk_statetimeline
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as m_common
from grafana_foundation_sdk.models import dashboard as m_dashboard
from grafana_foundation_sdk.models import heatmap as m_heatmap
from grafana_foundation_sdk.models import prometheus as m_prometheus

# --------------------------------------------------------------------------------------------
# Datasource, variables, annotations
# --------------------------------------------------------------------------------------------

DATASOURCE_VAR = "datasource"
DS = m_dashboard.DataSourceRef(type_val="prometheus", uid="${" + DATASOURCE_VAR + "}")

@dataclass(frozen=True)
class LabelVariable:
    label: str
    query: str                  # label_values(<selector>, <label>)
    multi: bool = True          # multi-select with "All" (.*)
    default: str | None = None  # preselected value; else All (multi) or the first value


#: Chained on $service: the narrower variables only offer values seen with the chosen services.
LABEL_VARIABLES: dict[str, LabelVariable] = {
    "service": LabelVariable("Service", 'label_values(pipeline_requests_total, service)'),
    "mode": LabelVariable("Mode", 'label_values(pipeline_requests_total{service=~"$service"}, mode)'),
    "tenant": LabelVariable("Tenant", 'label_values(pipeline_tenant_requests_total{service=~"$service"}, tenant)'),
    "cache": LabelVariable("Cache layer", 'label_values(pipeline_cache_requests_total{service=~"$service"}, cache)'),
    "model": LabelVariable("Model", 'label_values(llm_tokens_total{service=~"$service"}, model)'),
    "breaker": LabelVariable("Breaker", 'label_values(circuit_breaker_state{service=~"$service"}, breaker)'),
    "scenario": LabelVariable("What-if scenario", 'label_values(feature_whatif_projected_latency_seconds, scenario)',
                              default="all_optimizations"),
    "job": LabelVariable("Exporter job", 'label_values(spanscope_build_info, job)'),
    "instance": LabelVariable("Exporter instance", 'label_values(spanscope_build_info{job=~"$job"}, instance)'),
    # A/B comparisons make sense for one flag at a time: single select.
    "flag": LabelVariable("Feature flag", 'label_values(feature_flag_evaluations_total{service=~"$service"}, flag)',
                          multi=False),
}

# Label matchers for the variables above, to keep queries short and uniform.
SERVICE = 'service=~"$service"'
MODE = 'mode=~"$mode"'
TENANT = 'tenant=~"$tenant"'
CACHE = 'cache=~"$cache"'
MODEL = 'model=~"$model"'
BREAKER = 'breaker=~"$breaker"'
JOB = 'job=~"$job"'
INSTANCE = 'instance=~"$instance"'
FLAG = 'flag="$flag"'
SCENARIO = 'scenario=~"$scenario"'


def datasource_variable() -> sdk_dashboard.DatasourceVariable:
    return (sdk_dashboard.DatasourceVariable(DATASOURCE_VAR)
            .label("Data source")
            .type("prometheus")
            .description("Prometheus that scrapes the spanscope exporter."))


def label_variable(name: str) -> sdk_dashboard.QueryVariable:
    spec = LABEL_VARIABLES[name]
    var = (sdk_dashboard.QueryVariable(name)
           .label(spec.label)
           .datasource(DS)
           .query(spec.query)
           .refresh(m_dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
           .sort(m_dashboard.VariableSort.ALPHABETICAL_ASC))
    if spec.multi:
        var = var.multi(True).include_all(True).all_value(".*")
    if spec.default is not None:
        value = [spec.default] if spec.multi else spec.default
        var = var.current(m_dashboard.VariableOption(text=value, value=value, selected=True))
    return var


class PrometheusAnnotation(m_dashboard.AnnotationQuery):
    """An annotation query with the Prometheus datasource's own fields (the SDK's generic
    AnnotationQuery only knows `expr`)."""

    def __init__(self, *, title_format: str, tag_keys: str, text_format: str, step: str, **kwargs):
        super().__init__(**kwargs)
        self.title_format = title_format
        self.tag_keys = tag_keys
        self.text_format = text_format
        self.step = step

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload.update(titleFormat=self.title_format, tagKeys=self.tag_keys,
                       textFormat=self.text_format, step=self.step, useValueForTime=False)
        return payload


class _Built(cogbuilder.Builder):
    """Wraps an already built model so that SDK methods taking builders accept it."""

    def __init__(self, resource):
        self._resource = resource

    def build(self):
        return self._resource


def alerts_annotation() -> cogbuilder.Builder:
    """Firing Prometheus alerts (the ALERTS series) as annotations on every time panel."""
    return _Built(PrometheusAnnotation(
        name="Firing alerts",
        datasource=DS,
        enable=True,
        hide=False,
        icon_color="red",
        expr='ALERTS{alertstate="firing"}',
        title_format="{{alertname}}",
        tag_keys="alertname,severity,service",
        text_format="{{alertname}} ({{severity}}) is firing",
        step="30s",
    ))


# --------------------------------------------------------------------------------------------
# PromQL helpers
# --------------------------------------------------------------------------------------------

RATE_INTERVAL = "$__rate_interval"


def sel(metric: str, *matchers: str) -> str:
    """`metric{m1,m2}` (empty matchers dropped)."""
    ms = [m for m in matchers if m]
    return f"{metric}{{{','.join(ms)}}}" if ms else metric


def rate(metric: str, *matchers: str) -> str:
    return f"rate({sel(metric, *matchers)}[{RATE_INTERVAL}])"


def _sum(inner: str, by: Sequence[str]) -> str:
    return agg("sum", inner, by)


def agg(op: str, expr: str, by: Sequence[str] = ()) -> str:
    """`op by (labels) (expr)`: aggregate gauges (max for values every replica repeats)."""
    return f"{op} by ({', '.join(by)}) ({expr})" if by else f"{op}({expr})"


def sum_rate(metric: str, *matchers: str, by: Sequence[str] = ()) -> str:
    return _sum(rate(metric, *matchers), by)


def sum_increase(metric: str, *matchers: str, by: Sequence[str] = ()) -> str:
    return _sum(f"increase({sel(metric, *matchers)}[{RATE_INTERVAL}])", by)


def quantile(q: float, histogram: str, *matchers: str, by: Sequence[str] = ()) -> str:
    """histogram_quantile over a classic histogram family (name without `_bucket`)."""
    return (f"histogram_quantile({q}, sum by ({', '.join(['le', *by])}) "
            f"({rate(histogram + '_bucket', *matchers)}))")


def mean(histogram: str, *matchers: str, by: Sequence[str] = ()) -> str:
    """Mean observation of a histogram family: rate(sum) / rate(count)."""
    return (f"{sum_rate(histogram + '_sum', *matchers, by=by)}\n/\n"
            f"{sum_rate(histogram + '_count', *matchers, by=by)}")


def ratio(numerator: str, denominator: str) -> str:
    return f"(\n  {numerator}\n)\n/\n(\n  {denominator}\n)"


def or_zero(expr: str) -> str:
    """For aggregate (label-less) expressions over rare events: 0 instead of an empty result."""
    return f"({expr} or vector(0))"


# --------------------------------------------------------------------------------------------
# Queries and panels
# --------------------------------------------------------------------------------------------

@dataclass
class Q:
    """One Prometheus query of a panel."""

    expr: str
    legend: str = "__auto"
    exemplar: bool = False   # trace-id exemplars (latency histograms)
    instant: bool = False    # tables and bar gauges: one value per series
    fmt: m_prometheus.PromQueryFormat | None = None


def _targets(queries: Iterable[Q]) -> list[sdk_prometheus.Dataquery]:
    out = []
    for i, q in enumerate(queries):
        t = (sdk_prometheus.Dataquery()
             .ref_id(chr(ord("A") + i))
             .datasource(DS)
             .expr(q.expr)
             .legend_format(q.legend)
             .exemplar(q.exemplar))
        t = t.instant() if q.instant else t.range()
        if q.fmt is not None:
            t = t.format(q.fmt)
        out.append(t)
    return out


def _common(panel, title: str, description: str, unit: str, queries: Sequence[Q], w: int, h: int):
    panel = (panel.title(title).description(description).unit(unit).datasource(DS)
             .span(w).height(h))
    for t in _targets(queries):
        panel = panel.with_target(t)
    return panel


def _legend(calcs: Sequence[str] = ("mean", "max", "lastNotNull")) -> sdk_common.VizLegendOptions:
    return (sdk_common.VizLegendOptions()
            .display_mode(m_common.LegendDisplayMode.TABLE)
            .placement(m_common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(list(calcs)))


def timeseries(title: str, description: str, unit: str, *queries: Q, w: int = 12, h: int = 8,
               stack: bool = False, bars: bool = False, min_val: float | None = None,
               max_val: float | None = None) -> sdk_timeseries.Panel:
    """The workhorse: a time series panel with unit, description and queries."""
    panel = _common(sdk_timeseries.Panel(), title, description, unit, queries, w, h)
    panel = (panel.legend(_legend()).fill_opacity(30 if stack else 10).line_width(1)
             .tooltip(sdk_common.VizTooltipOptions().mode(m_common.TooltipDisplayMode.MULTI)
                      .sort(m_common.SortOrder.DESCENDING)))
    if stack:
        panel = panel.stacking(sdk_common.StackingConfig().mode(m_common.StackingMode.NORMAL))
    if bars:
        panel = panel.draw_style(m_common.GraphDrawStyle.BARS)
    if min_val is not None:
        panel = panel.min(min_val)
    if max_val is not None:
        panel = panel.max(max_val)
    return panel


def thresholds(*steps: tuple[float | None, str]) -> sdk_dashboard.ThresholdsConfig:
    return (sdk_dashboard.ThresholdsConfig()
            .mode(m_dashboard.ThresholdsMode.ABSOLUTE)
            .steps([m_dashboard.Threshold(value=v, color=c) for v, c in steps]))


GREEN_ONLY = ((None, "green"),)


def stat(title: str, description: str, unit: str, *queries: Q, w: int = 6, h: int = 4,
         steps: Sequence[tuple[float | None, str]] = GREEN_ONLY, decimals: int | None = None) -> sdk_stat.Panel:
    """Big numbers (last value) with a sparkline; several queries show side by side."""
    panel = _common(sdk_stat.Panel(), title, description, unit, queries, w, h)
    panel = (panel.graph_mode(m_common.BigValueGraphMode.AREA)
             .color_mode(m_common.BigValueColorMode.VALUE)
             .reduce_options(sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .thresholds(thresholds(*steps)))
    if len(queries) > 1:  # side by side: say which number is which
        panel = panel.text_mode(m_common.BigValueTextMode.VALUE_AND_NAME)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def bargauge(title: str, description: str, unit: str, *queries: Q, w: int = 12, h: int = 8,
             min_val: float | None = 0, max_val: float | None = None) -> sdk_bargauge.Panel:
    """Horizontal bars, one per series, current value: rankings and distributions."""
    panel = _common(sdk_bargauge.Panel(), title, description, unit, queries, w, h)
    panel = (panel.orientation(m_common.VizOrientation.HORIZONTAL)
             .display_mode(m_common.BarGaugeDisplayMode.GRADIENT)
             .reduce_options(sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .thresholds(thresholds(*GREEN_ONLY)))
    if min_val is not None:
        panel = panel.min(min_val)
    if max_val is not None:
        panel = panel.max(max_val)
    return panel


def heatmap(title: str, description: str, unit: str, query: Q, *, w: int = 12, h: int = 8,
            exemplars: bool = False) -> sdk_heatmap.Panel:
    """A pre-bucketed Prometheus histogram (`sum by (le) (increase(..._bucket[...]))`)."""
    query.fmt = m_prometheus.PromQueryFormat.HEATMAP
    query.legend = "{{le}}"
    query.exemplar = exemplars
    panel = _common(sdk_heatmap.Panel(), title, description, unit, [query], w, h)
    return (panel.calculate(False)
            .y_axis(sdk_heatmap.YAxisConfig().unit(unit))
            .rows_frame(sdk_heatmap.RowsHeatmapOptions().layout(m_common.HeatmapCellLayout.LE))
            .color(sdk_heatmap.HeatmapColorOptions().mode(m_heatmap.HeatmapColorMode.SCHEME)
                   .scheme("Oranges").scale(m_heatmap.HeatmapColorScale.EXPONENTIAL).exponent(0.5)
                   .steps(64).fill("dark-orange"))
            .cell_gap(1)
            .show_y_histogram()
            .exemplars_color("rgba(255,0,255,0.7)"))


def table(title: str, description: str, unit: str, *queries: Q, w: int = 12, h: int = 8,
          columns: dict[str, str] | None = None, units: dict[str, str] | None = None,
          hide: Sequence[str] = ("Time",)) -> sdk_table.Panel:
    """Instant queries joined into one table: `columns` renames "Value #A"… to readable names,
    `units` sets a unit per (renamed) column."""
    for q in queries:
        q.instant = True
        q.fmt = m_prometheus.PromQueryFormat.TABLE
    panel = _common(sdk_table.Panel(), title, description, unit, queries, w, h).show_header(True)
    panel = panel.with_transformation(m_dashboard.DataTransformerConfig(id_val="merge", options={}))
    panel = panel.with_transformation(m_dashboard.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": {name: True for name in hide},
                 "renameByName": dict(columns or {})}))
    for column, column_unit in (units or {}).items():
        panel = panel.override_by_name(column, [m_dashboard.DynamicConfigValue(id_val="unit", value=column_unit)])
    return panel


def state_timeline(title: str, description: str, query: Q, states: dict[int, tuple[str, str]], *,
                   w: int = 24, h: int = 8) -> sdk_statetimeline.Panel:
    """States encoded as numbers (value -> (text, color))."""
    panel = _common(sdk_statetimeline.Panel(), title, description, "none", [query], w, h)
    mapping = m_dashboard.ValueMap(options={
        str(v): m_dashboard.ValueMappingResult(text=text, color=color, index=i)
        for i, (v, (text, color)) in enumerate(sorted(states.items()))})
    return (panel.mappings([mapping])
            .show_value(m_common.VisibilityMode.NEVER)
            .merge_values(True)
            .fill_opacity(80)
            .thresholds(thresholds(*GREEN_ONLY)))


# --------------------------------------------------------------------------------------------
# Dashboards
# --------------------------------------------------------------------------------------------

@dataclass
class Row:
    title: str
    panels: list = field(default_factory=list)


def dashboard(uid: str, title: str, description: str, *, tags: Sequence[str],
              variables: Sequence[str], rows: Sequence[Row]) -> m_dashboard.Dashboard:
    """A complete dashboard: datasource + label variables, alert annotations, rows of panels
    laid out left to right, panel ids numbered in order."""
    builder = (sdk_dashboard.Dashboard(title)
               .uid(uid)
               .description(description)
               .tags(["spanscope", *tags])
               .time("now-1h", "now")
               .refresh("30s")
               .timezone("browser")
               .tooltip(m_dashboard.DashboardCursorSync.CROSSHAIR)
               .readonly()
               .with_variable(datasource_variable())
               .annotation(alerts_annotation())
               .link(sdk_dashboard.DashboardLink("spanscope dashboards")
                     .type(m_dashboard.DashboardLinkType.DASHBOARDS)
                     .tags(["spanscope"]).as_dropdown(True).include_vars(True).keep_time(True)))
    for name in variables:
        builder = builder.with_variable(label_variable(name))
    for row in rows:
        builder = builder.with_row(sdk_dashboard.Row(row.title))
        for panel in row.panels:
            builder = builder.with_panel(panel)
    model = builder.build()
    for i, panel in enumerate(model.panels or [], start=1):
        panel.id_val = i
    return model
