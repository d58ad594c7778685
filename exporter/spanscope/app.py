"""Wiring: builds the pipeline from a Config and runs the three listeners on one event loop."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from aiohttp import web

from .analysis.experiments import Experiments
from .analysis.feature_states import FileStates, MemoryStates
from .analysis.features import DECISIONS, Features, load_catalogue
from .analysis.rollout_guard import RolloutGuard, decision_logger
from .analysis.impact import Impact
from .analysis.insights import Insights
from .analysis.rollups import Rollups
from .analysis.windows import MetricsApi
from .config import Config, ConfigError, Dialects
from .ingest import otlp_grpc as receiver_grpc
from .ingest import otlp_http as receiver_http
from .ingest.grpc_front import UPSTREAM_HOST, GrpcFront
from .ingest.queue import Ingest
from .interpret.budgets import load_budgets
from .interpret.contract import Reading, configured
from .interpret.facts import SpanFacts
from .interpret.price_refresh import RESULTS as REFRESH_RESULTS
from .interpret.price_refresh import PriceRefresh
from .interpret.pricing import Pricing, load_table
from .interpret.traces import Assembler
from .metrics.catalogue import Metrics
from .metrics.recorder import Recorder
from .metrics.series import Store
from .store.db import check_url
from .store.feature_states import DatabaseStates
from .store.feedback import Feedback, RecentRequests
from .store.interactions import InteractionStore, read_salt
from .web import endpoints as web_endpoint
from .web.alerts_api import AlertsApi
from .web.alerts_api import add_routes as add_alert_routes
from .web.api import Api, add_routes, auth_middleware
from .web.connections import CappedSite, Connections, Refusals, connection_cap
from .web.errors import api_errors
from .web.interactions_api import InteractionsApi
from .web.interactions_api import add_routes as add_interaction_routes
from .web.metrics_api import add_routes as add_metrics_routes
from .web.security import basic_auth_middleware, load_web_config

log = logging.getLogger("spanscope")

# At shutdown: how long the ingest queue may take to be processed, then the writer to write what is queued.
DRAIN_S = STOP_WRITE_S = 10.0
# Signals that would end the process without a shutdown (Python's default for them): logged instead.
# The configuration is read at start only; a restart (SIGTERM) applies a changed one.
IGNORED_SIGNALS = {"SIGHUP": "the configuration is read at start only: restart (SIGTERM) to apply a change",
                   "SIGUSR1": "no action is bound to it", "SIGUSR2": "no action is bound to it"}


def split_address(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host.strip("[]") or "0.0.0.0", int(port)


def reading(dialects: Dialects) -> Reading:
    """How spans are read, with the config's own dialect rows (ConfigError naming a wrong one)."""
    try:
        return configured(dialects.attributes, dialects.scopes)
    except ValueError as exc:
        raise ConfigError(f"dialects.attributes: {exc}") from None


