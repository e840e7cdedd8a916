"""HTTP routes: increment (the model), models (the cards), health (liveness, readiness, metrics)."""
