"""webhook-service: turns webhook hits into scaling actions, the way Rancher 1.4's webhook receivers did.

Package layout (each module has one responsibility; the folder listing is the architecture):

- ``settings``      one frozen dataclass of settings, built once by ``cli``; each field declares its flag
- ``flags``         how a setting is given on the command line (flag, variable, parser), declared once
- ``cli``           argparse subcommands (run, operator, validate, trigger-url, status, keys, cattle-sandbox)
- ``wiring``        the one factory of both modes: listener app, reconciler, driver context, start/stop order
- ``service``       ``run``: the state folder's store and keys, the receivers folder watcher, on ``wiring``
- ``model``         receivers, targets and intents as typed values; raw JSON shapes in ``bodies``
- ``receivers/``    the CRD schema, bounded YAML reading, the loader, the folder watcher, token sync
- ``tokens``        Ed25519 signing keys and JWT trigger tokens
- ``registry``      the in-memory set of active receivers the listener checks every hit against
- ``listener/``     the aiohttp trigger endpoint, errors, rate limits, Alertmanager payloads, signatures,
                    and the server's connection limits and timeouts (``server``)
- ``health``        what ``/readyz`` reports: each part's check, failing or only noted
- ``statedir``      the state folder and its files made private (0700/0600)
- ``redact``        credentials masked in URLs that are logged, shown or stored
- ``store/``        the durable store interface; SQLite, and IntentLedger objects on Kubernetes
- ``reconciler``    folds pending intents into a desired scale and converges the target
- ``fold``          the pure fold of scale intents
- ``drivers/``      one module per driver; a new driver joins by adding a module
- ``forwarding``    the protocol of pass-through drivers (forwardPost): the listener answers with theirs
- ``intents``       protocols of drivers that read the hit's body and apply their own intents (serviceUpgrade)
- ``push_events`` registry push bodies (Docker Hub, Alibaba, ACR, Registry v2) and tag patterns
- ``cattle/``       the Cattle (Rancher 1.x) API client, its error hierarchy, the default endpoint
- ``sandbox/``      an in-process emulation of the part of Cattle's API the drivers use
- ``operator/``     Kubernetes mode: kopf handlers, the Receiver informer, keys Secret, status, wiring
- ``kube/``         the Kubernetes API client and its error hierarchy
- ``metrics``       Prometheus metrics on an explicit registry
- ``errors``        the one root of the service's errors: ``retryable``, ``retry_after``, ``summary``
"""
