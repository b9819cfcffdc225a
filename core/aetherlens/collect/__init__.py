"""Ingest: validation, normalisation and device enrichment in front of the writer."""

from aetherlens.collect.collector import Collector

__all__ = ["Collector"]
