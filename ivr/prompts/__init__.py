"""Prompt texts (the catalog) and, later, their rendered audio."""

from ivr.prompts.catalog import PromptCatalog, PromptText, load_catalog

__all__ = ["PromptCatalog", "PromptText", "load_catalog"]
