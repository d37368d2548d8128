"""HTTP routers, one per resource: embeddings, models, health (and metrics)."""
