"""OpenFeature provider backed by the exporter's feature API (the client side of `/api/features`).

Services evaluate spanscope features through the standard OpenFeature SDK; this provider keeps a
local copy of the exporter's feature table, refreshed by a background thread, so an evaluation is a
dictionary lookup and never a network call. When the exporter is unreachable the last known table
stays in force (a sidecar restart must not flip features in the services that use it).

Boolean flags, by feature name (the order is analysis/targeting.py's, shared with the exporter):

    disabled                 -> False, variant "off", reason DISABLED
    key in a forced cohort   -> the cohort's variant, reason TARGETING_MATCH
    first matching rule      -> the rule's variant, reason TARGETING_MATCH
    enabled, rollout 100 %   -> True,  variant "on",  reason STATIC
    enabled, partial rollout -> in_rollout(name, targeting_key, pct): "on"/"off", reason SPLIT
    unknown feature          -> the default, error FLAG_NOT_FOUND
    cohorts or rules this provider cannot read -> the default, error PARSE_ERROR

Standard library HTTP (urllib) only, so any service can add it without new dependencies.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from ..analysis.targeting import NO_TARGETING, Targeting, evaluate, parse

log = logging.getLogger("spanscope.openfeature")

PROVIDER_NAME = "spanscope"


@dataclass(frozen=True)
class FeatureState:
    """What the provider needs of one row of `GET /api/features`."""

    name: str
    enabled: bool
    rollout_percentage: float = 100.0
    category: str = ""
    required: bool = False
    targeting: Targeting = NO_TARGETING
    targeting_error: str | None = None   # cohorts or rules that could not be read: evaluations fail

    @classmethod
    def from_json(cls, row: Mapping) -> FeatureState:
        pct = row.get("rollout_percentage", 100.0)
        if isinstance(pct, bool) or not isinstance(pct, (int, float)):
            pct = 100.0
        try:
            aimed, problem = parse(row.get("cohorts"), row.get("rules")), None
        except ValueError as exc:
            aimed, problem = NO_TARGETING, str(exc)
        return cls(
            name=str(row["name"]),
            enabled=row.get("enabled") is True,
            rollout_percentage=min(max(float(pct), 0.0), 100.0),
            category=str(row.get("category") or ""),
            required=row.get("required") is True,
            targeting=aimed,
            targeting_error=problem,
        )


def parse_features(payload: object) -> dict[str, FeatureState]:
    """The feature table from a `GET /api/features` body; ValueError when it has the wrong shape."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("features"), list):
        raise ValueError("expected an object with a 'features' list")
    table = {}
    for row in payload["features"]:
        if isinstance(row, Mapping) and isinstance(row.get("name"), str):
            state = FeatureState.from_json(row)
            table[state.name] = state
    return table


