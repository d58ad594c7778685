"""Quality & Feedback: are answers good (score, confidence, citations), how often are they degraded,
and what do users say?"""
from .common import (
    MODE,
    SERVICE,
    Q,
    Row,
    dashboard,
    heatmap,
    mean,
    quantile,
    ratio,
    stat,
    sum_increase,
    sum_rate,
    timeseries,
)

UID = "spanscope-quality"

SCORE = "pipeline_quality_score"
CONFIDENCE = "pipeline_response_confidence"
CITATIONS = "pipeline_response_citations"
RATING = "pipeline_feedback_rating"
LOW = "pipeline_feedback_low_ratings_total"


def build():
    overview = Row("Overview", [
        stat("Median quality score", "Median pipeline.quality.score (0-1) of responses.", "percentunit",
             Q(quantile(0.5, SCORE, SERVICE, MODE)), steps=((None, "red"), (0.6, "orange"), (0.8, "green"))),
        stat("Mean confidence", "Mean answer confidence (0-1).", "percentunit",
             Q(mean(CONFIDENCE, SERVICE, MODE)), steps=((None, "red"), (0.6, "orange"), (0.8, "green"))),
        stat("Degraded responses", "Degraded answers / all requests.", "percentunit",
             Q(ratio(sum_rate("pipeline_degraded_responses_total", SERVICE),
                     sum_rate("pipeline_requests_total", SERVICE))),
             steps=((None, "green"), (0.05, "orange"), (0.1, "red"))),
        stat("Mean user rating", "Mean rating (1-5) posted to POST /api/v1/feedback.", "none",
             Q(mean(RATING, SERVICE, MODE)), steps=((None, "red"), (3, "orange"), (4, "green")), decimals=2),
    ])
    distributions = Row("Distributions", [
        heatmap("Quality score distribution", "Responses per quality-score bucket over time.", "percentunit",
                Q(sum_increase(SCORE + "_bucket", SERVICE, MODE, by=("le",)))),
        heatmap("Confidence distribution", "Responses per confidence bucket over time.", "percentunit",
                Q(sum_increase(CONFIDENCE + "_bucket", SERVICE, MODE, by=("le",)))),
        timeseries("Quality score by mode", "Median and 10th percentile quality score per pipeline.mode: "
                   "the low percentile shows the bad tail.", "percentunit",
                   Q(quantile(0.5, SCORE, SERVICE, MODE, by=("mode",)), "p50 {{mode}}"),
                   Q(quantile(0.1, SCORE, SERVICE, MODE, by=("mode",)), "p10 {{mode}}"), min_val=0, max_val=1),
        timeseries("Citations per response", "Mean and 10th percentile citations per response; answers "
                   "without citations are harder to trust.", "short",
                   Q(mean(CITATIONS, SERVICE, MODE), "mean"),
                   Q(quantile(0.1, CITATIONS, SERVICE, MODE), "p10"), min_val=0),
    ])
    degradation = Row("Degradation and warnings", [
        timeseries("Degraded responses by reason", "Degraded answers per second by "
                   "pipeline.degradation.reason.", "reqps",
                   Q(sum_rate("pipeline_degraded_responses_total", SERVICE, by=("reason",)), "{{reason}}"),
                   stack=True),
        timeseries("Warnings by type", "Response warnings per second by type (pipeline.warnings).", "ops",
                   Q(sum_rate("pipeline_response_warnings_total", SERVICE, by=("warning",)), "{{warning}}"),
                   stack=True),
    ])
    feedback = Row("User feedback", [
        timeseries("Mean rating by model", "Mean user rating (1-5) per model that answered.", "none",
                   Q(mean(RATING, SERVICE, MODE, by=("model",)), "{{model}}"), min_val=1, max_val=5),
        timeseries("Ratings received", "Ratings per second by model.", "ops",
                   Q(sum_rate(RATING + "_count", SERVICE, MODE, by=("model",)), "{{model}}"), stack=True),
        timeseries("Low ratings", "Ratings of 2 or less per second by model.",
                   "ops",
                   Q(sum_rate(LOW, SERVICE, MODE, by=("model",)), "{{model}}"), stack=True),
        timeseries("Low-rating ratio", "Ratings of 2 or less / all ratings, per model.", "percentunit",
                   Q(ratio(sum_rate(LOW, SERVICE, MODE, by=("model",)),
                           sum_rate(RATING + "_count", SERVICE, MODE, by=("model",))), "{{model}}"),
                   min_val=0, max_val=1),
    ])
    return dashboard(
        UID, "spanscope · Quality & Feedback",
        "Response quality score, confidence and citations, degraded answers, warnings and user ratings.",
        tags=["quality"], variables=["service", "mode"], rows=[overview, distributions, degradation, feedback])
