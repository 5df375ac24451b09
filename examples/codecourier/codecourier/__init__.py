"""CodeCourier: an AI coding app whose orchestrator reports back through a signed callback."""
