"""Instances, pairing sessions, connect logic, and the events outbox with webhook delivery."""

from evolink.gateway.inputs import InvalidNumber
from evolink.gateway.manager import CreateRequest, InstanceManager, stored_webhook
from evolink.gateway.observe import LinkGuard, LinkRefusal
from evolink.gateway.ports import EngineFactory, EnginePort, EngineRequest
from evolink.gateway.runtime import InstanceRuntime, NotConnected, RuntimeOptions
from evolink.gateway.webhooks import DeliveryWorker, EventPublisher, GlobalWebhook, RetryPolicy, WebhookTarget

__all__ = ["CreateRequest", "DeliveryWorker", "EngineFactory", "EnginePort", "EngineRequest", "EventPublisher",
           "GlobalWebhook", "InstanceManager", "InstanceRuntime", "InvalidNumber", "LinkGuard", "LinkRefusal",
           "NotConnected", "RetryPolicy", "RuntimeOptions", "WebhookTarget", "stored_webhook"]
