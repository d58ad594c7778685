"""SpanscopeProvider against a running exporter: toggles, required features, rollout cohorts, forced
cohorts and targeting rules."""
from http_helpers import call
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider import ProviderStatus
from processes import start_exporter, wait_until
from spanscope.analysis.rollout import in_rollout
from spanscope.client.openfeature_provider import FeatureApiError, SpanscopeProvider


def test_a_toggle_through_the_api_changes_the_evaluated_value(tmp_path):
    proc = start_exporter(tmp_path)
    provider = SpanscopeProvider(proc.urls["web"], refresh_seconds=0.1)
    try:
        api.set_provider(provider)
        client = api.get_client()
        # the provider reports READY to the SDK from its polling thread once it has the table
        wait_until(lambda: client.get_provider_status() == ProviderStatus.READY, what="provider READY")
        ctx = EvaluationContext(targeting_key="user-1")
        details = client.get_boolean_details("conversation_context", False, ctx)
        assert details.value is True, details
        # toggled by someone else, through the HTTP API: the provider sees it on its next poll
        assert call("PUT", proc.urls["web"] + "/api/features/conversation_context", {"enabled": False})[0] == 200
        wait_until(lambda: client.get_boolean_value("conversation_context", True, ctx) is False,
                   what="the provider to see the toggle")
        details = client.get_boolean_details("conversation_context", True, ctx)
        assert details.variant == "off"

        # a required feature cannot be disabled, and stays on for everyone
        try:
            provider.set_feature("intent_classification", enabled=False)
            raise AssertionError("disabling a required feature must fail")
        except FeatureApiError as exc:
            assert exc.status == 409 and "required" in str(exc)
        assert client.get_boolean_value("intent_classification", False, ctx) is True

        # a 30 % rollout: exactly the users the shared bucketing puts in the cohort get the feature
        provider.set_feature("mlx_backend", enabled=True, rollout_percentage=30)
        users = [f"user-{i}" for i in range(2000)]
        got = {u: client.get_boolean_value("mlx_backend", False, EvaluationContext(targeting_key=u)) for u in users}
        assert got == {u: in_rollout("mlx_backend", u, 30) for u in users}
        assert 0.25 < sum(got.values()) / len(users) < 0.35
        # growing the rollout keeps everyone who was in
        provider.set_feature("mlx_backend", rollout_percentage=60)
        grown = {u: client.get_boolean_value("mlx_backend", False, EvaluationContext(targeting_key=u)) for u in users}
        assert all(grown[u] for u in users if got[u])
    finally:
        api.clear_providers()
        proc.stop()


def test_cohorts_and_rules_set_through_the_provider_reach_every_evaluation(tmp_path):
    proc = start_exporter(tmp_path)
    provider = SpanscopeProvider(proc.urls["web"], refresh_seconds=60)
    try:
        api.set_provider_and_wait(provider, "targeting")
        client = api.get_client("targeting")
        provider.set_feature("home_assistant", rollout_percentage=0, cohorts={"on": ["tester-1"]},
                             rules=[{"attribute": "tenant", "operator": "ends_with", "value": "-labs",
                                     "variant": "on"}])

        def get(user, **attributes):
            d = client.get_boolean_details("home_assistant", False, EvaluationContext(user, attributes))
            return d.value, d.reason
        assert get("tester-1") == (True, "TARGETING_MATCH")
        assert get("user-9", tenant="acme-labs") == (True, "TARGETING_MATCH")
        assert get("user-9", tenant="acme") == (False, "SPLIT")
        # the same answers as the exporter's own evaluation
        status, doc = call("POST", proc.urls["web"] + "/api/features/home_assistant/evaluate",
                           {"targeting_key": "user-9", "attributes": {"tenant": "acme-labs"}})
        assert (status, doc["value"], doc["reason"]) == (200, True, "TARGETING_MATCH")

        try:
            provider.set_feature("intent_classification", cohorts={"off": ["tester-1"]})
            raise AssertionError("forcing a required feature off must fail")
        except FeatureApiError as exc:
            assert exc.status == 409 and "required" in str(exc)
        assert client.get_boolean_value("intent_classification", False, EvaluationContext("tester-1")) is True
    finally:
        api.clear_providers()
        proc.stop()
