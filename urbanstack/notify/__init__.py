"""Notification delivery: the outbox worker and the HTTP and MQTT senders."""
