"""Status webhooks to internal apps: signed to Standard Webhooks v1, durable, SSRF-safe."""
