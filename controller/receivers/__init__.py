"""Receivers from manifests: the CRD generated from the drivers (``crd``) and its schema (``schema``),
bounded YAML reading (``yamlsafe``), the loader (``loader``), the folder watcher (``watcher``) and the
sync of the active set into the receiver set and the store's tokens (``sync``), which keeps or
re-mints a token by the rule operator mode shares (``remint``).

The loader is pure (files in, receivers and problems out); the watcher decides *when* to load and
keeps last-good versions; in standalone mode ``ReceiverSync`` is the only part that mints or revokes
tokens (in operator mode, ``controller.operator.trigger_secrets``).
"""
