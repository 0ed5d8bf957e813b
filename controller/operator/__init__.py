"""Kubernetes operator mode: kopf handlers for Receivers, the informer every replica runs, and wiring.

Layers, top down: ``handlers`` (kopf's arguments in, ``kopf.TemporaryError`` out) calls ``grants``
(a Receiver's spec, token and status), ``trigger_secrets`` (its token in a Secret) and
``status_mirror`` (IntentLedgers into status); ``receiver_status`` writes status and Events. What a
receiver's driver does and whether its target is refused now come from the driver itself
(``controller.drivers.contract``: ``Driver.action``, ``TargetGate``).
"""