class FeatureApiError(Exception):
    """The feature API answered a write with an error (e.g. 409 for disabling a required feature)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class SpanscopeProvider(AbstractProvider):
    """Resolves boolean feature flags from a spanscope exporter's feature table."""

    def __init__(self, api_url: str, refresh_seconds: float = 2.0, token: str | None = None,
                 timeout: float = 2.0):
        super().__init__()
        self.api_url = api_url.rstrip("/")
        self.refresh_seconds = refresh_seconds
        self.token = token
        self.timeout = timeout
        # Replaced whole on each refresh, so readers need no lock.
        self._features: dict[str, FeatureState] | None = None
        self._unreachable = False
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # -- provider lifecycle ------------------------------------------------------------------

    def get_metadata(self) -> Metadata:
        return Metadata(name=PROVIDER_NAME)

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Fetch once, then keep refreshing in the background whatever the outcome."""
        self._stop.clear()
        fetched = self.refresh()
        if self._poller is None or not self._poller.is_alive():
            self._poller = threading.Thread(target=self._poll, name="spanscope-features", daemon=True)
            self._poller.start()
        if not fetched:
            # The SDK marks the provider ERROR; the poller emits READY once the exporter answers.
            raise ProviderNotReadyError(f"feature API {self.api_url} not reachable yet")

    def shutdown(self) -> None:
        self._stop.set()
        poller, self._poller = self._poller, None
        if poller is not None and poller is not threading.current_thread():
            poller.join(timeout=self.timeout + 1.0)

    def wait_until_ready(self, timeout: float) -> bool:
        """Block until a feature table has been fetched (True) or `timeout` seconds passed."""
        return self._ready.wait(timeout)

    def features(self) -> dict[str, FeatureState]:
        """The last known feature table (empty before the first successful fetch)."""
        return dict(self._features or {})

    # -- feature API client --------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read() or b"null")

    def refresh(self) -> bool:
        """Fetch the feature table now. On failure keep the last one and log only the first time."""
        try:
            table = parse_features(self._request("GET", "/api/features"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if not self._unreachable:
                self._unreachable = True
                log.warning("feature API %s unavailable (%s); keeping the last known features",
                            self.api_url, exc)
                if self._features is not None:
                    self.emit_provider_stale(ProviderEventDetails(message=str(exc)))
            return False
        previous, self._features = self._features, table
        recovered, self._unreachable = self._unreachable, False
        self._ready.set()
        if recovered:
            # Also the first success after a failed initialize(): the SDK moves us to READY.
            log.info("feature API %s reachable", self.api_url)
            self.emit_provider_ready(ProviderEventDetails(message="feature API reachable"))
        elif previous is not None and previous != table:
            changed = sorted(n for n in previous.keys() | table.keys() if previous.get(n) != table.get(n))
            self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=changed))
        return True

    def _poll(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def set_feature(self, name: str, enabled: bool | None = None, rollout_percentage: float | None = None,
                    cohorts: Mapping | None = None, rules: Sequence | None = None) -> None:
        """`PUT /api/features/{name}`; raises FeatureApiError with the API's message on a 4xx/5xx.
        `cohorts` ({"on": [keys], "off": [keys]}) and `rules` replace the feature's (docs/features.md)."""
        given = {"enabled": enabled, "rollout_percentage": rollout_percentage, "cohorts": cohorts, "rules": rules}
        body = {k: v for k, v in given.items() if v is not None}
        if not body:
            raise ValueError("nothing to change: pass enabled, rollout_percentage, cohorts and/or rules")
        try:
            self._request("PUT", "/api/features/" + urllib.parse.quote(name, safe=""), body)
        except urllib.error.HTTPError as exc:
            raise FeatureApiError(exc.code, _error_message(exc)) from None
        self.refresh()

    # -- resolution ----------------------------------------------------------------------------

    def resolve_boolean_details(self, flag_key: str, default_value: bool,
                                evaluation_context: EvaluationContext | None = None
                                ) -> FlagResolutionDetails[bool]:
        features = self._features
        if features is None:
            return _error(default_value, ErrorCode.PROVIDER_NOT_READY, "no feature table fetched yet")
        feature = features.get(flag_key)
        if feature is None:
            return _error(default_value, ErrorCode.FLAG_NOT_FOUND, f"unknown feature {flag_key!r}")
        metadata = {"category": feature.category, "required": feature.required,
                    "rollout_percentage": feature.rollout_percentage}
        if feature.targeting_error and feature.enabled:
            return _error(default_value, ErrorCode.PARSE_ERROR,
                          f"targeting of {flag_key!r} is unreadable: {feature.targeting_error}")
        key = evaluation_context.targeting_key if evaluation_context else None
        attributes = evaluation_context.attributes if evaluation_context else {}
        d = evaluate(flag_key, feature.enabled, feature.rollout_percentage, feature.targeting, key,
                               attributes)
        if d is None:
            return _error(default_value, ErrorCode.TARGETING_KEY_MISSING,
                          f"{flag_key!r} is rolled out to {feature.rollout_percentage}%: a targeting key is needed")
        if d.rule is not None:
            metadata["rule"] = d.rule
        return FlagResolutionDetails(d.on, reason=Reason(d.reason), variant=d.variant, flag_metadata=metadata)

    def _not_boolean(self, flag_key: str, default_value):
        features = self._features or {}
        if flag_key in features:
            return _error(default_value, ErrorCode.TYPE_MISMATCH, f"{flag_key!r} is a boolean feature")
        return _error(default_value, ErrorCode.FLAG_NOT_FOUND, f"unknown feature {flag_key!r}")

    def resolve_string_details(self, flag_key: str, default_value: str,
                               evaluation_context: EvaluationContext | None = None
                               ) -> FlagResolutionDetails[str]:
        return self._not_boolean(flag_key, default_value)

    def resolve_integer_details(self, flag_key: str, default_value: int,
                                evaluation_context: EvaluationContext | None = None
                                ) -> FlagResolutionDetails[int]:
        return self._not_boolean(flag_key, default_value)

    def resolve_float_details(self, flag_key: str, default_value: float,
                              evaluation_context: EvaluationContext | None = None
                              ) -> FlagResolutionDetails[float]:
        return self._not_boolean(flag_key, default_value)

    def resolve_object_details(self, flag_key: str, default_value: Sequence | Mapping,
                               evaluation_context: EvaluationContext | None = None
                               ) -> FlagResolutionDetails[Sequence | Mapping]:
        return self._not_boolean(flag_key, default_value)


def _error(default_value, code: ErrorCode, message: str) -> FlagResolutionDetails:
    return FlagResolutionDetails(default_value, error_code=code, error_message=message, reason=Reason.ERROR)


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        return exc.reason or ""
    if isinstance(body, Mapping):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return body[key]
    return str(exc.reason or "")
