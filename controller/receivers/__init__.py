"""Receivers from manifests: the CRD's schema (``schema``), the YAML loader (``loader``), the folder
watcher (``watcher``) and the sync of the active set into the receiver_set and the store's tokens (``sync``),
which keeps or re-mints a token by the rule operator mode shares (``remint``).

The loader is pure (files in, receivers and problems out); the watcher decides *when* to load and
keeps last-good versions; ``ReceiverSync`` is the only part that mints or revokes tokens.
"""
