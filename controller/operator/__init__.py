"""Kubernetes operator mode: kopf handlers for Receivers, the informer every replica runs, and wiring."""
