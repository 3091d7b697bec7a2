"""Real-time delivery: the event bus (memory or Redis), the hub and the WebSocket gateway."""
