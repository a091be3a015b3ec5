"""``GET /metrics``: the Prometheus text format, for an admin key (a scraper sends it as
``Authorization: Bearer``). Every gunicorn worker's figures added up, then the database's
(``service/metrics.py``)."""

from __future__ import annotations

from flask.views import MethodView

from service.auth import authorize
from service.domain.operations.policy import policy
from service.extensions import Blueprint, database
from service.metrics import metrics_response

blp = Blueprint("metrics", __name__, description="What the service is doing, for operators.")

PROMETHEUS_TEXT = {"text/plain": {"schema": {"type": "string"}, "example":
                   'clinic_http_requests_total{method="GET",route="/api/v1/slots",'
                   'status="200"} 42.0\n'}}


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(responses={200: {"description": "The Prometheus text exposition format",
                              "content": PROMETHEUS_TEXT}})
    @authorize(policy, "read_metrics")
    def get(self):
        """Request, booking, slot search, outbox, pool, rate-limit and alert metrics"""
        return metrics_response(database())
