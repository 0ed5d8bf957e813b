"""webhook-service: turns webhook hits into scaling actions, the way Rancher 1.4's webhook receivers did.

Package layout, in layers from the top (``tests/test_layers.py`` keeps every import pointing down and
free of cycles). Each module has one responsibility; the folder listing is the architecture.

Entry
- ``cli``             argparse subcommands (run, operator, validate, trigger-url, status, crd, keys,
                      import-rancher, cattle-sandbox), built from the settings' declarations

Modes
- ``wiring``          the one factory of both modes: listener app, reconciler, driver context, and the
                      order their resources start and stop (aiohttp ``cleanup_ctx``)
- ``service``         ``run``: the state folder's store and keys, the receivers folder, on ``wiring``
- ``operator/``       ``operator``: thin kopf handlers, granting Receivers, trigger Secrets, the ledger ->
                      status mirror, Receiver status and Events, API-made Receivers, the informer, keys
                      Secret, on ``wiring``
- ``status_report``   the ``status`` command's read of a state folder: tables, JSON, YAML, ``--watch``

Parts
- ``listener/``       the aiohttp trigger endpoint: its dependencies, views, error answers, signatures,
                      Alertmanager payloads, pass-through rate limits, logs, connection limits; and the
                      receivers API in Rancher's shape (``receivers_api``)
- ``reconciler``      folds pending intents into a desired scale and converges the target; retries here
- ``fold``            the pure fold of scale intents
- ``receivers/``      the generated CRD and its schema, bounded YAML reading, the loader, the folder
                      watcher (inotify, or polling), token sync, the one re-mint rule, and the folder of
                      API-made receivers
- ``health``          what ``/readyz`` reports: each part's check, failing or only noted
- ``memory``          heap trimming
- ``status/``         the status view (one shape and its rules), the page at ``/`` with inline SVG charts,
                      the tables, and the running service's live view
- ``sandbox/``        an in-process emulation of the part of Cattle's API the drivers use
- ``cattle/endpoint`` the Cattle the service talks to: configured, or the embedded sandbox; checked
                      once at start (``cattle/reachability``: the ``/readyz`` check ``cattle``)
- ``rancher/``        ``import-rancher``: Rancher 1.6's stored receivers converted into manifests

Drivers
- ``drivers/``        the driver contract (``contract``: what a driver is and can do, the driver set),
                      what every driver is handed (``base``), and one module per driver
- ``push_events``     registry push bodies (Docker Hub, Alibaba, ACR, Registry v2) and tag patterns

Boundaries
- ``cattle/``         the Cattle (Rancher 1.x) API client, its errors and resource shapes
- ``kube/``           the Kubernetes API client and its errors
- ``store/``          the store interface, the one hit-outcome rule; SQLite, and IntentLedgers on Kubernetes
- ``tokens``          Ed25519 signing keys and JWT trigger tokens
- ``receiver_set``    the in-memory set of active receivers the listener checks every hit against
- ``rancher/keys``    what is kept of Rancher's trigger keys (a SHA-256), Cattle's key for its old tokens
- ``metrics``         Prometheus metrics on an explicit registry
- ``statedir``        the state folder and its files made private (0700/0600)
- ``statelock``       one service per state folder: an exclusive lock naming its holder's pid
- ``backoff``         capped exponential backoff with jitter

Values
- ``model``           receivers, targets and intents as typed values
- ``manifest``        a Receiver manifest's raw shapes (TypedDicts)
- ``settings``        one frozen dataclass of settings, built once by ``cli``; each field declares its flag
- ``flags``           how a setting is given on the command line (flag, variable, parser)
- ``redact``          credentials masked in URLs that are logged, shown or stored
- ``logformat``       log lines as text or one JSON object per line
- ``errors``          the one root of the service's errors: ``retryable``, ``retry_after``, ``summary``
- ``http_headers``    which HTTP headers are hop-by-hop (never forwarded)
"""
