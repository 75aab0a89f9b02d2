"""Prometheus metrics. Labels are low-cardinality: outcomes and statuses, never ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CALLBACKS = Counter(
    "tracker_callbacks_total",
    "Delivery callbacks received, by outcome.",
    ["outcome"],
)
CALLBACK_ACK_SECONDS = Histogram(
    "tracker_callback_ack_seconds",
    "Time from a callback's arrival to our answer.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CALLBACK_BATCH_SIZE = Histogram(
    "tracker_callback_batch_size",
    "Callbacks applied per database transaction (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
CALLBACK_REPORTS_DROPPED = Counter(
    "tracker_callback_reports_dropped_total",
    "Reports not stored because their message holds TRACKER_CALLBACK_REPORTS_PER_MESSAGE "
    "receipts already and they move nothing (answered 200 ignored).",
)
SPOOL_BACKLOG = Gauge(
    "tracker_callback_spool_backlog",
    "Callbacks waiting in the local spool for the database to come back.",
)

# --- sending (dispatcher and provider client) ---------------------------------

SENDS = Counter(
    "tracker_sends_total",
    "Send attempts by outcome: accepted, rejected, retry, failed, rate_limited, "
    "account_unavailable.",
    ["outcome"],
)
PROVIDER_LATENCY_SECONDS = Histogram(
    "tracker_provider_request_seconds",
    "Duration of HTTP calls to KIMISMS, by path (send-sms, generate-token).",
    ["path"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0),
)
PROVIDER_RATE_LIMITED = Counter(
    "tracker_provider_rate_limited_total",
    "429 answers from KIMISMS (every call pauses for their Retry-After).",
)
TOKEN_REFRESHES = Counter(
    "tracker_provider_token_refreshes_total",
    "New KIMISMS access tokens obtained.",
)

# --- admission (clients.quotas) ---------------------------------------------

QUOTA_REFUSALS = Counter(
    "tracker_quota_refusals_total",
    "Send requests answered 429 because the client would pass a limit: rate_per_minute, "
    "daily_cap or high_per_minute.",
    ["limit"],
)
for _limit in ("rate_per_minute", "daily_cap", "high_per_minute"):
    QUOTA_REFUSALS.labels(limit=_limit)  # each limit is scraped from 0, not from its first 429

DATABASE_UNAVAILABLE = Counter(
    "tracker_database_unavailable",
    "API requests answered 503 because the database could not serve them.",
)

# --- the database, read in the background (ops.GaugeRefresher), never per scrape

MESSAGES = Gauge(
    "tracker_messages",
    "Messages in the database, by status.",
    ["status"],
)
QUEUE_DEPTH = Gauge(
    "tracker_queue_depth",
    "Messages queued or awaiting a retry that are due now.",
)
OLDEST_QUEUED_AGE = Gauge(
    "tracker_oldest_queued_age_seconds",
    "How long the oldest due queued message has waited (0 when none).",
)
OVERDUE = Gauge(
    "tracker_messages_overdue",
    "Pending messages without a delivery report for longer than TRACKER_DLR_OVERDUE_SECONDS.",
)
DATABASE_UP = Gauge(
    "tracker_metrics_database_up",
    "1 if the last refresh could read the database gauges, else 0 (they keep old values).",
)
DATABASE_GAUGES_AGE = Gauge(
    "tracker_metrics_database_age_seconds",
    "Seconds since the database gauges were last read (+Inf before the first read).",
)

# --- webhooks (webhooks.deliverer) -------------------------------------------

WEBHOOK_DELIVERIES = Counter(
    "tracker_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: succeeded, retried (a later attempt is due), "
    "failed (no attempt left, or the endpoint disabled), unrecorded (made again later).",
    ["outcome"],
)
for _outcome in ("succeeded", "retried", "failed"):
    WEBHOOK_DELIVERIES.labels(outcome=_outcome)  # scraped from 0
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "tracker_webhook_delivery_seconds",
    "Duration of one webhook POST, from the connection to the end of the answer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0),
)
WEBHOOK_ENDPOINTS_DISABLED_TOTAL = Counter(
    "tracker_webhook_endpoint_disablements_total",
    "Webhook endpoints this process disabled (a 410, or failing for "
    "TRACKER_WEBHOOK_DISABLE_AFTER).",
)
# Read from the database in the background by each deliverer, never per scrape.
WEBHOOK_BACKLOG = Gauge(
    "tracker_webhook_backlog",
    "Webhook deliveries pending (due now or waiting for a retry).",
)
WEBHOOK_ENDPOINTS_DISABLED = Gauge(
    "tracker_webhook_endpoints_disabled",
    "Webhook endpoints disabled (by a 410, the failure window or an operator).",
)

# --- privacy (privacy.retention) ----------------------------------------------

RETENTION_ROWS = Counter(
    "tracker_retention_rows",
    "Messages the retention job changed, by action: redacted (body removed), pseudonymised "
    "(number replaced by its keyed hash), deleted (with its events, receipts and webhooks).",
    ["action"],
)
for _action in ("redacted", "pseudonymised", "deleted"):
    RETENTION_ROWS.labels(action=_action)  # scraped from 0
RETENTION_PRUNED = Counter(
    "tracker_retention_pruned",
    "Rows and entries the retention job pruned after TRACKER_RETENTION_BODY, by kind: "
    "webhook_attempts, quarantine_entries (of the callback spool).",
    ["kind"],
)
for _kind in ("webhook_attempts", "quarantine_entries"):
    RETENTION_PRUNED.labels(kind=_kind)