class Exporter:
    """The pipeline (receive → decode → interpret → aggregate → expose) and its listeners."""

    def __init__(self, config: Config):
        self.config = c = config
        self.store = Store(c.limits.max_series_per_metric)
        self.metrics = Metrics(self.store, c.histograms.duration_buckets)
        self.pricing = Pricing(load_table(c.pricing.file))
        self._show_pricing()
        self.budgets = load_budgets(c.pricing.budgets_file)
        for b in self.budgets:
            self.metrics.budget.set((b.scope, b.name, b.period), b.usd)
        self.recorder = Recorder(self.metrics, self.pricing, c.components.names, c.limits.label_values,
                                 c.limits.tenant_values, c.limits.label_value_length)
        # A budgeted tenant keeps its own label value whatever the tenant cap: its spend is compared.
        self.recorder.label.pin("tenant", {b.name for b in self.budgets if b.scope == "tenant"})
        self.assembler = Assembler(c.traces)
        self.features = Features(load_catalogue(c.features.file),
                                 FileStates(c.features.state_file) if c.features.state_file else MemoryStates(),
                                 c.features.max_rollout_stages, c.features.max_cohort_users, c.features.max_rules,
                                 on_decision=decision_logger(self.metrics.rollout_decisions))
        for name in self.features.catalogue:  # at 0, so that increase() sees a feature's first decision
            for decision in DECISIONS:
                self.metrics.rollout_decisions.touch((name, decision))
        self.facts = SpanFacts(self.pricing, self.features.component_features())
        self.ingest = Ingest(self.metrics, self.recorder, self.facts, self.assembler, c.limits, c.components.span_names,
                             reading(c.dialects))
        # Each finished request is folded once into the rollups' minute, which feature impact,
        # experiments and the metrics API read; feedback looks up recent requests (sinks of the ingest).
        self.rollups = Rollups(c.histograms.duration_buckets, cache_owners=self.features.cache_owners())
        self.impact = Impact(self.features, self.rollups, c.features.window)
        self.experiments = Experiments(self.rollups)
        self.recent = RecentRequests()
        # Interactions and feedback in SQLite/PostgreSQL (ConfigError naming the path when unusable).
        self.interactions = InteractionStore.from_config(c.store, c.feedback)
        self.feedback = Feedback(self.metrics, self.recent, self.interactions, self.ingest.lock,
                                 on_rating=self.rollups.observe_rating, label=self.recorder.label)
        self.ingest.sinks += [self.recent.observe, self.rollups.observe]
        if self.interactions.enabled:
            self.ingest.sinks.append(self.interactions.observe)
        scenarios = c.features.scenario_specs()
        pending = self.interactions.collector(self.metrics, assembling=self.ingest.assembling)
        for collector in (self.impact.collector(self.metrics, scenarios), pending, self.ingest.collect_assembly):
            self.store.register(collector)
        self.state: dict = {"ready": False}
        token = c.auth.token()
        self.security = load_web_config(c.listen.web_config_file)
        self.web_app = web_endpoint.make_app(self.metrics, self.state, middlewares=[
            basic_auth_middleware(self.security), api_errors, web_endpoint.body_within(c.limits.body_timeout),
            auth_middleware(lambda: token),
            web_endpoint.locked(self.ingest.lock)])
        no_evidence = None if c.store.enabled else (
            "guarded rollouts judge each stage on the stored interactions: enable the interaction store "
            "(store.enabled: true)")
        add_routes(self.web_app, Api(self.features, self.impact, self.experiments, self.feedback, scenarios,
                                     c.features.guards, self.ingest.lock, no_evidence))
        add_interaction_routes(self.web_app, InteractionsApi(self.interactions))
        add_alert_routes(self.web_app, AlertsApi(c.overview.prometheus_url))
        metrics_api = MetricsApi(self.rollups, self.metrics, started_at=time.time(), budgets=self.budgets)
        add_metrics_routes(self.web_app, metrics_api,
                           Insights(metrics_api, self.impact, self.experiments, self.features))
        self.http_app = receiver_http.make_app(self.ingest, c.limits,
                                               middlewares=[basic_auth_middleware(self.security)])
        # A budget of open connections per listener: clients of the API (pollers, feedback) cannot
        # crowd out the OTLP senders, nor these the API (the 1 000-user load run filled a shared one).
        self.connection_cap = cap = connection_cap(c.limits.max_connections)
        refused, retry = self.metrics.connections_refused, c.limits.retry_after
        self.connections = {"web": Connections(cap, refused, retry, "web"),
                            "otlp_http": Connections(cap, refused, retry, "OTLP/HTTP")}
        self.grpc_front = GrpcFront(cap, Refusals(refused, cap, "OTLP/gRPC"))
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task] = []
        self._grpc = None
        self.feature_db: DatabaseStates | None = None
        self.stopping = asyncio.Event()

    def _show_pricing(self) -> None:
        """spanscope_pricing_info names the data that prices now (one series)."""
        self.metrics.pricing_info.load({(self.pricing.source, self.pricing.updated): 1})

    def _refreshed(self, result: str) -> None:
        self.metrics.pricing_refreshes.inc((result,))
        if result == "updated":
            self._show_pricing()

    @staticmethod
    def check(config: Config) -> None:
        """Load everything a start would load from files, raising ConfigError on a problem."""
        reading(config.dialects)
        load_table(config.pricing.file)
        load_budgets(config.pricing.budgets_file)
        load_catalogue(config.features.file)
        load_web_config(config.listen.web_config_file)
        config.auth.token()
        check_url(config.store.url)
        read_salt(config.store)

    def _start_feature_state(self) -> None:
        """Feature state in the store's database (shared by replicas; kept across restarts when the
        database is), unless a state file is set and the store is temporary."""
        if not self.interactions.enabled:
            return
        self.feature_db = DatabaseStates(self.interactions.location)
        if self.interactions.location.temporary and self.config.features.state_file:
            log.info("feature state: %s (store.url is not set)", self.config.features.state_file)
        else:
            if self.config.features.state_file:
                log.warning("features.state_file is not used: feature state is kept in the interaction store "
                            "(%s)", self.interactions.location.describe())
            self.features.use(self.feature_db)

    def _close_stores(self) -> None:
        if self.feature_db is not None:
            self.feature_db.close()
        self.interactions.close()

    async def _serve(self, app: web.Application, address: str, what: str, listener: str) -> None:
        # keepalive_timeout also runs while a connection has not sent a whole request head yet
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               keepalive_timeout=self.config.limits.idle_timeout)
        await runner.setup()
        host, port = split_address(address)
        try:
            await CappedSite(runner, host, port, self.connections[listener], listener,
                             self.security.ssl_context).start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(f"cannot listen on {address} ({what}): {exc.strerror}") from None
        self._runners.append(runner)

    async def start(self) -> None:
        c = self.config.listen
        self.interactions.start()
        self._start_feature_state()
        self._tasks.append(asyncio.create_task(self.ingest.consume(), name="ingest"))
        interval = min(max(self.config.traces.finish_delay / 2, 0.01), 0.5)
        self._tasks.append(asyncio.create_task(self.ingest.housekeeping(interval), name="housekeeping"))
        refresh = self.config.pricing.refresh
        if refresh.url:
            for result in REFRESH_RESULTS:
                self.metrics.pricing_refreshes.touch((result,))
            prices = PriceRefresh(self.pricing, refresh.url, refresh.interval, report=self._refreshed)
            self._tasks.append(asyncio.create_task(prices.run(), name="price refresh"))
        await self._serve(self.web_app, c.web, "web", "web")
        await self._serve(self.http_app, c.otlp_http, "OTLP/HTTP", "otlp_http")
        self._grpc, port = receiver_grpc.make_server(self.ingest, f"{UPSTREAM_HOST}:0", self.config.limits,
                                                     self.security, self.connection_cap,
                                                     self.grpc_front.client_address)
        await self._grpc.start()
        host, _, public_port = c.otlp_grpc.rpartition(":")
        try:
            await self.grpc_front.start(host.strip("[]"), int(public_port), port)
        except OSError as exc:
            raise OSError(f"cannot listen on {c.otlp_grpc} (OTLP/gRPC): {exc.strerror}") from None
        if self.feature_db is not None:  # guarded rollouts, judged on the stored interactions
            guard = RolloutGuard(self.features, self.feature_db, self.config.features.guards.interval)
            self._tasks.append(asyncio.create_task(guard.run(), name="guarded rollouts"))
        self.state["ready"] = True
        if self.connection_cap < self.config.limits.max_connections:
            log.warning("limits.max_connections lowered to %d per listener: the file-descriptor limit "
                        "(ulimit -n) leaves no room for more", self.connection_cap)
        log.info("listening: OTLP/gRPC %s, OTLP/HTTP %s, web %s",
                 c.otlp_grpc, c.otlp_http, c.web)

    async def stop(self) -> None:
        """Stop accepting spans, process what was accepted, finish every trace, then close the web."""
        self.state["ready"] = False
        # What ingest acknowledged is written: from now on a full interaction queue waits for the
        # writer instead of dropping its oldest row (the listeners close first, so nothing new waits).
        self.interactions.hold_when_full(DRAIN_S + STOP_WRITE_S)
        if self._grpc is not None:
            self.grpc_front.stop_accepting()
            await self._grpc.stop(grace=2)
            await self.grpc_front.close()
        for runner in self._runners[1:]:  # the OTLP/HTTP listener
            await runner.cleanup()
        try:
            await self.ingest.drain(timeout=DRAIN_S)
        except Exception:  # a bug must not keep the writer from saving what was finished
            log.exception("draining the ingest queue at shutdown failed")
        # Let Prometheus collect what the drain just finished: wait for one more scrape, bounded. Armed
        # in the same step as the drain's end (a directly awaited coroutine, not a task), so a scrape
        # that counts is one rendered after every trace was finished.
        scraped = asyncio.Event()
        self.state["after_scrape"] = scraped.set
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.interactions.stop_writer, STOP_WRITE_S)  # write the finished requests
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(scraped.wait(), timeout=self.config.shutdown.grace)
        await self._runners[0].cleanup()
        self._close_stores()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.stopping.set)
        for name, why in IGNORED_SIGNALS.items():
            with contextlib.suppress(NotImplementedError, AttributeError):
                loop.add_signal_handler(getattr(signal, name), log.warning, "%s ignored: %s", name, why)
        try:
            await self.start()
        except BaseException:
            self._close_stores()
            raise
        try:
            await self.stopping.wait()
        finally:
            log.info("shutting down: draining the ingest queue and finishing pending traces")
            await self.stop()
