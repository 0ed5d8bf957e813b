"""Kubernetes mode: the API client, the login, and the pieces the operator builds on."""
